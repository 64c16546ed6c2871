"""Hyper-parameter search for implicit ALS, scored on a validation split cut from train.

**Data.** The interactions (ratings >= ``ingest.min_rating``) are split per user
exactly as :func:`~als_spark.analysis.evaluate.run_evaluate` splits them
(:func:`~als_spark.analysis.splits.split_per_user_random` with ``seed``). The *search*
only ever receives the train side: :func:`search` splits it again per user, with
a different seed (``validation_seed``), into a fit part and a validation part.
Every trial fits ALS on the fit part and recommends ``k`` unseen items (never an
item of the user's fit part) to each validation user; the objective is one
ranking metric of :func:`~als_spark.analysis.metrics.ranking_metrics` (``ndcg`` by
default) on the validation part. Only after the search does :func:`run_tune`
evaluate the best configuration, once, on the test split (fitted on the whole
train side, by :func:`~als_spark.analysis.evaluate.run_evaluate`), next to any
``compare`` configurations and the popularity and random baselines.

The spec is :mod:`~als_spark.analysis.tune_spec`, the trial loop (repeats, early stop)
:mod:`~als_spark.analysis.trials`, the outputs :mod:`~als_spark.analysis.tune_report`.

**Outputs** of :func:`run_tune` under ``output``: ``leaderboard`` (Parquet,
:data:`LEADERBOARD`, best first), ``best.yaml`` (a complete configuration for
``--config``), ``tune.png`` (the objective against each parameter; needs
matplotlib, skipped with a warning without it), ``test_metrics`` (Parquet,
:data:`~als_spark.analysis.metrics.METRICS`: ``tuned``, the ``compare`` rows, the
baselines) and ``tune.json`` (spec, splits, best trial, test metrics, timings).
The search's outputs are published (:class:`~als_spark.publish.Publisher`) as
soon as it ends, so a failure in the test evaluation does not lose them; the
test metrics and ``tune.json`` follow. Nothing is written during the search:
the log shows its progress, one line per trial.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from als_spark import feedback, model, publish
from als_spark import schema as S
from als_spark.analysis.baselines import BASELINES
from als_spark.analysis.evaluate import ALS_MODEL, run_evaluate
from als_spark.analysis.metrics import METRIC_NAMES, METRICS, check_k, ranking_metrics
from als_spark.analysis.splits import (
    check_fraction,
    labelled_split,
    require_columns,
    split_counts,
    split_per_user_random,
    train_test,
)
from als_spark.analysis.trials import STATUS_STOPPED, Trial, best_trial, describe, repeated, run_trials
from als_spark.analysis.tune_report import config_yaml, leaderboard, plot_png, varied
from als_spark.analysis.tune_spec import TuneSpec, trial_config, trials
from als_spark.config import Config
from als_spark.errors import ConfigError, InputDataError
from als_spark.recommend import popularity_prior, recommend
from als_spark.runinfo import Timer

log = logging.getLogger(__name__)


#: Name of the tuned configuration's row in ``test_metrics``.
BEST_MODEL = "tuned"


@dataclass
class ValidationData:
    """The fit part (by confidence mode), validation pairs, and what scoring them needs; all cached."""

    fit_ratings: DataFrame
    validation: DataFrame
    users: DataFrame
    exclude: DataFrame
    catalog_size: int
    n_users: int = 0
    by_confidence: dict[str, DataFrame] = field(default_factory=dict)
    cached: list[DataFrame] = field(default_factory=list)

    def interactions(self, mode: str) -> DataFrame:
        """``user_id, item_id, confidence`` of the fit part, cached and materialised once per mode."""
        if mode not in self.by_confidence:
            df = self.fit_ratings.transform(feedback.with_confidence, mode).select(S.USER_ID, S.ITEM_ID, S.CONFIDENCE)
            df = df.cache()
            df.count()
            self.cached.append(df)
            self.by_confidence[mode] = df
        return self.by_confidence[mode]

    def release(self) -> None:
        for df in self.cached:
            df.unpersist()


def fit_and_score(spark: SparkSession, data: ValidationData, cfg: Config, *, k: int) -> dict[str, Any]:
    """Fit ``cfg`` on the fit part and score its top-k (unseen) on the validation part."""
    par = model.parallelism(spark)
    fit_part = data.interactions(cfg.ingest.confidence)
    fitted = model.fit(fit_part, cfg.als, num_blocks=par)
    user_factors, item_factors = model.factors(fitted)
    # Every validation user has fit rows and every fit item has factors: the counts are known.
    user_factors = user_factors.join(data.users.withColumnRenamed(S.USER_ID, S.ID), S.ID, "left_semi")
    recs = recommend(
        user_factors,
        item_factors,
        top_n=k,
        exclude=data.exclude,
        item_prior=popularity_prior(fit_part, cfg.recommend.popularity_weight),
        n_users=data.n_users,
        n_items=data.catalog_size,
        parallelism=par,
    ).cache()
    try:
        recs.count()  # filled once: ranking_metrics reads the lists in two branches
        return ranking_metrics(recs, data.validation, k=k, catalog_size=data.catalog_size)
    finally:
        recs.unpersist()


def search(
    spark: SparkSession,
    train: DataFrame,
    base: Config,
    spec: TuneSpec,
    *,
    k: int = 10,
    validation_fraction: float = 0.25,
    validation_seed: int = 43,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Run the search on ``train`` only; return the trials in the order they ran.

    ``train`` has ``user_id, item_id, rating``: the interactions the search may
    see (the train side of the test split). It is split per user
    (:func:`~als_spark.analysis.evaluate.split_per_user_random` with ``validation_seed``
    and ``validation_fraction``) into a fit part and a validation part; each
    trial's ALS is fitted on the fit part, recommends ``k`` items to every
    validation user (never one of the user's fit items), and is scored on the
    validation part by ``spec.metric`` (see the module docstring for early
    stopping). Logs one line per trial; ``on_trial`` is called after each.
    """
    check_k(k)
    check_fraction(validation_fraction)
    require_columns(train, S.USER_ID, S.ITEM_ID, S.RATING, purpose="tune.search")
    plan = trials(spec)
    configs = [trial_config(base, params) for params in plan]

    # The split of split_per_user_random, labelled once and cached (one window computation);
    # the fit and validation parts are filters of it.
    labelled = labelled_split(
        train.select(S.USER_ID, S.ITEM_ID, S.RATING),
        split="random",
        test_fraction=validation_fraction,
        seed=validation_seed,
    ).cache()
    fit_part, validation = train_test(labelled)
    validation = validation.select(S.USER_ID, S.ITEM_ID)
    users = validation.select(S.USER_ID).distinct().cache()
    exclude = feedback.items_per_user(fit_part).cache()
    data = ValidationData(
        fit_ratings=fit_part,
        validation=validation,
        users=users,
        exclude=exclude,
        catalog_size=0,
        cached=[labelled, users, exclude],
    )
    try:
        n_fit, n_validation, n_users, data.catalog_size = split_counts(labelled)
        data.n_users = n_users
        if n_validation == 0:
            raise InputDataError(
                "the validation split is empty: no user has enough train interactions to hold one out "
                f"at validation_fraction={validation_fraction:g}"
            )
        log.info(
            "tune: %s search, %d trials, objective %s@%d on a validation split of train "
            "(%d fit and %d validation interactions, %d validation users, %d fit items)",
            spec.method,
            len(plan),
            spec.metric,
            k,
            n_fit,
            n_validation,
            n_users,
            data.catalog_size,
        )
        with model.checkpoint_dir(spark, base.als.checkpoint_dir):
            return run_trials(
                list(zip(plan, configs)),
                spec,
                lambda cfg: repeated(lambda c: fit_and_score(spark, data, c, k=k), cfg, spec),
                k=k,
                on_trial=on_trial,
            )
    finally:
        data.release()


