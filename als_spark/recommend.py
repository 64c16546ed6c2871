"""Top-N recommendations from the learned factors, with seen items removed."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import schema as S
from als_spark import topk

#: Column of :func:`popularity_prior`'s table: what is added to every score of that item.
PRIOR = "prior"


def popularity_prior(interactions: DataFrame, weight: float) -> DataFrame | None:
    """``id, prior``: ``weight · ln(n)`` per item, ``n`` its number of rows in ``interactions``.

    ``interactions`` is what the model was fitted on (``item_id`` per row), so
    every item with factors has ``n >= 1``, and the item with one interaction
    gets a prior of 0. ``None`` when ``weight`` is 0: plain ALS scores.
    """
    if weight == 0:
        return None
    return interactions.groupBy(F.col(S.ITEM_ID).alias(S.ID)).agg(
        (F.lit(float(weight)) * F.log(F.count(F.lit(1)).cast("double"))).alias(PRIOR)
    )


def recommend(
    user_factors: DataFrame,
    item_factors: DataFrame,
    *,
    top_n: int,
    exclude: DataFrame | None = None,
    item_prior: DataFrame | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
    parallelism: int = 2,
) -> DataFrame:
    """``user_id, rank, item_id, score``: each user's ``top_n`` items by predicted preference.

    ``score`` is the dot product of user and item factors (what
    ``ALSModel.recommendForAllUsers`` returns), plus the item's ``prior`` when
    ``item_prior`` (``id, prior``, e.g. :func:`popularity_prior`) is given; an
    item missing from it gets 0. ``exclude`` (``user_id, exclude`` array of item
    ids) lists items never to recommend to that user. Ranks run 1..top_n, ties
    go to the smaller item id; a user gets fewer than ``top_n`` rows only when
    fewer items remain after exclusion.
    """
    queries = user_factors
    if exclude is not None:
        queries = user_factors.join(exclude.withColumnRenamed(S.USER_ID, S.ID), S.ID, "left").select(
            S.ID, S.FEATURES, F.coalesce(topk.EXCLUDE, F.array().cast("array<int>")).alias(topk.EXCLUDE)
        )
    candidates = item_factors
    if item_prior is not None:
        # One more factor: 1 for every user, the prior for every item, so the blocked
        # top-k's dot product is u·v + prior without a change to its scoring.
        queries = queries.withColumn(S.FEATURES, F.concat(S.FEATURES, F.array(F.lit(1.0).cast("float"))))
        prior = F.coalesce(F.col(PRIOR), F.lit(0.0)).cast("float")
        candidates = item_factors.join(item_prior, S.ID, "left").select(
            S.ID, F.concat(S.FEATURES, F.array(prior)).alias(S.FEATURES)
        )
    return topk.top_k(
        queries, candidates, top_n, n_queries=n_users, n_candidates=n_items, parallelism=parallelism
    ).select(
        F.col(topk.QUERY).alias(S.USER_ID),
        S.RANK,
        F.col(topk.CANDIDATE).alias(S.ITEM_ID),
        S.SCORE,
    )
