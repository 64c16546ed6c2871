"""One configuration fitted with several seeds: the fits whose lists ``compare`` sets side by side.

Matrix-factorisation lists move with the random seed alone, so a configuration
is fitted once per seed (:func:`seed_lists`), and each fit keeps only its lists
(:func:`~als_spark.analysis.lists.lists_of`), cached, so memory holds lists,
never more than one model. Each configuration is also timed per iteration
(:mod:`als_spark.analysis.progress`) and, optionally, scored on a holdout.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from als_spark import feedback, model
from als_spark.analysis import evaluate, progress
from als_spark.analysis.lists import ListSpec, fit_lists, shape
from als_spark.config import Config
from als_spark.errors import ConfigError
from als_spark.recommend import popularity_prior
from als_spark.runinfo import Timer

log = logging.getLogger(__name__)


def seed_lists(
    cfg_a: Config, cfg_b: Config, seeds: int, seeds_a: Sequence[int] | None = None, seeds_b: Sequence[int] | None = None
) -> tuple[list[int], list[int]]:
    """The seeds of A and B: ``als.seed, als.seed + 1, ...`` of each configuration, ``seeds`` each.

    When B's would repeat one of A's (e.g. both configurations have seed 42),
    B's continue after A's largest. Disjoint seeds keep every fit independent:
    with equal seeds, equal ranks start from identical factors. Explicit lists
    must be disjoint and have at least 2 distinct seeds each.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 2:
        raise ConfigError(
            f"--seeds must be an integer >= 2 (within-configuration agreement needs two fits), got {seeds!r}"
        )
    sa = list(seeds_a) if seeds_a else [cfg_a.als.seed + i for i in range(seeds)]
    sb = list(seeds_b) if seeds_b else [cfg_b.als.seed + i for i in range(seeds)]
    if not seeds_b and set(sa) & set(sb):
        sb = [max(sa) + 1 + i for i in range(len(sb))]
    for name, values in (("A", sa), ("B", sb)):
        if len(set(values)) != len(values) or len(values) < 2:
            raise ConfigError(f"the seeds of {name} must be at least 2 distinct integers, got {values}")
    if set(sa) & set(sb):
        raise ConfigError(f"the seeds of A {sa} and B {sb} overlap: every fit must be independent")
    return sa, sb


def config_differences(cfg_a: Config, cfg_b: Config) -> list[tuple[str, Any, Any]]:
    """``(section.key, value in A, value in B)`` for every key that differs (seed and checkpoint dir left out)."""
    da, db = cfg_a.to_dict(), cfg_b.to_dict()
    out = []
    for section, values in da.items():
        for key, value in values.items():
            if (section, key) in (("als", "seed"), ("als", "checkpoint_dir")):
                continue
            if db[section][key] != value:
                out.append((f"{section}.{key}", value, db[section][key]))
    return out


def check_comparable(cfg_a: Config, cfg_b: Config) -> None:
    """Raise :class:`ConfigError` unless A and B read the same ratings and keep the same users and items.

    The input is read once (with A's ``ingest`` settings), and the lists of A
    and B can only be compared entity by entity when both keep the same
    ratings as interactions.
    """
    for key in ("format", "rating_min", "rating_max", "min_rating"):
        va, vb = getattr(cfg_a.ingest, key), getattr(cfg_b.ingest, key)
        if va != vb:
            raise ConfigError(
                f"ingest.{key} differs ({va} in A, {vb} in B): compare reads the input once and needs both "
                "configurations to have the same users and items"
            )


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class FittedRuns:
    """The lists of one configuration fitted with several seeds (:func:`fit_runs`).

    ``run_lists`` holds one cached DataFrame per seed (``table, run, id, items,
    scores``, ``run`` = position in ``seeds``). Call :meth:`release` when done.
    """

    name: str
    config: Config
    seeds: list[int]
    run_lists: list[DataFrame]
    k: int
    top_n: int
    interactions: int
    users: int
    items: int
    blocks: int
    fit_seconds: list[float]
    calibration: list[progress.FitRecord]
    seconds_per_iteration: float | None
    measured_as: str
    holdout: dict[str, Any] | None = None

    @property
    def lists(self) -> DataFrame:
        """The union of the per-seed lists (reads their caches; deliberately not cached itself:
        unpersisting a cache makes Spark drop or rebuild the caches built on it)."""
        return functools.reduce(DataFrame.unionByName, self.run_lists)

    def release(self) -> None:
        for df in self.run_lists:
            df.unpersist()

    def cost(self) -> dict[str, Any]:
        return {
            "config": self.name,
            "iterations": self.config.als.max_iter,
            "rank": self.config.als.rank,
            "blocks": self.blocks,
            "seconds_per_iteration": self.seconds_per_iteration,
            "measured_as": self.measured_as,
            "fit_seconds": self.fit_seconds,
            "calibration": [r.to_dict() for r in self.calibration],
        }


