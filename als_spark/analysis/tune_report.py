"""What ``als-spark tune`` writes: the leaderboard, ``best.yaml`` and the plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from als_spark.analysis.metrics import METRIC_NAMES
from als_spark.analysis.reports import figure, png_bytes
from als_spark.analysis.trials import STATUS_OK, STATUS_STOPPED, Trial, best_trial, comparable
from als_spark.analysis.tune_spec import TUNABLE, Range, TuneSpec, param_value
from als_spark.config import Config

#: Leaderboard column of each tunable key.
PARAM_COLUMNS = {key: key.replace(".", "_") for key in TUNABLE}


#: The leaderboard: one row per trial, best objective first (stopped trials last).
#: Every metric is measured on the *validation* split.
LEADERBOARD = StructType(
    [
        StructField("position", IntegerType(), False),
        StructField("trial", IntegerType(), False),
        StructField("als_rank", IntegerType(), False),
        StructField("als_max_iter", IntegerType(), False),
        StructField("als_reg_param", DoubleType(), False),
        StructField("als_alpha", DoubleType(), False),
        StructField("ingest_confidence", StringType(), False),
        StructField("recommend_popularity_weight", DoubleType(), False),
        StructField("status", StringType(), False),
        StructField("metric", StringType(), False),
        StructField("k", IntegerType(), False),
        StructField("objective", DoubleType(), True),
        StructField("objective_std", DoubleType(), True),
        StructField("probe_objective", DoubleType(), True),
        *[StructField(name, DoubleType(), True) for name in METRIC_NAMES],
        StructField("users", LongType(), True),
        StructField("iterations", IntegerType(), False),
        StructField("seconds", DoubleType(), False),
    ]
)


def leaderboard(spark: SparkSession, done: Sequence[Trial], *, metric: str, k: int) -> DataFrame:
    """The trials as a :data:`LEADERBOARD` table: best objective first, stopped trials last, ties by trial."""
    order = sorted(done, key=lambda t: (t.status != STATUS_OK, -comparable(t.objective), t.number))
    rows = []
    for position, t in enumerate(order, start=1):
        params = [param_value(t.config, key) for key in TUNABLE]
        rows.append(
            (
                position,
                t.number,
                *params,
                t.status,
                metric,
                k,
                t.objective,
                t.metrics.get("objective_std") if t.status == STATUS_OK else None,
                t.probe_objective,
                *[None if t.status != STATUS_OK else t.metrics.get(name) for name in METRIC_NAMES],
                t.metrics.get("users") if t.status == STATUS_OK else None,
                t.iterations,
                round(t.seconds, 3),
            )
        )
    return spark.createDataFrame(rows, LEADERBOARD)


def config_yaml(cfg: Config, header: str = "") -> str:
    """``cfg`` as a complete YAML configuration file (every key), loadable with ``load_config``."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)


def plot_png(done: Sequence[Trial], keys: Sequence[str], *, metric: str, k: int) -> bytes | None:
    """A PNG of the objective against each of ``keys`` (one panel each); ``None`` without matplotlib.

    Completed trials are dots, the best per value is joined by a line, the best
    trial is red, and stopped trials are grey crosses at their probe objective.
    Numeric keys spanning 8x or more are on a log axis.
    """
    fig = figure("tune.png", figsize=(4.0 * len(keys), 3.6))
    if fig is None:
        return None
    best = best_trial(done)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        values = sorted({param_value(t.config, key) for t in done}, key=lambda v: (isinstance(v, str), v))
        categorical = any(isinstance(v, str) for v in values)
        position = {v: i for i, v in enumerate(values)} if categorical else {v: v for v in values}
        ok = [t for t in done if t.status == STATUS_OK]
        stopped = [t for t in done if t.status == STATUS_STOPPED]
        ax.scatter(
            [position[param_value(t.config, key)] for t in ok],
            [t.objective for t in ok],
            s=18,
            color="tab:blue",
            alpha=0.7,
            label="trial",
        )
        if stopped:
            ax.scatter(
                [position[param_value(t.config, key)] for t in stopped],
                [t.probe_objective for t in stopped],
                s=18,
                marker="x",
                color="0.6",
                label="stopped (probe)",
            )
        per_value: dict[Any, float] = {}
        for t in ok:
            v = param_value(t.config, key)
            per_value[v] = max(per_value.get(v, -math.inf), comparable(t.objective))
        xs = [v for v in values if v in per_value]
        ax.plot([position[v] for v in xs], [per_value[v] for v in xs], color="tab:blue", linewidth=1)
        ax.scatter(
            [position[param_value(best.config, key)]],
            [best.objective],
            s=40,
            color="tab:red",
            zorder=3,
            label=f"best (trial {best.number})",
        )
        if categorical:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        elif len(values) > 1 and min(values) > 0 and max(values) / min(values) >= 8:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(f"validation {metric}@{k}")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    return png_bytes(fig, dpi=100)


def varied(spec: TuneSpec) -> list[str]:
    """The keys the search varies (a range or more than one value): the plot's panels."""
    return [key for key, values in spec.space.items() if isinstance(values, Range) or len(values) > 1]