@dataclass
class TuneResult:
    """What :func:`run_tune` produced."""

    trials: list[Trial]
    best: Trial
    test_metrics: list[dict[str, Any]]
    outputs: dict[str, str]
    summary: dict[str, Any]


def run_tune(
    spark: SparkSession,
    ratings: DataFrame,
    base: Config,
    output: str,
    *,
    spec: TuneSpec,
    k: int = 10,
    test_fraction: float = 0.25,
    seed: int = 42,
    validation_fraction: float | None = None,
    validation_seed: int | None = None,
    compare: Mapping[str, Config] | None = None,
    baselines: Sequence[str] = BASELINES,
    evaluate_test: bool = True,
    timer: Timer | None = None,
) -> TuneResult:
    """Search ``spec`` on a validation split of train, write the results, then test the best once.

    ``ratings`` has ``user_id, item_id, rating`` (e.g. ``Ratings.df``); the
    interactions are the ratings >= ``base.ingest.min_rating``. The test split is
    :func:`~als_spark.analysis.evaluate.split_per_user_random` (``test_fraction``,
    ``seed``), the same as :func:`~als_spark.analysis.evaluate.run_evaluate` makes; only
    its train side reaches :func:`search`, which cuts the validation split from
    it with ``validation_fraction`` (default: ``test_fraction``) and
    ``validation_seed`` (default: ``seed + 1``; must differ from ``seed``).

    Writes ``output/leaderboard``, ``output/best.yaml`` and ``output/tune.png``
    as soon as the search ends; then, with ``evaluate_test``, runs
    :func:`~als_spark.analysis.evaluate.run_evaluate` on the test split for the best
    configuration (row ``tuned``, with ``baselines``) and each of ``compare``
    (name -> configuration; rows named by the key), and writes
    ``output/test_metrics``. ``output/tune.json`` records it all.
    """
    validation_fraction = test_fraction if validation_fraction is None else validation_fraction
    validation_seed = seed + 1 if validation_seed is None else validation_seed
    if validation_seed == seed:
        raise ConfigError(f"validation_seed must differ from the test split's seed ({seed})")
    check_k(k)
    check_fraction(test_fraction)
    require_columns(ratings, S.USER_ID, S.ITEM_ID, S.RATING, purpose="run_tune")
    compare = dict(compare or {})
    for name, cfg in compare.items():
        if cfg.ingest.min_rating != base.ingest.min_rating:
            raise ConfigError(
                f"compare '{name}': ingest.min_rating {cfg.ingest.min_rating:g} differs from the base "
                f"configuration's {base.ingest.min_rating:g}; the test splits would differ"
            )
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {', '.join(map(repr, unknown))}; known: {', '.join(BASELINES)}")
    if BEST_MODEL in compare or set(compare) & set(BASELINES):
        raise ConfigError(f"compare names must not be '{BEST_MODEL}' or a baseline ({', '.join(BASELINES)})")
    timer = timer or Timer()
    outputs: dict[str, str] = {}

    interactions = ratings.transform(feedback.filter_min_rating, base.ingest.min_rating).select(
        S.USER_ID, S.ITEM_ID, S.RATING
    )
    # Only the train side is handed to the search; the test side is not even computed here.
    train, _ = split_per_user_random(interactions, test_fraction=test_fraction, seed=seed)
    train = train.cache()
    try:
        with timer.stage("tune_search"):
            done = search(
                spark,
                train,
                base,
                spec,
                k=k,
                validation_fraction=validation_fraction,
                validation_seed=validation_seed,
            )
    finally:
        train.unpersist()
    best = best_trial(done)
    log.info(
        "tune: best trial %d: %s, validation %s@%d = %.4f",
        best.number,
        describe(best.params),
        spec.metric,
        k,
        best.objective,
    )

    with timer.stage("tune_write"):
        header = (
            f"Written by als-spark tune: trial {best.number} of {len(done)} ({spec.method} search),\n"
            f"validation {spec.metric}@{k} = {best.objective:.4f} "
            f"(validation split: fraction {validation_fraction:g}, seed {validation_seed}, of the train side of\n"
            f"the test split: fraction {test_fraction:g}, seed {seed}). Tuned: {', '.join(spec.space)}."
        )
        outputs.update(
            publish.publish_together(
                spark,
                output,
                tables={"leaderboard": leaderboard(spark, done, metric=spec.metric, k=k).coalesce(1)},
                files={
                    "best.yaml": config_yaml(best.config, header),
                    "tune.png": plot_png(done, varied(spec) or list(spec.space), metric=spec.metric, k=k),
                },
            )
        )

    test_rows: list[dict[str, Any]] = []
    if evaluate_test:
        runs = [(BEST_MODEL, best.config, tuple(baselines)), *[(name, cfg, ()) for name, cfg in compare.items()]]
        for name, cfg, run_baselines in runs:
            with timer.stage(f"tune_test_{name}"):
                _, rows = run_evaluate(
                    spark,
                    feedback.to_interactions(ratings, cfg.ingest),
                    cfg,
                    k=k,
                    test_fraction=test_fraction,
                    split="random",
                    seed=seed,
                    baselines=run_baselines,
                )
            for row in rows:
                test_rows.append({**row, "model": name if row["model"] == ALS_MODEL else row["model"]})
        # The tuned model, the comparisons, then the baselines.
        order = [BEST_MODEL, *compare, *baselines]
        test_rows.sort(key=lambda r: order.index(r["model"]))
        for row in test_rows:
            log.info("tune: test %s", ", ".join([row["model"]] + [f"{m}@{k}={row[m]:.4f}" for m in METRIC_NAMES]))
        # One file, so the rows read back in this order.
        table = spark.createDataFrame([tuple(r[f.name] for f in METRICS.fields) for r in test_rows], METRICS).coalesce(
            1
        )
        outputs.update(publish.publish_together(spark, output, tables={"test_metrics": table}))

    summary = {
        "spec": spec.to_dict(),
        "k": k,
        "test_split": {"method": "random", "test_fraction": test_fraction, "seed": seed},
        "validation_split": {"fraction_of_train": validation_fraction, "seed": validation_seed},
        "base_config": base.to_dict(),
        "trials": len(done),
        "stopped": sum(t.status == STATUS_STOPPED for t in done),
        "best": {
            "trial": best.number,
            "params": best.params,
            "objective": best.objective,
            "validation_metrics": best.metrics,
            "config": best.config.to_dict(),
        },
        "test_metrics": test_rows,
        "timings_seconds": dict(timer.seconds),
        "outputs": dict(outputs),
    }
    outputs.update(publish.publish_together(spark, output, files={"tune.json": publish.to_json(summary)}))
    return TuneResult(trials=done, best=best, test_metrics=test_rows, outputs=outputs, summary=summary)
