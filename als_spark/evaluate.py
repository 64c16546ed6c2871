"""Measure recommendation quality: hold-out splits, top-k ranking metrics, baselines.

Everything is computed in Spark; only the final metric values reach the driver.

**Splits.** :func:`split_per_user_random` and :func:`split_per_user_chronological`
hold out part of every user's interactions as the test set. Both keep at least
one interaction of every user in train, so every evaluated user has factors.

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

**Baselines.** :func:`most_popular` and :func:`random_items` return the same
``user_id, rank, item_id, score`` shape as the model's recommendations.
:func:`run_evaluate` is the job: split, fit ALS on train, recommend the top k
excluding every train item, score the model and the baselines against test.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from als_spark import feedback, model
from als_spark import schema as S
from als_spark.config import Config, IngestConfig
from als_spark.errors import ConfigError
from als_spark.recommend import popularity_prior, recommend
from als_spark.runinfo import Timer

log = logging.getLogger(__name__)

SPLITS = ("random", "chronological")
#: What the scored lists leave out: ``train`` (the standard protocol) or every ``rated`` item the
#: user is known to have rated, as ``recommend.exclude: rated`` does (see :func:`rated_exclusions`).
EXCLUDES = ("train", "rated")
BASELINES = ("popularity", "random")
#: Name of the ALS model's row in the metrics table.
ALS_MODEL = "als"
EXCLUDE = "exclude"

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

_POS, _N_TEST = "_eval_pos", "_eval_n_test"


# --- splits ---------------------------------------------------------------------


def _require(df: DataFrame, *columns: str, purpose: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{purpose} needs column(s) {', '.join(missing)}; the input has {', '.join(df.columns) or 'no columns'}"
        )


def _check_fraction(test_fraction: float) -> None:
    if not (isinstance(test_fraction, (int, float)) and 0.0 < test_fraction < 1.0):
        raise ConfigError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")


#: Salts that keep the split's and the random baseline's draws independent for the same seed.
#: (Unsalted, the random baseline would rank by the very hash the split held items out by,
#: and never pick a test item: measured 0 hits on ML-100k.)
_SPLIT_SALT, _RANDOM_SALT = "split", "random_items"


def _hash(salt: str, seed: int, user: Column, item: Column) -> Column:
    """``xxhash64(salt, seed, user, item)`` with the numbers as longs (independent of the id types)."""
    return F.xxhash64(F.lit(salt), F.lit(int(seed)).cast("long"), user.cast("long"), item.cast("long"))


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")


_IS_TEST = "_eval_is_test"


def _label_first_n(df: DataFrame, order: list[Column], test_fraction: float) -> DataFrame:
    """``df`` plus the boolean ``_eval_is_test``: per user, the first ``n_test`` rows in ``order``."""
    by_user = Window.partitionBy(S.USER_ID)
    n_u = F.count(F.lit(1)).over(by_user)
    # HALF_UP rounding (Spark's round), capped so at least one row stays in train.
    n_test = F.least(F.round(F.lit(float(test_fraction)) * n_u).cast("long"), n_u - 1)
    labelled = df.withColumn(_N_TEST, n_test).withColumn(_POS, F.row_number().over(by_user.orderBy(*order)))
    return labelled.select(*df.columns, (F.col(_POS) <= F.col(_N_TEST)).alias(_IS_TEST))


def _parts(labelled: DataFrame) -> tuple[DataFrame, DataFrame]:
    """``(train, test)`` of a labelled frame, without the label."""
    columns = [c for c in labelled.columns if c != _IS_TEST]
    return labelled.where(~F.col(_IS_TEST)).select(*columns), labelled.where(F.col(_IS_TEST)).select(*columns)


def labelled_split(df: DataFrame, *, split: str, test_fraction: float = 0.25, seed: int = 42) -> DataFrame:
    """``df`` plus a boolean column ``_eval_is_test``: the split of :func:`split_per_user_random`
    (``split="random"``) or :func:`split_per_user_chronological` as one frame (cache it once, filter twice)."""
    if split == "random":
        _require(df, S.USER_ID, S.ITEM_ID, purpose="split_per_user_random")
        _check_fraction(test_fraction)
        key = _hash(_SPLIT_SALT, seed, F.col(S.USER_ID), F.col(S.ITEM_ID))
        return _label_first_n(df, [key.asc(), F.col(S.ITEM_ID).asc()], test_fraction)
    if split == "chronological":
        _require(df, S.USER_ID, S.ITEM_ID, S.TIMESTAMP, purpose="split_per_user_chronological")
        _check_fraction(test_fraction)
        order = [F.col(S.TIMESTAMP).desc_nulls_last(), F.col(S.ITEM_ID).desc()]
        return _label_first_n(df, order, test_fraction)
    raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def split_counts(labelled: DataFrame) -> tuple[int, int, int, int]:
    """``(train rows, test rows, test users, train items)`` of a :func:`labelled_split` frame, in one job."""
    is_test = F.col(_IS_TEST)
    row = labelled.agg(
        F.count(F.when(~is_test, 1)),
        F.count(F.when(is_test, 1)),
        F.countDistinct(F.when(is_test, F.col(S.USER_ID))),
        F.countDistinct(F.when(~is_test, F.col(S.ITEM_ID))),
    ).first()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def split_per_user_random(
    df: DataFrame, *, test_fraction: float = 0.25, seed: int = 42
) -> tuple[DataFrame, DataFrame]:
    """``(train, test)``: a seeded random share of each user's rows held out as test.

    A user with ``n`` rows gets ``min(round_half_up(test_fraction * n), n - 1)``
    test rows (``test_fraction * n`` in double precision): with 0.25, 1 row -> 0,
    2 -> 1 (0.5 rounds up), 3 -> 1, 4 -> 1, 6 -> 2 (1.5 rounds up), 10 -> 3. Every
    user keeps at least one train row. The rows held out are those with the
    smallest ``xxhash64('split', seed, user_id, item_id)`` (seed and ids as
    longs; ties by item_id), so the split depends only on the seed and the
    (user, item) pairs, not on partitioning or row order. ``df`` needs ``user_id`` and ``item_id``,
    one row per pair; all its columns are kept, in order.
    """
    return _parts(labelled_split(df, split="random", test_fraction=test_fraction, seed=seed))


def split_per_user_chronological(df: DataFrame, *, test_fraction: float = 0.25) -> tuple[DataFrame, DataFrame]:
    """``(train, test)``: each user's latest rows held out as test.

    The number of test rows per user follows :func:`split_per_user_random`. Rows
    are ordered by ``timestamp`` then ``item_id``; the last ones are the test
    rows (at equal timestamps the larger item id counts as later; a null
    timestamp counts as the earliest). Raises :class:`ConfigError` when ``df``
    has no ``timestamp`` column.
    """
    return _parts(labelled_split(df, split="chronological", test_fraction=test_fraction))


# --- metrics ---------------------------------------------------------------------


def _sum(values: Column) -> Column:
    return F.aggregate(values, F.lit(0.0), lambda acc, x: acc + x)


def per_user_metrics(recommendations: DataFrame, test: DataFrame, *, k: int) -> DataFrame:
    """``user_id, relevant, hits, precision, recall, ndcg, ap, hit``: one row per evaluated user.

    Evaluated users are the users in ``test``; see the module docstring for the
    definitions. ``recommendations`` needs ``user_id, rank, item_id`` (rows with
    rank > k are ignored); ``test`` needs ``user_id, item_id``.
    """
    _check_k(k)
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
    if users == 0:
        log.warning("no user has a test item: ranking metrics are NaN")
        return {**{name: math.nan for name in METRIC_NAMES}, "users": 0}
    result: dict[str, Any] = {name: float(row[name]) for name in METRIC_NAMES}
    result["users"] = users
    return result


# --- baselines ---------------------------------------------------------------------


def _users_with_exclusions(users: DataFrame, exclude: DataFrame | None) -> DataFrame:
    """``user_id, exclude`` for every distinct user (an empty array when nothing is excluded)."""
    distinct = users.select(S.USER_ID).distinct()
    empty = F.array().cast("array<int>")
    if exclude is None:
        return distinct.withColumn(EXCLUDE, empty)
    return distinct.join(exclude.select(S.USER_ID, EXCLUDE), S.USER_ID, "left").select(
        S.USER_ID, F.coalesce(F.col(EXCLUDE).cast("array<int>"), empty).alias(EXCLUDE)
    )


def _explode_lists(per_user: DataFrame, lists: str, score: str) -> DataFrame:
    """``user_id, rank, item_id, score`` from one array of ``struct(item_id, <score>)`` per user."""
    return per_user.select(S.USER_ID, F.posexplode(lists).alias("_pos", "_c")).select(
        F.col(S.USER_ID).cast("int").alias(S.USER_ID),
        (F.col("_pos") + 1).cast("int").alias(S.RANK),
        F.col(f"_c.{S.ITEM_ID}").cast("int").alias(S.ITEM_ID),
        F.col(f"_c.{score}").cast("float").alias(S.SCORE),
    )


def most_popular(train: DataFrame, users: DataFrame, *, k: int, exclude: DataFrame | None = None) -> DataFrame:
    """``user_id, rank, item_id, score``: the ``k`` most popular items each user has not seen.

    Popularity (the ``score``) is the number of ``train`` rows of the item; ties
    go to the smaller item id. ``users`` lists the users to recommend to
    (``user_id``); ``exclude`` (``user_id, exclude`` array of item ids, as from
    :func:`~als_spark.feedback.exclusions`) the items never to recommend to each.
    No user-by-item join: the ``k + max |exclude|`` most popular items are
    ranked once (one small job finds the max), then each user's list is
    filtered from that array.
    """
    _check_k(k)
    candidates_per_user = _users_with_exclusions(users, exclude)
    longest = candidates_per_user.agg(F.max(F.size(EXCLUDE))).first()
    n_candidates = k + int((longest[0] if longest else 0) or 0)
    ranked = (
        train.groupBy(S.ITEM_ID)
        .agg(F.count(F.lit(1)).alias("_pop"))
        .orderBy(F.col("_pop").desc(), F.col(S.ITEM_ID).asc())
        .limit(n_candidates)
    )
    # One row: the candidates, most popular first (negated count sorts descending, then item id).
    top = ranked.agg(
        F.sort_array(
            F.collect_list(F.struct((-F.col("_pop")).alias("_neg"), F.col(S.ITEM_ID), F.col("_pop").alias(S.SCORE)))
        ).alias("_cands")
    )
    # A user's first k + |exclude_u| candidates always hold k unseen ones (if the catalogue does).
    own = F.slice(F.col("_cands"), 1, F.lit(k) + F.size(EXCLUDE))
    unseen = F.filter(own, lambda c: ~F.array_contains(F.col(EXCLUDE), c[S.ITEM_ID]))
    lists = candidates_per_user.crossJoin(top).select(S.USER_ID, F.slice(unseen, 1, k).alias("_list"))
    return _explode_lists(lists, "_list", S.SCORE)


def random_items(
    train: DataFrame, users: DataFrame, *, k: int, seed: int, exclude: DataFrame | None = None
) -> DataFrame:
    """``user_id, rank, item_id, score``: ``k`` uniformly random unseen items per user.

    Items are drawn from the distinct items of ``train``, minus the user's
    ``exclude`` list (as in :func:`most_popular`). Each (user, item) gets the
    pseudo-random ``score`` in [0, 1): the top 53 bits of
    ``xxhash64('random_items', seed, user_id, item_id)``; a user's list is the
    k highest (ties by item id), so lists depend only on the seed and the ids
    (not on partitioning), are independent of :func:`split_per_user_random`
    with the same seed, and a user gets k items whenever k unseen ones exist.
    Cost: every user scores the whole catalogue inside one row (the catalogue
    array is broadcast, no user-by-item rows are shuffled), like the model's
    own top-k scoring.
    """
    _check_k(k)
    catalogue = train.agg(F.array_distinct(F.collect_list(F.col(S.ITEM_ID).cast("int"))).alias("_catalogue"))
    per_user = _users_with_exclusions(users, exclude).crossJoin(catalogue)

    def draw(item: Column) -> Column:
        h = _hash(_RANDOM_SALT, seed, F.col(S.USER_ID), item)
        # The top 53 bits as a double in [0, 1); negated so sort_array puts the highest first.
        u = F.shiftrightunsigned(h, 11).cast("double") / float(1 << 53)
        return F.struct((-u).alias("_neg"), item.alias(S.ITEM_ID), u.alias(S.SCORE))

    unseen = F.filter(F.col("_catalogue"), lambda i: ~F.array_contains(F.col(EXCLUDE), i))
    lists = per_user.select(S.USER_ID, F.slice(F.sort_array(F.transform(unseen, draw)), 1, k).alias("_list"))
    return _explode_lists(lists, "_list", S.SCORE)


# --- exclusions --------------------------------------------------------------------------


def rated_exclusions(train: DataFrame, test: DataFrame, rated: DataFrame, *, split: str) -> DataFrame:
    """``user_id, exclude``: what ``recommend.exclude: rated`` would hide at the split's point in time.

    The user's train items plus every item the user rated at any rating (``rated``: ``user_id,
    item_id`` and, for the chronological split, ``timestamp``) that is not one of the user's test
    items. For ``split="chronological"`` only ratings made strictly before the user's first test
    interaction count (``test`` then needs ``timestamp``): a rating from the held-out future is not
    known when the list is made. Test items are never excluded.
    """
    seen = rated.select(S.USER_ID, S.ITEM_ID, *([S.TIMESTAMP] if split == "chronological" else [])).join(
        test.select(S.USER_ID, S.ITEM_ID), [S.USER_ID, S.ITEM_ID], "left_anti"
    )
    if split == "chronological":
        first_test = test.groupBy(S.USER_ID).agg(F.min(S.TIMESTAMP).alias("_first_test"))
        seen = seen.join(first_test, S.USER_ID, "left").where(
            F.col("_first_test").isNull() | (F.col(S.TIMESTAMP) < F.col("_first_test"))
        )
    items = train.select(S.USER_ID, S.ITEM_ID).unionByName(seen.select(S.USER_ID, S.ITEM_ID)).distinct()
    return feedback.items_per_user(items)


# --- the job ---------------------------------------------------------------------------


def interactions_with_timestamp(ratings: DataFrame, cfg: IngestConfig) -> DataFrame:
    """``user_id, item_id, rating, confidence, timestamp``: the interactions ALS trains on, with their time.

    Like :func:`~als_spark.feedback.to_interactions`, keeping ``timestamp`` for a
    chronological split.
    """
    return (
        ratings.transform(feedback.filter_min_rating, cfg.min_rating)
        .transform(feedback.with_confidence, cfg.confidence)
        .select(S.USER_ID, S.ITEM_ID, S.RATING, S.CONFIDENCE, S.TIMESTAMP)
    )


@contextmanager
def _stage(timer: Timer | None, name: str) -> Iterator[None]:
    if timer is not None:
        with timer.stage(name):
            yield
        return
    start = time.perf_counter()
    yield
    log.info("evaluate: %s done in %.1f s", name, time.perf_counter() - start)


def run_evaluate(
    spark: SparkSession,
    interactions_with_ts: DataFrame,
    cfg: Config,
    *,
    k: int = 10,
    test_fraction: float = 0.25,
    split: str = "random",
    seed: int = 42,
    baselines: Sequence[str] = BASELINES,
    exclude: str = "train",
    rated: DataFrame | None = None,
    timer: Timer | None = None,
) -> tuple[DataFrame, list[dict[str, Any]]]:
    """Hold out test interactions, fit ALS on the rest, and score it and the baselines.

    ``interactions_with_ts`` has ``user_id, item_id, confidence`` (and
    ``timestamp`` for ``split="chronological"``), e.g. from
    :func:`interactions_with_timestamp`. The split is per user
    (:func:`split_per_user_random` with ``seed``, or
    :func:`split_per_user_chronological`). ALS (``cfg.als``) is fitted on train;
    every model recommends ``k`` items to each test user, never one of the
    user's train items (``exclude="train"``) or, with ``exclude="rated"``, never
    an item of :func:`rated_exclusions` (``rated``: all the ratings, any value,
    with ``timestamp`` for the chronological split), and is scored by :func:`ranking_metrics` with the
    catalogue = the distinct train items. Returns the metrics table
    (:data:`METRICS`: ALS first, then ``baselines`` in order) and the same rows
    as dicts. ``timer`` (e.g. ``RunLog.timer``) records each stage's seconds.
    Nothing is written.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {', '.join(map(repr, unknown))}; known: {', '.join(BASELINES)}")
    _check_k(k)
    _check_fraction(test_fraction)
    _require(interactions_with_ts, S.USER_ID, S.ITEM_ID, S.CONFIDENCE, purpose="run_evaluate")
    if exclude not in EXCLUDES:
        raise ConfigError(f"exclude must be one of {', '.join(EXCLUDES)}, got {exclude!r}")
    if exclude == "rated":
        if rated is None:
            raise ConfigError("exclude='rated' needs the ratings (all values) to know what each user rated")
        needed = (S.USER_ID, S.ITEM_ID, S.TIMESTAMP) if split == "chronological" else (S.USER_ID, S.ITEM_ID)
        _require(rated, *needed, purpose="run_evaluate(exclude='rated')")

    cached: list[DataFrame] = []

    def keep(df: DataFrame) -> DataFrame:
        cached.append(df.cache())
        return df

    try:
        with _stage(timer, "evaluate_split"):
            # One labelled frame, cached: train and test are filters of it (the window runs once).
            # (rated_exclusions needs the test items' time for a chronological split.)
            timed = [S.TIMESTAMP] if exclude == "rated" and split == "chronological" else []
            labelled = keep(
                labelled_split(interactions_with_ts, split=split, test_fraction=test_fraction, seed=seed)
                .select(S.USER_ID, S.ITEM_ID, S.CONFIDENCE, *timed, _IS_TEST)
            )
            n_train, n_test, n_users, catalog_size = split_counts(labelled)
            train_all, test_all = _parts(labelled)
            train = train_all.select(S.USER_ID, S.ITEM_ID, S.CONFIDENCE)
            test = test_all.select(S.USER_ID, S.ITEM_ID)
            if exclude == "rated":
                excluded = keep(rated_exclusions(train, test_all, rated, split=split))
            else:
                excluded = keep(feedback.items_per_user(train))
            test_users = keep(test.select(S.USER_ID).distinct())
        log.info(
            "evaluate: %s split, test_fraction=%g: %d train and %d test interactions, %d test users, %d train items; "
            "lists exclude the %s items",
            split, test_fraction, n_train, n_test, n_users, catalog_size, exclude,
        )
        rows: list[dict[str, Any]] = []

        def score(name: str, recs: DataFrame) -> None:
            """Recommend (``recs`` is lazy) and score, timed as one stage."""
            with _stage(timer, f"evaluate_{name}"):
                # Materialised first: the metrics query reads the lists twice (per user, coverage),
                # and two branches over an unfilled cache would each compute the top-k.
                keep(recs).count()
                metrics = ranking_metrics(recs, test, k=k, catalog_size=catalog_size)
            log.info("evaluate: %s %s", name, ", ".join(f"{m}={metrics[m]:.4f}" for m in METRIC_NAMES))
            rows.append({"model": name, "k": k, **metrics, "split": split, "test_fraction": float(test_fraction)})

        par = model.parallelism(spark)
        # Score inside the checkpoint block: the factors may be read back from its checkpoints.
        with model.checkpoint_dir(spark, cfg.als.checkpoint_dir):
            with _stage(timer, "evaluate_fit"):
                fitted = model.fit(train, cfg.als, num_blocks=par)  # a filter of the cached split
            user_factors, item_factors = model.factors(fitted)
            # ALS gives every train user and item factors, and every test user has a train row:
            # the counts the blocked top-k needs are already known.
            user_factors = user_factors.join(test_users.withColumnRenamed(S.USER_ID, S.ID), S.ID, "left_semi")
            recs = recommend(
                user_factors, item_factors, top_n=k, exclude=excluded,
                item_prior=popularity_prior(train, cfg.recommend.popularity_weight), n_users=n_users,
                n_items=catalog_size, parallelism=par,
            )
            score(ALS_MODEL, recs)

        for name in baselines:
            if name == "popularity":
                recs = most_popular(train, test_users, k=k, exclude=excluded)
            else:
                recs = random_items(train, test_users, k=k, seed=seed, exclude=excluded)
            score(name, recs)
    finally:
        for df in cached:
            df.unpersist()

    ordered = [{f.name: row[f.name] for f in METRICS.fields} for row in rows]
    metrics_df = spark.createDataFrame([tuple(r.values()) for r in ordered], METRICS)
    return metrics_df, ordered
