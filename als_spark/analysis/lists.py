"""The three lists of a fitted model, and how much the lists of two fits agree.

One row per table, fit (``run``) and entity: ``similar_users`` (each user's
``k`` most similar users), ``similar_items`` (the same for items) and
``recommendations`` (each user's top ``top_n`` items), computed with the
pipeline's own functions (:mod:`als_spark.similarity`, :mod:`als_spark.recommend`),
as ``id, items, scores`` arrays. :func:`pair_agreement` compares two fits'
lists entity by entity with the measures of :mod:`als_spark.analysis.agreement`.
``compare`` and ``converge`` are both built on this.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import caching, model
from als_spark import schema as S
from als_spark.analysis import agreement as A
from als_spark.analysis.progress import FitCost, FitRecord, timed_fit
from als_spark.config import ALSConfig
from als_spark.recommend import recommend
from als_spark.similarity import similar_items, similar_users

SIMILAR_USERS, SIMILAR_ITEMS, RECOMMENDATIONS = "similar_users", "similar_items", "recommendations"
TABLES = (SIMILAR_USERS, SIMILAR_ITEMS, RECOMMENDATIONS)
MEASURES = ("jaccard", "rbo")
#: Column names of the lists table (one row per table, run and entity).
TABLE, RUN, ITEMS, SCORES = "table", "run", "items", "scores"
TITLES = {SIMILAR_USERS: "similar users", SIMILAR_ITEMS: "similar items", RECOMMENDATIONS: "recommendations"}
MEASURE_TITLES = {"jaccard": "Jaccard", "rbo": "RBO"}


def ranked_lists(table: DataFrame, *, key: str, other: str, score: str) -> DataFrame:
    """``id, items, scores``: per ``key``, the ``other`` ids and scores ordered by ``rank``.

    ``sort_array`` on ``(rank, ...)`` structs: the order never relies on row order
    surviving ``collect_list``.
    """
    return (
        table.groupBy(key)
        .agg(F.sort_array(F.collect_list(F.struct(S.RANK, other, score))).alias("_l"))
        .select(
            F.col(key).cast("int").alias(S.ID),
            F.transform("_l", lambda s: s[other]).cast("array<int>").alias(ITEMS),
            F.transform("_l", lambda s: s[score]).cast("array<float>").alias(SCORES),
        )
    )


def lists_of(
    fitted: Any,
    run: int,
    *,
    k: int,
    top_n: int,
    exclude: DataFrame | None,
    item_prior: DataFrame | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
    parallelism: int = 2,
) -> DataFrame:
    """``table, run, id, items, scores``: the three lists of one fitted model (lazy).

    ``similar_users`` and ``similar_items`` (``k`` per entity, self excluded)
    and ``recommendations`` (``top_n`` per user, minus ``exclude``, scores plus
    ``item_prior`` as :func:`~als_spark.recommend.recommend` adds it), computed by
    the pipeline's own functions. ``n_users`` / ``n_items`` (the factor counts)
    save a count job each. Cache and materialise the result before the model
    is dropped.
    """
    user_factors, item_factors = model.factors(fitted)
    parts = [
        ranked_lists(
            similar_users(user_factors, top_k=k, n_users=n_users, parallelism=parallelism),
            key=S.USER_ID,
            other=S.SIMILAR_USER_ID,
            score=S.SIMILARITY,
        ).withColumn(TABLE, F.lit(SIMILAR_USERS)),
        ranked_lists(
            similar_items(item_factors, top_k=k, n_items=n_items, parallelism=parallelism),
            key=S.ITEM_ID,
            other=S.SIMILAR_ITEM_ID,
            score=S.SIMILARITY,
        ).withColumn(TABLE, F.lit(SIMILAR_ITEMS)),
        ranked_lists(
            recommend(
                user_factors,
                item_factors,
                top_n=top_n,
                exclude=exclude,
                item_prior=item_prior,
                n_users=n_users,
                n_items=n_items,
                parallelism=parallelism,
            ),
            key=S.USER_ID,
            other=S.ITEM_ID,
            score=S.SCORE,
        ).withColumn(TABLE, F.lit(RECOMMENDATIONS)),
    ]
    union = functools.reduce(DataFrame.unionByName, parts)
    return union.select(TABLE, F.lit(run).cast("int").alias(RUN), S.ID, ITEMS, SCORES)


@dataclass(frozen=True)
class ListSpec:
    """What :func:`lists_of` computes for every fit of one comparison (see its arguments)."""

    k: int
    top_n: int
    exclude: DataFrame | None
    item_prior: DataFrame | None
    n_users: int | None
    n_items: int | None
    parallelism: int


def fit_lists(
    interactions: DataFrame,
    cfg: ALSConfig,
    run: int,
    spec: ListSpec,
    *,
    blocks: int,
    label: str,
    cost: FitCost | None,
    interval: float,
) -> tuple[DataFrame, FitRecord]:
    """Fit ``cfg`` (timed, with progress), keep the fit's lists as fit ``run``, drop the model.

    The lists (:func:`lists_of` with ``spec``) are cached (:func:`~als_spark.caching.cache`) and
    filled before the model goes, so memory holds lists, never more than one model. Returns the
    lists and the fit's :class:`~als_spark.analysis.progress.FitRecord`. Call inside
    :func:`~als_spark.model.checkpoint_dir`.
    """
    fitted, record = timed_fit(interactions, cfg, num_blocks=blocks, label=label, cost=cost, interval=interval)
    lists = caching.cache(
        lists_of(
            fitted,
            run,
            k=spec.k,
            top_n=spec.top_n,
            exclude=spec.exclude,
            item_prior=spec.item_prior,
            n_users=spec.n_users,
            n_items=spec.n_items,
            parallelism=spec.parallelism,
        )
    )
    lists.count()
    del fitted
    gc.collect()  # let the model's JVM object go, so Spark can clean its cached factors
    return lists, record


def recommendations_of(lists: DataFrame) -> DataFrame:
    """``user_id, rank, item_id, score``: the recommendation lists of :func:`lists_of` as rows again."""
    return (
        lists.where(F.col(TABLE) == RECOMMENDATIONS)
        .select(
            F.col(S.ID).alias(S.USER_ID), F.posexplode(F.arrays_zip(F.col(ITEMS).alias("i"), F.col(SCORES).alias("s")))
        )
        .select(
            S.USER_ID,
            (F.col("pos") + 1).cast("int").alias(S.RANK),
            F.col("col.i").cast("int").alias(S.ITEM_ID),
            F.col("col.s").cast("float").alias(S.SCORE),
        )
    )


def pair_agreement(lists: DataFrame, pairs: Sequence[tuple[int, int]], *, rbo_p: float = A.DEFAULT_RBO_P) -> DataFrame:
    """``table, id, run_x, run_y, jaccard, rbo, identical`` for each of ``pairs`` of runs and each entity.

    ``lists`` is ``table, run, id, items`` (:func:`lists_of`). Jaccard is over the
    whole lists (their length is the table's k); ``identical`` is 1.0 when the
    two lists are equal in order. Entities missing from either run are left out.
    """
    spark = lists.sparkSession
    wanted = spark.createDataFrame([(int(x), int(y)) for x, y in pairs], "run_x int, run_y int")
    x = lists.select(TABLE, S.ID, F.col(RUN).alias("run_x"), F.col(ITEMS).alias("_x"))
    y = lists.select(TABLE, S.ID, F.col(RUN).alias("run_y"), F.col(ITEMS).alias("_y"))
    joined = F.broadcast(wanted).join(x, "run_x").join(y, [TABLE, S.ID, "run_y"])
    return joined.select(
        TABLE,
        S.ID,
        "run_x",
        "run_y",
        A.jaccard_col(F.col("_x"), F.col("_y")).alias("jaccard"),
        A.rbo_col(F.col("_x"), F.col("_y"), rbo_p).alias("rbo"),
        (F.col("_x") == F.col("_y")).cast("double").alias("identical"),
    )


def pair_means(pairwise: DataFrame, *measures: str) -> DataFrame:
    """``table, run_x, run_y, entities, <measure>...``: :func:`pair_agreement` averaged over entities."""
    return pairwise.groupBy(TABLE, "run_x", "run_y").agg(
        F.count(F.lit(1)).alias("entities"), *[F.avg(m).alias(m) for m in measures]
    )


def shape(df: DataFrame) -> tuple[int, int, int]:
    """``(rows, distinct users, distinct items)`` of interactions, in one Spark job."""
    row = df.agg(F.count(F.lit(1)), F.count_distinct(S.USER_ID), F.count_distinct(S.ITEM_ID)).first()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])
