"""When do more ALS iterations stop mattering? One configuration fitted at increasing iteration counts.

Spark ALS is deterministic for a given seed, input and block count: the
initial factors come from the seed, and every iteration is a fixed function of
the previous factors. Fits with ``max_iter = n1 < n2 < ...`` therefore trace
one trajectory: the ``n1`` fit is the ``n2`` fit stopped early. Spark cannot
resume a fit (no warm start), so every count is a fresh fit and the total cost
is the sum of the counts.

:func:`run_converge` fits ``cfg`` at each count (same seed, same blocks),
computes the same lists as :mod:`als_spark.analysis.compare` (:mod:`als_spark.analysis.lists`) (``k`` similar users,
``k`` similar items, ``top_n`` recommendations) and compares them

* from one count to the next (``step``): how much the lists still move;
* with the largest count (``to_last``): how far each count is from the answer
  at the end;
* with a second seed at the largest count (``seed``): how much the seed alone
  moves the lists. Once consecutive counts agree more than two seeds do, more
  iterations change less than re-running with another seed would.

With ``holdout`` (default) every fit is on the train side of a per-user random
split (:func:`~als_spark.analysis.splits.split_per_user_random`) and scored on the
held-out side with :func:`~als_spark.analysis.metrics.ranking_metrics` (``@top_n``,
train items excluded from the recommendations), so one fit per count gives
both the lists and the metric; the lists are then those of a model trained on
the train side. Without ``holdout`` the fits use all interactions and the
recommendations exclude what ``recommend.exclude`` says. Either way their
scores add the ``recommend.popularity_weight`` prior of the fitted interactions.

The time per iteration is the least-squares slope of fit time against count
over the calibration fits (1 and 3 iterations, after a warm-up) and the fits
with the main seed (the fixed cost of a fit is the intercept), and each fit
logs its progress and remaining time (:mod:`als_spark.analysis.progress`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from als_spark import caching, feedback, model
from als_spark import schema as S
from als_spark.analysis import agreement as A
from als_spark.analysis import progress
from als_spark.analysis.converge_report import SEED, STEP, TO_LAST, converge_markdown, plot_png
from als_spark.analysis.fit_cache import FitCache, plan_keys
from als_spark.analysis.fits import check_positive
from als_spark.analysis.focus import Focus, focus_lists, resolve_focus
from als_spark.analysis.lists import (
    TABLE,
    TABLES,
    ListSpec,
    fit_lists,
    pair_agreement,
    pair_means,
    recommendations_of,
    shape,
)
from als_spark.analysis.metrics import ranking_metrics
from als_spark.analysis.splits import labelled_split, train_test
from als_spark.config import Config
from als_spark.errors import ConfigError
from als_spark.recommend import popularity_prior
from als_spark.runinfo import Timer, blas_implementation

log = logging.getLogger(__name__)


#: Agreement between the lists of two fits, per table (one row per table and compared pair of fits).
CONVERGE_STEPS = StructType(
    [
        StructField("kind", StringType(), False),
        StructField(TABLE, StringType(), False),
        StructField("from_iter", IntegerType(), False),
        StructField("to_iter", IntegerType(), False),
        StructField("to_seed", IntegerType(), False),
        StructField("entities", LongType(), False),
        StructField("jaccard", DoubleType(), True),
        StructField("rbo", DoubleType(), True),
        StructField("identical", DoubleType(), True),
    ]
)
#: One row per fit: its time and, with a holdout, its ranking metrics.
CONVERGE_FITS = StructType(
    [
        StructField("iterations", IntegerType(), False),
        StructField("seed", IntegerType(), False),
        StructField("seconds", DoubleType(), False),
        StructField("ndcg", DoubleType(), True),
        StructField("precision", DoubleType(), True),
        StructField("recall", DoubleType(), True),
        StructField("map", DoubleType(), True),
        StructField("hit_rate", DoubleType(), True),
    ]
)
_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate")


@dataclass
class ConvergeResult:
    """What :func:`run_converge` produced; nothing is written."""

    steps: DataFrame  #: :data:`CONVERGE_STEPS`
    fits: DataFrame  #: :data:`CONVERGE_FITS`
    report: str  #: Markdown
    png: bytes | None
    summary: dict[str, Any] = field(default_factory=dict)


def _check_iterations(iterations: Sequence[int]) -> list[int]:
    counts = sorted(set(iterations))
    if len(counts) < 2 or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in counts):
        raise ConfigError(f"--iterations needs at least two distinct positive integers, got {list(iterations)!r}")
    return counts


def settled_at(steps: pd.DataFrame, seed_rows: pd.DataFrame, measure: str = "jaccard") -> dict[str, int | None]:
    """Per table, the first count from which every later step agrees at least as much as two seeds do.

    ``steps``: the ``step`` rows (``table, from_iter, to_iter, <measure>``);
    ``seed_rows``: the ``seed`` rows. ``None`` where the last step still moves
    the lists more than a new seed would, or without a seed reference.
    """
    out: dict[str, int | None] = {}
    for table in TABLES:
        reference = seed_rows.loc[seed_rows[TABLE] == table, measure]
        rows = steps[steps[TABLE] == table].sort_values("from_iter")
        if reference.empty or rows.empty:
            out[table] = None
            continue
        ok = (rows[measure] >= float(reference.iloc[0]) - 1e-12).to_list()
        first = None
        for i in range(len(ok) - 1, -1, -1):
            if not ok[i]:
                break
            first = int(rows["from_iter"].iloc[i])
        out[table] = first
    return out


def run_converge(
    spark: SparkSession,
    ratings: DataFrame,
    cfg: Config,
    *,
    iterations: Sequence[int] = (5, 10, 15, 25, 50, 100),
    k: int = 5,
    top_n: int = 10,
    holdout: bool = True,
    test_fraction: float = 0.25,
    split_seed: int = 42,
    seed_reference: bool = True,
    rbo_p: float = A.DEFAULT_RBO_P,
    focus: Sequence[Focus] = (),
    input_rows: DataFrame | None = None,
    calibration: Sequence[int] = (1, 3),
    progress_interval: float = 30.0,
    timer: Timer | None = None,
    fit_cache: str | None = None,
) -> ConvergeResult:
    """Fit ``cfg`` at each of ``iterations`` and report how the lists and the holdout metric change.

    ``ratings`` has ``user_id, item_id, rating`` (the validated input). See the
    module docstring. ``calibration``: short fits timed first
    (:func:`~als_spark.analysis.progress.calibrate`), so that even the first long fit
    logs its remaining time. ``input_rows``: the input's rows in input order, for a
    focus index in input order (default ``ratings`` in its own order). ``fit_cache``: a
    folder where each finished fit is kept and found again by a rerun
    (:mod:`~als_spark.analysis.fit_cache`). Returns a :class:`ConvergeResult`; nothing else is written.
    """
    counts = _check_iterations(iterations)
    check_positive(k=k, top_n=top_n)
    timer = timer or Timer()
    seed = cfg.als.seed
    # Everything cached here is released when the block ends, whatever happens.
    with caching.scope():
        with timer.stage("converge_prepare"):
            interactions = caching.cache(feedback.to_interactions(ratings, cfg.ingest))
            in_order = ratings if input_rows is None else input_rows
            focus_ids = [(f, resolve_focus(interactions, f, rows=in_order, ingest=cfg.ingest)) for f in focus]
            test = None
            exclude: DataFrame | None
            if holdout:
                # split_per_user_random's split, labelled once (one window computation); both sides filter it
                labelled = caching.cache(
                    labelled_split(interactions, split="random", test_fraction=test_fraction, seed=split_seed)
                )
                train, test_rows = train_test(labelled)
                data = train.select(S.USER_ID, S.ITEM_ID, S.CONFIDENCE)
                test = test_rows.select(S.USER_ID, S.ITEM_ID)
                exclude = caching.cache(feedback.items_per_user(data))
            else:
                data = interactions
                ex = feedback.exclusions(ratings, interactions, cfg.recommend.exclude)
                exclude = caching.cache(ex) if ex is not None else None
            prior = popularity_prior(data, cfg.recommend.popularity_weight)
            prior = caching.cache(prior) if prior is not None else None
            n_rows, n_users, n_items = shape(data)
        par = model.parallelism(spark)
        blocks = cfg.als.num_blocks or par
        spec = ListSpec(k, top_n, exclude, prior, n_users, n_items, par)
        plan = [(n, seed) for n in counts] + ([(counts[-1], seed + 1)] if seed_reference else [])
        runs: list[dict[str, Any]] = []
        lists: list[DataFrame] = []
        records: list[progress.FitRecord] = []
        cache = FitCache(spark, fit_cache)  # without a folder it finds nothing and keeps nothing
        keys = plan_keys(cfg, plan, blocks, data, ratings, holdout, k, top_n, test_fraction, split_seed, fit_cache)
        found = [cache.get(key, run) for run, key in enumerate(keys)]
        with model.checkpoint_dir(spark, cfg.als.checkpoint_dir) as ckpt:
            cal_records: list[progress.FitRecord] = []
            if not all(found):  # calibrate only for fits still to run
                with timer.stage("converge_calibrate"):
                    _, cal_records = progress.calibrate(
                        data, cfg.als, num_blocks=blocks, label="converge", iterations=calibration
                    )
            for run, (n, fit_seed) in enumerate(plan):
                hit = found[run]
                if hit is not None:
                    run_lists, record, scores = hit.lists, hit.record, hit.metrics
                else:
                    cost = progress.cost_from(cal_records + records)
                    todo = [m for r, (m, _) in enumerate(plan) if r >= run and found[r] is None]
                    if cost is not None:
                        log.info(
                            "converge: %d fits left (%s iterations), estimated %s at %.2f s/iteration",
                            len(todo),
                            "+".join(str(m) for m in todo),
                            progress.format_seconds(sum(cost.seconds(m) for m in todo)),
                            cost.seconds_per_iteration,
                        )
                    with timer.stage(f"converge_fit_{n}" + ("" if fit_seed == seed else f"_seed_{fit_seed}")):
                        run_lists, record = fit_lists(
                            data,
                            dataclasses.replace(cfg.als, max_iter=n, seed=fit_seed),
                            run,
                            spec,
                            blocks=blocks,
                            label=f"{n} iterations, seed {fit_seed} (fit {run + 1} of {len(plan)})",
                            cost=cost,
                            interval=progress_interval,
                        )
                    metrics: dict[str, Any] = {}
                    if test is not None:
                        with timer.stage(f"converge_score_{n}" + ("" if fit_seed == seed else f"_seed_{fit_seed}")):
                            metrics = ranking_metrics(
                                recommendations_of(run_lists), test, k=top_n, catalog_size=n_items
                            )
                        log.info(
                            "converge: %d iterations, seed %d: NDCG@%d = %.4f", n, fit_seed, top_n, metrics["ndcg"]
                        )
                    scores = {m: metrics.get(m) for m in _METRICS}
                    cache.put(keys[run], run_lists, record, scores)
                if fit_seed == seed:
                    records.append(record)
                lists.append(run_lists)
                runs.append(
                    {
                        "run": run,
                        "iterations": n,
                        "seed": fit_seed,
                        "seconds": record.seconds,
                        "reused": hit is not None,
                        **scores,
                    }
                )

        with timer.stage("converge_agreement"):
            main = [r for r in runs if r["seed"] == seed]
            pairs = {(a["run"], b["run"]): STEP for a, b in zip(main, main[1:])}
            for r in main[:-1]:
                pairs.setdefault((r["run"], main[-1]["run"]), TO_LAST)
            if seed_reference:
                pairs[(main[-1]["run"], runs[-1]["run"])] = SEED
            all_lists = functools.reduce(DataFrame.unionByName, lists)
            pairwise = pair_agreement(all_lists, list(pairs), rbo_p=rbo_p)
            means: pd.DataFrame = pair_means(pairwise, "jaccard", "rbo", "identical").toPandas()
            focus_rows = focus_lists(all_lists, focus_ids)

    by_run = {r["run"]: r for r in runs}
    # A step pair that is also the pair with the last count is recorded under both kinds.
    rows = []
    for (x, y), kind in pairs.items():
        kinds = [kind] + ([TO_LAST] if kind == STEP and y == main[-1]["run"] else [])
        for table in TABLES:
            hit = means[(means[TABLE] == table) & (means["run_x"] == x) & (means["run_y"] == y)]
            if hit.empty:
                continue
            for kd in kinds:
                rows.append(
                    {
                        "kind": kd,
                        TABLE: table,
                        "from_iter": by_run[x]["iterations"],
                        "to_iter": by_run[y]["iterations"],
                        "to_seed": by_run[y]["seed"],
                        "entities": int(hit["entities"].iloc[0]),
                        "jaccard": float(hit["jaccard"].iloc[0]),
                        "rbo": float(hit["rbo"].iloc[0]),
                        "identical": float(hit["identical"].iloc[0]),
                    }
                )
    steps = pd.DataFrame(rows, columns=[f.name for f in CONVERGE_STEPS.fields])
    order = {STEP: 0, TO_LAST: 1, SEED: 2}
    steps = steps.sort_values(["kind", TABLE, "from_iter"], key=lambda c: c.map(order) if c.name == "kind" else c)
    steps = steps.reset_index(drop=True)
    cost = progress.cost_from(cal_records + records)
    settled = settled_at(steps[steps["kind"] == STEP], steps[steps["kind"] == SEED])
    summary = {
        "config": cfg.to_dict(),
        "iterations": counts,
        "seed": seed,
        "seed_reference": seed + 1 if seed_reference else None,
        "parameters": {
            "k": k,
            "top_n": top_n,
            "rbo_p": rbo_p,
            "holdout": holdout,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
        },
        "data": {"interactions": n_rows, "users": n_users, "items": n_items},
        "spark": {"parallelism": par, "blocks": blocks, "checkpoint_dir": ckpt, "blas": blas_implementation(spark)},
        "seconds_per_iteration": cost.seconds_per_iteration if cost else None,
        "overhead_seconds": cost.overhead_seconds if cost else None,
        "fits": runs,
        "steps": steps.to_dict(orient="records"),
        "settled_at": settled,
        "focus": focus_rows,
        "timings_seconds": dict(timer.seconds),
    }
    report = converge_markdown(summary)
    png = plot_png(summary)
    fits = pd.DataFrame(
        [
            {
                "iterations": r["iterations"],
                "seed": r["seed"],
                "seconds": float(r["seconds"]),
                **{m: (float(r[m]) if r[m] is not None else None) for m in _METRICS},
            }
            for r in runs
        ],
        columns=[f.name for f in CONVERGE_FITS.fields],
    )
    return ConvergeResult(
        steps=spark.createDataFrame(steps, CONVERGE_STEPS),
        fits=spark.createDataFrame(fits.astype(object).where(fits.notna(), None), CONVERGE_FITS),
        report=report,
        png=png,
        summary=summary,
    )
