"""Hold-out evaluation: split, fit ALS on train, score it and the baselines against test.

:func:`run_evaluate` is the job behind ``als-spark evaluate``. The pieces are
their own modules: the splits (:mod:`~als_spark.analysis.splits`), the metrics
and their definitions (:mod:`~als_spark.analysis.metrics`) and the baselines
(:mod:`~als_spark.analysis.baselines`). Everything is computed in Spark; only
the final metric values reach the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from als_spark import caching, feedback, model
from als_spark import schema as S
from als_spark.analysis.baselines import BASELINES, most_popular, random_items, rated_exclusions
from als_spark.analysis.metrics import METRIC_NAMES, METRICS, check_k, ranking_metrics
from als_spark.analysis.splits import (
    IS_TEST,
    SPLITS,
    check_fraction,
    labelled_split,
    require_columns,
    split_counts,
    train_test,
)
from als_spark.config import Config, IngestConfig
from als_spark.errors import ConfigError
from als_spark.recommend import popularity_prior, recommend
from als_spark.runinfo import Timer

log = logging.getLogger(__name__)


#: What the scored lists leave out: ``train`` (the standard protocol) or every ``rated`` item the
#: user is known to have rated, as ``recommend.exclude: rated`` does (see :func:`rated_exclusions`).
EXCLUDES = ("train", "rated")


#: Name of the ALS model's row in the metrics table.
ALS_MODEL = "als"


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
    check_k(k)
    check_fraction(test_fraction)
    require_columns(interactions_with_ts, S.USER_ID, S.ITEM_ID, S.CONFIDENCE, purpose="run_evaluate")
    if exclude not in EXCLUDES:
        raise ConfigError(f"exclude must be one of {', '.join(EXCLUDES)}, got {exclude!r}")
    if exclude == "rated":
        if rated is None:
            raise ConfigError("exclude='rated' needs the ratings (all values) to know what each user rated")
        needed = (S.USER_ID, S.ITEM_ID, S.TIMESTAMP) if split == "chronological" else (S.USER_ID, S.ITEM_ID)
        require_columns(rated, *needed, purpose="run_evaluate(exclude='rated')")

    timer = timer or Timer()
    # Everything cached here is released when the block ends, whatever happens.
    with caching.scope():
        with timer.stage("evaluate_split"):
            # One labelled frame, cached: train and test are filters of it (the window runs once).
            # (rated_exclusions needs the test items' time for a chronological split.)
            timed = [S.TIMESTAMP] if exclude == "rated" and split == "chronological" else []
            labelled = caching.cache(
                labelled_split(interactions_with_ts, split=split, test_fraction=test_fraction, seed=seed).select(
                    S.USER_ID, S.ITEM_ID, S.CONFIDENCE, *timed, IS_TEST
                )
            )
            n_train, n_test, n_users, catalog_size = split_counts(labelled)
            train_all, test_all = train_test(labelled)
            train = train_all.select(S.USER_ID, S.ITEM_ID, S.CONFIDENCE)
            test = test_all.select(S.USER_ID, S.ITEM_ID)
            if rated is not None:  # exclude == "rated" (checked above)
                excluded = caching.cache(rated_exclusions(train, test_all, rated, split=split))
            else:
                excluded = caching.cache(feedback.items_per_user(train))
            test_users = caching.cache(test.select(S.USER_ID).distinct())
        log.info(
            "evaluate: %s split, test_fraction=%g: %d train and %d test interactions, %d test users, %d train items; "
            "lists exclude the %s items",
            split,
            test_fraction,
            n_train,
            n_test,
            n_users,
            catalog_size,
            exclude,
        )
        rows: list[dict[str, Any]] = []

        def score(name: str, recs: DataFrame) -> None:
            """Recommend (``recs`` is lazy) and score, timed as one stage."""
            with timer.stage(f"evaluate_{name}"):
                # Materialised first: the metrics query reads the lists twice (per user, coverage),
                # and two branches over an unfilled cache would each compute the top-k.
                caching.cache(recs).count()
                metrics = ranking_metrics(recs, test, k=k, catalog_size=catalog_size)
            log.info("evaluate: %s %s", name, ", ".join(f"{m}={metrics[m]:.4f}" for m in METRIC_NAMES))
            rows.append({"model": name, "k": k, **metrics, "split": split, "test_fraction": float(test_fraction)})

        par = model.parallelism(spark)
        # Score inside the checkpoint block: the factors may be read back from its checkpoints.
        with model.checkpoint_dir(spark, cfg.als.checkpoint_dir):
            with timer.stage("evaluate_fit"):
                fitted = model.fit(train, cfg.als, num_blocks=par)  # a filter of the cached split
            user_factors, item_factors = model.factors(fitted)
            # ALS gives every train user and item factors, and every test user has a train row:
            # the counts the blocked top-k needs are already known.
            user_factors = user_factors.join(test_users.withColumnRenamed(S.USER_ID, S.ID), S.ID, "left_semi")
            recs = recommend(
                user_factors,
                item_factors,
                top_n=k,
                exclude=excluded,
                item_prior=popularity_prior(train, cfg.recommend.popularity_weight),
                n_users=n_users,
                n_items=catalog_size,
                parallelism=par,
            )
            score(ALS_MODEL, recs)

        for name in baselines:
            if name == "popularity":
                recs = most_popular(train, test_users, k=k, exclude=excluded)
            else:
                recs = random_items(train, test_users, k=k, seed=seed, exclude=excluded)
            score(name, recs)

    ordered = [{f.name: row[f.name] for f in METRICS.fields} for row in rows]
    metrics_df = spark.createDataFrame([tuple(r.values()) for r in ordered], METRICS)
    return metrics_df, ordered
