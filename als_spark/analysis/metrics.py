"""Top-k ranking metrics of recommendation lists against held-out interactions.

**Metrics** (:func:`ranking_metrics`), binary relevance: an item is relevant to a
user when the (user, item) pair is in the test set. For a user ``u`` with
relevant set ``R_u`` and top-k list ``L_u`` (ranks ``1..k``; shorter or empty is
allowed), with ``hits_u = |L_u ∩ R_u|`` and ``m_u = min(k, |R_u|)``:

============== ====================================================================
precision@k    ``hits_u / k`` (a list shorter than k is not rewarded)
recall@k       ``hits_u / |R_u|``
NDCG@k         ``DCG / IDCG``; ``DCG = sum over hit ranks r of 1 / log2(r + 1)``,
               ``IDCG = sum_{i=1..m_u} 1 / log2(i + 1)`` (all of the first m_u slots hit)
MAP@k          ``(1 / m_u) * sum over hit ranks r of precision@r``
hit rate@k     share of users with ``hits_u >= 1``
coverage       distinct items in the evaluated users' top-k lists / catalogue size
============== ====================================================================

Per-user values are averaged over the *evaluated* users: every user with at
least one test item. A test user without recommendations counts as all zeros; a
user with recommendations but no test items is ignored (also for coverage).

**Comparison with** ``pyspark.ml.evaluation.RankingEvaluator`` (Spark 4.x,
``RankingMetrics``), checked in ``tests/test_evaluate.py``: on one row per
evaluated user (an empty prediction array for a user without recommendations)
``precisionAtK``, ``recallAtK``, ``ndcgAtK`` and ``meanAveragePrecisionAtK`` equal
ours. The differences to know:

* It averages over *every* row, and scores a row with an empty label array 0
  (with a log warning). Rows for users without test items therefore drag its
  averages down; we ignore such users. Users missing from its input (no row)
  are not counted at all; we count test users without recommendations as 0.
* ``meanAveragePrecisionAtK`` divides by ``min(k, |R_u|)``, as here, but
  ``meanAveragePrecision`` (no k) divides by ``|R_u|`` and uses the whole list.
* ``ndcgAtK`` uses natural logarithms; the ratio DCG/IDCG is the same. Its ideal
  DCG also covers ``min(k, |R_u|)`` positions, as here.
* It counts a repeated item in a prediction list as a hit each time; we
  expect lists without repeats (as :func:`~als_spark.recommend.recommend` returns).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from als_spark import schema as S
from als_spark.analysis.reports import md_table
from als_spark.errors import ConfigError

log = logging.getLogger(__name__)


#: The metrics table: one row per model.
METRICS = StructType(
    [
        StructField("model", StringType(), False),
        StructField("k", IntegerType(), False),
        StructField("precision", DoubleType(), True),
        StructField("recall", DoubleType(), True),
        StructField("ndcg", DoubleType(), True),
        StructField("map", DoubleType(), True),
        StructField("hit_rate", DoubleType(), True),
        StructField("coverage", DoubleType(), True),
        StructField("users", LongType(), False),
        StructField("split", StringType(), False),
        StructField("test_fraction", DoubleType(), False),
    ]
)


METRIC_NAMES = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")


def check_k(k: int) -> None:
    """Raise :class:`ConfigError` unless ``k`` is a positive integer."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")


def _sum(values: Column) -> Column:
    return F.aggregate(values, F.lit(0.0), lambda acc, x: acc + x)


