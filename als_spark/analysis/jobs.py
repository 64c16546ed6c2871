"""The analysis commands as jobs: read the input, run the analysis, publish its tables and reports.

``als-spark evaluate``, ``tune``, ``compare`` and ``converge`` call these, the
same way the pipeline's commands call :mod:`als_spark.pipeline`: each runs
inside :func:`~als_spark.runlog.running`, so its tables, reports and
``run.json`` are published together or not at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from als_spark import caching, ids, publish
from als_spark import schema as S
from als_spark.analysis import compare, converge, evaluate, tune
from als_spark.analysis.focus import POSITION, Focus
from als_spark.analysis.metrics import metrics_markdown
from als_spark.analysis.tune_spec import TuneSpec
from als_spark.config import Config
from als_spark.ingest import Ratings
from als_spark.pipeline import Source, load_ratings
from als_spark.runlog import RunLog, running


@contextlib.contextmanager
def _analysis_run(
    spark: SparkSession, source: Source, cfg: Config, output: str, command: str
) -> Iterator[tuple[RunLog, Ratings]]:
    """A run of an analysis command: the validated ratings (timed as ``ingest``, counted), then the block.

    The analyses work on ALS indexes: integer ids within 32 bits are their own, other ids (strings,
    64-bit integers) are numbered from 0 in ascending order (:mod:`als_spark.ids`), and the
    analysis's tables and reports name users and items by those numbers.
    """
    with running(spark, output, command, cfg) as runlog:
        with runlog.timer.stage("ingest"):
            ratings, _ = load_ratings(spark, source, cfg, runlog, with_items=False)
            users, items = ids.build(ratings.df, S.USER_ID), ids.build(ratings.df, S.ITEM_ID)
            indexed = ids.to_indexes(ratings.df, users, items)
            valid = ratings.valid if ratings.valid is not None else ratings.df
            # each row's input position, taken before the ids are mapped (a join does not keep the order)
            valid = ids.to_indexes(valid.withColumn(POSITION, F.monotonically_increasing_id()), users, items)
            ratings = dataclasses.replace(ratings, df=caching.cache(indexed), valid=valid)
            runlog.input["ids_indexed"] = not (users.identity and items.identity)
        runlog.counts.update({"rows_read": ratings.rows_read, "rows_rejected": ratings.rows_rejected})
        yield runlog, ratings


def _stage_report(runlog: RunLog, stem: str, result: Any, tables: Mapping[str, DataFrame], fits: int) -> None:
    """Stage ``tables``, ``<stem>.md``, ``<stem>.json`` and ``<stem>.png``, and count what the analysis saw."""
    for name, df in tables.items():
        runlog.write_table(df, name)
    runlog.stage_file(f"{stem}.md", result.report)
    runlog.stage_file(f"{stem}.json", publish.to_json(result.summary))
    runlog.stage_file(f"{stem}.png", result.png)
    data = result.summary["data"]
    runlog.counts.update(
        {"interactions": data["interactions"], "users": data["users"], "items": data["items"], "fits": fits}
    )


def stage_evaluate(
    spark: SparkSession,
    source: Source,
    cfg: Config,
    output: str,
    *,
    k: int,
    test_fraction: float,
    split: str,
    seed: int,
    exclude: str = "train",
) -> dict[str, Any]:
    """Hold-out evaluation of ``cfg`` against the baselines; writes ``metrics`` and ``metrics.md``."""
    with _analysis_run(spark, source, cfg, output, "evaluate") as (runlog, ratings):
        interactions = evaluate.interactions_with_timestamp(ratings.df, cfg.ingest)
        metrics, rows = evaluate.run_evaluate(
            spark,
            interactions,
            cfg,
            k=k,
            test_fraction=test_fraction,
            split=split,
            seed=seed,
            exclude=exclude,
            rated=ratings.df,
            timer=runlog.timer,
        )
        runlog.write_table(metrics, "metrics")
        runlog.counts["evaluated_users"] = rows[0]["users"]
        runlog.input["evaluation"] = {
            "k": k,
            "test_fraction": test_fraction,
            "split": split,
            "seed": seed,
            "exclude": exclude,
        }
        runlog.stage_file("metrics.md", metrics_markdown(rows))
    return {**runlog.result, "metrics": rows}


def stage_tune(
    spark: SparkSession,
    source: Source,
    cfg: Config,
    output: str,
    *,
    spec: TuneSpec,
    k: int,
    test_fraction: float,
    seed: int,
    compare: dict[str, Config],
    evaluate_test: bool = True,
) -> dict[str, Any]:
    """Hyper-parameter search (:func:`als_spark.analysis.tune.run_tune`) with ``cfg`` as the base; adds ``run.json``."""
    with _analysis_run(spark, source, cfg, output, "tune") as (runlog, ratings):
        result = tune.run_tune(
            spark,
            ratings.df,
            cfg,
            output,
            spec=spec,
            k=k,
            test_fraction=test_fraction,
            seed=seed,
            compare=compare,
            evaluate_test=evaluate_test,
            timer=runlog.timer,
        )
        runlog.outputs.update(result.outputs)
        runlog.counts.update({"trials": len(result.trials), "trials_stopped": result.summary["stopped"]})
        runlog.input["tune"] = {
            "spec": spec.to_dict(),
            "k": k,
            "test_fraction": test_fraction,
            "seed": seed,
            "compare": sorted(compare),
        }
    trials = [
        {
            "number": t.number,
            "params": t.params,
            "status": t.status,
            "objective": t.objective,
            "metrics": t.metrics,
            "seconds": t.seconds,
        }
        for t in result.trials
    ]
    return {
        **runlog.result,
        "metric": spec.metric,
        "best": result.summary["best"],
        "test_metrics": result.test_metrics,
        "trials": trials,
    }


def stage_compare(
    spark: SparkSession,
    source: Source,
    cfg_a: Config,
    cfg_b: Config,
    output: str,
    *,
    names: tuple[str, str] = ("A", "B"),
    seeds: int = 3,
    k: int = 5,
    top_n: int = 10,
    focus: Sequence[Focus] = (),
    holdout: bool = True,
    test_fraction: float = 0.25,
    split_seed: int = 42,
    alpha: float = 0.05,
    progress_interval: float = 30.0,
) -> dict[str, Any]:
    """A against B beyond seed noise (:func:`als_spark.analysis.compare.run_compare`).

    Publishes ``agreement`` (per table and user / item), ``agreement_pairs``,
    ``compare.md``, ``compare.json`` and ``compare.png`` together, then
    ``run.json`` (its ``config`` is A's; ``input.compare`` holds both).
    """
    with _analysis_run(spark, source, cfg_a, output, "compare") as (runlog, ratings):
        result = compare.run_compare(
            spark,
            ratings.df,
            cfg_a,
            cfg_b,
            input_rows=ratings.valid,
            seeds=seeds,
            k=k,
            top_n=top_n,
            focus=focus,
            holdout=holdout,
            test_fraction=test_fraction,
            split_seed=split_seed,
            alpha=alpha,
            names=names,
            progress_interval=progress_interval,
            timer=runlog.timer,
        )
        tables = {"agreement": result.agreement, "agreement_pairs": result.pairs}
        _stage_report(runlog, "compare", result, tables, fits=len(result.summary["runs"]))
        runlog.input["compare"] = {
            "names": list(names),
            "config_a": cfg_a.to_dict(),
            "config_b": cfg_b.to_dict(),
            "seeds": result.summary["seeds"],
            "k": k,
            "top_n": top_n,
            "alpha": alpha,
            "holdout": holdout,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
            "focus": _focus(result.summary),
            "verdicts": result.verdicts,
        }
    return {**runlog.result, "report": result.report, "verdicts": result.verdicts}


def stage_converge(
    spark: SparkSession,
    source: Source,
    cfg: Config,
    output: str,
    *,
    iterations: Sequence[int],
    k: int = 5,
    top_n: int = 10,
    focus: Sequence[Focus] = (),
    holdout: bool = True,
    test_fraction: float = 0.25,
    split_seed: int = 42,
    seed_reference: bool = True,
    progress_interval: float = 30.0,
    fit_cache: str | None = None,
) -> dict[str, Any]:
    """``cfg`` at several iteration counts (:func:`als_spark.analysis.converge.run_converge`).

    Publishes ``converge_steps``, ``converge_fits``, ``converge.md``,
    ``converge.json`` and ``converge.png`` together, then ``run.json``.
    """
    with _analysis_run(spark, source, cfg, output, "converge") as (runlog, ratings):
        result = converge.run_converge(
            spark,
            ratings.df,
            cfg,
            input_rows=ratings.valid,
            iterations=iterations,
            k=k,
            top_n=top_n,
            holdout=holdout,
            test_fraction=test_fraction,
            split_seed=split_seed,
            seed_reference=seed_reference,
            focus=focus,
            progress_interval=progress_interval,
            timer=runlog.timer,
            fit_cache=fit_cache,
        )
        tables = {"converge_steps": result.steps, "converge_fits": result.fits}
        _stage_report(runlog, "converge", result, tables, fits=len(result.summary["fits"]))
        runlog.input["converge"] = {
            "iterations": list(iterations),
            "k": k,
            "top_n": top_n,
            "holdout": holdout,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
            "seed_reference": seed_reference,
            "fit_cache": fit_cache,
            "focus": _focus(result.summary),
        }
    return {**runlog.result, "report": result.report}


def _focus(summary: dict[str, Any]) -> list[str]:
    """Each focus as given and the id it is: ``user index 10 (input order) = user id 38``."""
    named = ((row["focus"], f"{row['kind']} id {row['id']}") for row in summary["focus"])
    return list(dict.fromkeys(given if given == found else f"{given} = {found}" for given, found in named))
