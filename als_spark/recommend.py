"""Top-N recommendations from the learned factors, with seen items removed."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import schema as S
from als_spark import topk


def recommend(
    user_factors: DataFrame,
    item_factors: DataFrame,
    *,
    top_n: int,
    exclude: DataFrame | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
    parallelism: int = 2,
) -> DataFrame:
    """``user_id, rank, item_id, score``: each user's ``top_n`` items by predicted preference.

    ``score`` is the dot product of user and item factors (what
    ``ALSModel.recommendForAllUsers`` returns). ``exclude`` (``user_id, exclude``
    array of item ids) lists items never to recommend to that user. Ranks run
    1..top_n, ties go to the smaller item id; a user gets fewer than ``top_n``
    rows only when fewer items remain after exclusion.
    """
    queries = user_factors
    if exclude is not None:
        queries = user_factors.join(
            exclude.withColumnRenamed(S.USER_ID, S.ID), S.ID, "left"
        ).select(S.ID, S.FEATURES, F.coalesce(topk.EXCLUDE, F.array().cast("array<int>")).alias(topk.EXCLUDE))
    return topk.top_k(
        queries, item_factors, top_n, n_queries=n_users, n_candidates=n_items, parallelism=parallelism
    ).select(
        F.col(topk.QUERY).alias(S.USER_ID),
        S.RANK,
        F.col(topk.CANDIDATE).alias(S.ITEM_ID),
        S.SCORE,
    )