def per_user_metrics(recommendations: DataFrame, test: DataFrame, *, k: int) -> DataFrame:
    """``user_id, relevant, hits, precision, recall, ndcg, ap, hit``: one row per evaluated user.

    Evaluated users are the users in ``test``; see the module docstring for the
    definitions. ``recommendations`` needs ``user_id, rank, item_id`` (rows with
    rank > k are ignored); ``test`` needs ``user_id, item_id``.
    """
    check_k(k)
    relevant = test.select(S.USER_ID, S.ITEM_ID).distinct()
    n_relevant = relevant.groupBy(S.USER_ID).agg(F.count(F.lit(1)).alias("relevant"))
    top = recommendations.where(F.col(S.RANK) <= k).select(S.USER_ID, S.RANK, S.ITEM_ID)
    # Ranks of each user's hits, sorted (sort_array: no reliance on row order surviving collect_list).
    hit_ranks = (
        top.join(relevant, [S.USER_ID, S.ITEM_ID], "inner")
        .groupBy(S.USER_ID)
        .agg(F.sort_array(F.collect_list(F.col(S.RANK).cast("int"))).alias("_ranks"))
    )
    ranks = F.coalesce(F.col("_ranks"), F.array().cast("array<int>"))
    hits = F.size(ranks)
    m = F.least(F.lit(k), F.col("relevant"))
    dcg = _sum(F.transform(ranks, lambda r: 1.0 / F.log2(r + 1)))
    idcg = _sum(F.transform(F.sequence(F.lit(1), m), lambda i: 1.0 / F.log2(i + 1)))
    # The i-th hit (0-based) at rank r has precision@r = (i + 1) / r.
    ap = _sum(F.transform(ranks, lambda r, i: (i + 1) / r)) / m
    return n_relevant.join(hit_ranks, S.USER_ID, "left").select(
        S.USER_ID,
        "relevant",
        hits.cast("long").alias("hits"),
        (hits / F.lit(float(k))).alias("precision"),
        (hits / F.col("relevant")).alias("recall"),
        (dcg / idcg).alias("ndcg"),
        ap.alias("ap"),
        (hits > 0).cast("double").alias("hit"),
    )


def ranking_metrics(recommendations: DataFrame, test: DataFrame, *, k: int, catalog_size: int) -> dict[str, float]:
    """Top-k quality of ``recommendations`` against held-out ``test`` interactions.

    Returns ``precision, recall, ndcg, map, hit_rate, coverage`` (floats) and
    ``users`` (int, the number of evaluated users: those with at least one test
    item). Definitions are in the module docstring. ``coverage`` is the number
    of distinct items in the evaluated users' top-k lists over ``catalog_size``.
    With no evaluated user the metrics are NaN. Runs one query, which reads
    ``recommendations`` in two branches (per-user metrics and coverage): pass a
    cached, already materialised frame, or each branch computes the lists.
    """
    if not isinstance(catalog_size, int) or catalog_size < 1:
        raise ConfigError(f"catalog_size must be a positive integer, got {catalog_size!r}")
    per_user = per_user_metrics(recommendations, test, k=k)
    averages = per_user.agg(
        F.count(F.lit(1)).alias("users"),
        F.avg("precision").alias("precision"),
        F.avg("recall").alias("recall"),
        F.avg("ndcg").alias("ndcg"),
        F.avg("ap").alias("map"),
        F.avg("hit").alias("hit_rate"),
    )
    evaluated_lists = recommendations.where(F.col(S.RANK) <= k).join(
        test.select(S.USER_ID).distinct(), S.USER_ID, "left_semi"
    )
    coverage = evaluated_lists.agg((F.countDistinct(S.ITEM_ID) / F.lit(float(catalog_size))).alias("coverage"))
    row = averages.crossJoin(coverage).first()
    users = int(row["users"]) if row is not None else 0
    if row is None or users == 0:
        log.warning("no user has a test item: ranking metrics are NaN")
        return {**{name: math.nan for name in METRIC_NAMES}, "users": 0}
    result: dict[str, Any] = {name: float(row[name]) for name in METRIC_NAMES}
    result["users"] = users
    return result


def metrics_markdown(rows: list[dict[str, Any]]) -> str:
    """The metrics rows (:data:`METRICS` as dicts) as a Markdown table: what ``metrics.md`` holds."""
    k = rows[0]["k"] if rows else "k"
    head = ["model", *[f"{m}@{k}" if m != "coverage" else m for m in METRIC_NAMES], "users"]
    return md_table(head, [[row["model"], *[f"{row[m]:.4f}" for m in METRIC_NAMES], str(row["users"])] for row in rows])