def fit_runs(
    spark: SparkSession,
    ratings: DataFrame,
    cfg: Config,
    seeds: Sequence[int],
    *,
    name: str = "A",
    k: int = 5,
    top_n: int = 10,
    calibration: Sequence[int] = (1, 3),
    warm_up: bool = True,
    holdout: bool = False,
    holdout_k: int = 10,
    test_fraction: float = 0.25,
    split_seed: int = 42,
    progress_interval: float = 30.0,
    timer: Timer | None = None,
) -> FittedRuns:
    """Fit ``cfg`` once per seed and keep each fit's lists; optionally time and score the configuration.

    ``ratings`` has ``user_id, item_id, rating``; the fits train on
    :func:`~als_spark.feedback.to_interactions` with ``cfg.ingest`` and the
    recommendations exclude what ``cfg.recommend.exclude`` says and add the
    ``cfg.recommend.popularity_weight`` prior. Each fit's
    lists (:func:`lists_of`) are cached (one Spark job per fit) and the model
    is dropped, so memory holds lists, never more than one model. With
    ``calibration`` (two or more short lengths) the configuration is first
    timed at those lengths (after an untimed warm-up fit with ``warm_up``),
    for the remaining-time estimates and the reported time per iteration. With ``holdout`` it is also scored once by
    :func:`~als_spark.analysis.evaluate.run_evaluate` (``@holdout_k``, its own
    ``als.seed``). Fits run inside :func:`~als_spark.model.checkpoint_dir`.
    """
    check_positive(k=k, top_n=top_n, holdout_k=holdout_k)
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"the seeds of {name} must be distinct, got {seeds}")
    timer = timer or Timer()
    par = model.parallelism(spark)
    blocks = cfg.als.num_blocks or par
    interactions = feedback.to_interactions(ratings, cfg.ingest).cache()
    exclude = feedback.exclusions(ratings, interactions, cfg.recommend.exclude)
    exclude = exclude.cache() if exclude is not None else None
    prior = popularity_prior(interactions, cfg.recommend.popularity_weight)
    lists: list[DataFrame] = []
    try:
        n_rows, n_users, n_items = shape(interactions)
        with model.checkpoint_dir(spark, cfg.als.checkpoint_dir), timer.stage(f"compare_fit_{name}"):
            cost, cal_records = progress.calibrate(
                interactions, cfg.als, num_blocks=blocks, label=name, iterations=calibration, warm_up=warm_up
            )
            if cost is not None:
                log.info(
                    "compare: %s: %d fits of %d iterations, estimated %s",
                    name,
                    len(seeds),
                    cfg.als.max_iter,
                    progress.format_seconds(len(seeds) * cost.seconds(cfg.als.max_iter)),
                )
            records = []
            spec = ListSpec(k, top_n, exclude, prior, n_users, n_items, par)
            for run, seed in enumerate(seeds):
                run_lists, record = fit_lists(
                    interactions,
                    dataclasses.replace(cfg.als, seed=seed),
                    run,
                    spec,
                    blocks=blocks,
                    label=f"{name} seed {seed} (fit {run + 1} of {len(seeds)})",
                    cost=cost,
                    interval=progress_interval,
                )
                lists.append(run_lists)
                records.append(record)
        spi, how = progress.seconds_per_iteration(cal_records, records)
        holdout_row = None
        if holdout:
            with timer.stage(f"compare_holdout_{name}"):
                estimate = progress.FitCost(seconds_per_iteration=spi, overhead_seconds=0.0) if spi else None
                with progress.FitMonitor(
                    spark,
                    f"{name} holdout fit and scoring",
                    iterations=cfg.als.max_iter,
                    cost=estimate,
                    interval=progress_interval,
                    count_jobs=False,
                ):
                    _, rows = evaluate.run_evaluate(
                        spark,
                        interactions,
                        cfg,
                        k=holdout_k,
                        test_fraction=test_fraction,
                        split="random",
                        seed=split_seed,
                        baselines=(),
                    )
            holdout_row = {**rows[0], "split_seed": split_seed, "seed": cfg.als.seed}
    except BaseException:
        for df in lists:
            df.unpersist()
        raise
    finally:
        interactions.unpersist()
        if exclude is not None:
            exclude.unpersist()
    return FittedRuns(
        name=name,
        config=cfg,
        seeds=seeds,
        run_lists=lists,
        k=k,
        top_n=top_n,
        interactions=n_rows,
        users=n_users,
        items=n_items,
        blocks=blocks,
        fit_seconds=[r.seconds for r in records],
        calibration=cal_records,
        seconds_per_iteration=spi,
        measured_as=how,
        holdout=holdout_row,
    )
