"""Top-N recommendations from the learned factors, with seen items removed, and a fallback for every user.

:func:`serve` answers every user it is given: those with a vector get ALS's top-N (``source``
``als``, or ``fold_in`` for vectors solved by :mod:`als_spark.foldin`), the others the most
popular items (``popularity``). Candidate filters (:func:`candidates`, and deny pairs merged
into the exclusion lists by :func:`~als_spark.feedback.exclusions`) act inside the blocked top-k, so a user
still gets ``top_n`` items while enough remain.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import schema as S
from als_spark import topk

#: Column of :func:`popularity_prior`'s table: what is added to every score of that item.
PRIOR = "prior"
#: Where a user's recommendations come from (:func:`serve`'s ``source`` column).
SOURCES = ("als", "fold_in", "popularity")


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


def candidates(item_factors: DataFrame, *, allow: DataFrame | None = None, deny: DataFrame | None = None) -> DataFrame:
    """``item_factors`` (``id, ...``) kept to the ids of ``allow`` and without those of ``deny`` (both ``id``)."""
    if allow is not None:
        item_factors = item_factors.join(allow.select(S.ID).distinct(), S.ID, "left_semi")
    if deny is not None:
        item_factors = item_factors.join(deny.select(S.ID), S.ID, "left_anti")
    return item_factors


def popularity(interactions: DataFrame) -> DataFrame:
    """``id, features``: each item's number of interactions as a one-factor vector.

    Scored against a user vector of ``[1]`` by :func:`~als_spark.topk.top_k`, this ranks items by
    popularity (ties: the smaller id) with the same exclusions and filters as ALS's scores.
    """
    count = F.count(F.lit(1)).cast("float")
    return interactions.groupBy(F.col(S.ITEM_ID).alias(S.ID)).agg(F.array(count).alias(S.FEATURES))


def serve(
    users: DataFrame,
    user_factors: DataFrame,
    item_factors: DataFrame,
    item_popularity: DataFrame,
    *,
    top_n: int,
    exclude: DataFrame | None = None,
    item_prior: DataFrame | None = None,
    source: str = "als",
    n_users: int | None = None,
    n_items: int | None = None,
    parallelism: int = 2,
) -> tuple[DataFrame, int]:
    """``user_id, rank, item_id, score, source`` for every ``id`` of ``users``, and how many fell back.

    A user with a row in ``user_factors`` gets :func:`recommend`'s list (``source``); one without
    gets the most popular items of ``item_popularity`` (:func:`popularity`, already filtered like
    ``item_factors``), scored by their interaction count (``popularity``). ``exclude`` applies to
    both.
    """
    if source not in SOURCES[:2]:
        raise ValueError(f"source must be one of {SOURCES[:2]}, got {source!r}")
    served = recommend(
        user_factors,
        item_factors,
        top_n=top_n,
        exclude=exclude,
        item_prior=item_prior,
        n_users=n_users,
        n_items=n_items,
        parallelism=parallelism,
    ).withColumn(S.SOURCE, F.lit(source))
    cold = users.select(S.ID).distinct().join(user_factors.select(S.ID), S.ID, "left_anti")
    n_cold = cold.count()
    if n_cold == 0:
        return served, 0
    one = F.array(F.lit(1.0).cast("float")).alias(S.FEATURES)
    popular = recommend(
        cold.select(S.ID, one), item_popularity, top_n=top_n, exclude=exclude, n_users=n_cold, parallelism=parallelism
    ).withColumn(S.SOURCE, F.lit("popularity"))
    return served.unionByName(popular), n_cold
