"""Nearest neighbours by cosine similarity of the learned factors."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import schema as S
from als_spark import topk


def most_similar(
    factors: DataFrame,
    *,
    top_k: int,
    id_col: str,
    similar_col: str,
    n: int | None = None,
    parallelism: int = 2,
    of: DataFrame | None = None,
) -> DataFrame:
    """``id_col, rank, similar_col, similarity`` for every row of ``factors`` (``id, features``).

    ``similarity`` is the cosine of the angle between the two factor vectors, in
    [-1, 1]; a zero vector has similarity 0 with everything. An entity is never
    in its own list. Ranks run 1..top_k, ties go to the smaller id. With ``of``
    (a frame with an ``id`` column) only those entities get lists, still drawn
    from all of ``factors``.
    """
    queries = factors if of is None else factors.join(of.select(S.ID).distinct(), S.ID, "left_semi")
    return topk.top_k(
        queries,
        factors,
        top_k,
        cosine=True,
        exclude_self=True,
        n_queries=n if of is None else None,
        n_candidates=n,
        parallelism=parallelism,
    ).select(
        F.col(topk.QUERY).alias(id_col),
        S.RANK,
        F.col(topk.CANDIDATE).alias(similar_col),
        F.col(S.SCORE).alias(S.SIMILARITY),
    )


def similar_items(
    item_factors: DataFrame,
    *,
    top_k: int,
    n_items: int | None = None,
    parallelism: int = 2,
    of: DataFrame | None = None,
) -> DataFrame:
    """``item_id, rank, similar_item_id, similarity``: the ``top_k`` items most like each item (or each of ``of``)."""
    return most_similar(
        item_factors,
        top_k=top_k,
        id_col=S.ITEM_ID,
        similar_col=S.SIMILAR_ITEM_ID,
        n=n_items,
        parallelism=parallelism,
        of=of,
    )


def similar_users(
    user_factors: DataFrame,
    *,
    top_k: int,
    n_users: int | None = None,
    parallelism: int = 2,
    of: DataFrame | None = None,
) -> DataFrame:
    """``user_id, rank, similar_user_id, similarity``: the ``top_k`` users most like each user (or each of ``of``)."""
    return most_similar(
        user_factors,
        top_k=top_k,
        id_col=S.USER_ID,
        similar_col=S.SIMILAR_USER_ID,
        n=n_users,
        parallelism=parallelism,
        of=of,
    )
