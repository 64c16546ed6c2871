"""MLflow tracking of ``run``, ``evaluate`` and ``tune`` (the optional extra ``mlflow``).

Tracking is on when ``--mlflow`` is given, when ``tracking.mlflow: true``, or when
``MLFLOW_TRACKING_URI`` is set (``databricks`` on Databricks, ``sqlite:///mlflow.db`` or an
MLflow server locally). Asked for explicitly without MLflow installed, it is a configuration
error (exit 2) before Spark starts; turned on only by the environment variable, it is skipped
with a warning, and the pipeline runs as it would without the extra.

One MLflow run per command, in the experiment ``tracking.experiment`` (default ``als-spark``),
logged once the command's tables are published (:func:`log_command`):

* params: every configuration key, named as in the YAML (``als.rank``, ``ingest.min_rating``);
  a mapping or list value is its JSON text;
* tags: the command, the als-spark run id, the output directory, and the input: its path, table or
  dataset, and its SHA-256 when it is a local file;
* metrics: the counts of ``run.json`` (``count_<name>``) and its stage timings (``seconds_<stage>``);
  ``evaluate`` adds one metric per model and measure, ``<model>_<measure>_at_<k>``
  (``als_ndcg_at_10``, ``popularity_ndcg_at_10`` ...); ``tune`` logs each trial as a nested run
  (its parameters, status and validation metrics) and the tuned model's test metrics on the parent;
* artifacts: ``run.json`` and the output's reports (``metrics.md``, ``tune.json``, ``best.yaml``,
  the PNG plots), and for ``run`` the fitted ALS model through :mod:`mlflow.spark` (loadable back
  with ``mlflow.spark.load_model``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from als_spark.config import Config
from als_spark.errors import ConfigError

log = logging.getLogger(__name__)

#: The commands that log a run.
COMMANDS = ("run", "evaluate", "tune")
#: Files of an output directory logged as artifacts (the plots are every ``*.png``).
REPORT_FILES = ("run.json", "metrics.md", "tune.json", "best.yaml")
#: The measures of a metrics row (:data:`als_spark.analysis.metrics.METRIC_NAMES`), logged per model.
MEASURES = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")


def installed() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def wanted(cfg: Config, flag: bool) -> bool:
    """Whether the command should log to MLflow; raises :class:`ConfigError` when asked for without MLflow."""
    asked = flag or cfg.tracking.mlflow
    if asked and not installed():
        raise ConfigError(
            "MLflow tracking was asked for (--mlflow or tracking.mlflow: true) but mlflow is not installed: "
            "install the extra with pip install 'als-spark[mlflow]', or leave tracking off."
        )
    if asked:
        return True
    if os.environ.get("MLFLOW_TRACKING_URI"):
        if installed():
            return True
        log.warning("MLFLOW_TRACKING_URI is set but mlflow is not installed: this run is not tracked")
    return False


def params(config: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Every configuration key as ``section.key``, values as MLflow stores them (text; JSON for containers)."""
    out: dict[str, str] = {}
    for section, entries in config.items():
        for key, value in entries.items():
            out[f"{section}.{key}"] = (
                json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
            )
    return out


def metric_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Metrics rows (model, k, the measures, users) as ``<model>_<measure>_at_<k>`` and ``<model>_users``."""
    out: dict[str, float] = {}
    for row in rows:
        model, k = row["model"], row["k"]
        for measure in MEASURES:
            if row.get(measure) is not None:
                out[f"{model}_{measure}_at_{k}"] = float(row[measure])
        out[f"{model}_users"] = float(row["users"])
    return out


def run_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """``run.json``'s counts and stage timings, the numeric ones."""
    out = {
        f"count_{name}": float(value)
        for name, value in result.get("counts", {}).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    out.update({f"seconds_{stage}": float(s) for stage, s in result.get("timings_seconds", {}).items()})
    return out


def tags(result: Mapping[str, Any]) -> dict[str, str]:
    source = result.get("input", {})
    where = source.get("path") or source.get("table") or source.get("dataset")
    out = {
        "als_spark.command": str(result.get("command")),
        "als_spark.run_id": str(result.get("run_id")),
        "als_spark.input": str(where),
    }
    if source.get("sha256"):
        out["als_spark.input_sha256"] = str(source["sha256"])
    return out


def log_command(result: Mapping[str, Any], output: str, *, experiment: str) -> str:
    """Log a finished command's result (``run.json`` plus what the command returned) as one MLflow run.

    Returns the MLflow run id.
    """
    import mlflow

    mlflow.set_experiment(experiment)
    command = result["command"]
    with mlflow.start_run(run_name=f"{command} {result['run_id'][:8]}") as active:
        mlflow.set_tags({**tags(result), "als_spark.output": output})
        mlflow.log_params(params(result["config"]))
        mlflow.log_metrics(run_metrics(result))
        if command == "evaluate":
            mlflow.log_metrics(metric_rows(result["metrics"]))
        if command == "tune":
            _log_trials(result)
            mlflow.log_metrics(metric_rows(result.get("test_metrics") or []))
        _log_reports(Path(output))
        if command == "run" and (Path(output) / "model").is_dir():
            _log_model(Path(output) / "model")
        run_id: str = active.info.run_id
    log.info("logged to MLflow: experiment %s, run %s (%s)", experiment, run_id, mlflow.get_tracking_uri())
    return run_id


def _log_trials(result: Mapping[str, Any]) -> None:
    import mlflow

    for trial in result.get("trials", []):
        with mlflow.start_run(run_name=f"trial {trial['number']}", nested=True):
            mlflow.set_tags({"als_spark.trial": str(trial["number"]), "als_spark.trial_status": trial["status"]})
            mlflow.log_params({name: str(value) for name, value in trial["params"].items()})
            numeric = {
                f"validation_{name}": float(value)
                for name, value in trial["metrics"].items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)
            }
            if trial["objective"] is not None:
                numeric["objective"] = float(trial["objective"])
            numeric["seconds"] = float(trial["seconds"])
            mlflow.log_metrics(numeric)
    best = result.get("best")
    if best:
        mlflow.set_tag("als_spark.best_trial", str(best["trial"]))


def _log_reports(output: Path) -> None:
    import mlflow

    for path in [*(output / name for name in REPORT_FILES), *sorted(output.glob("*.png"))]:
        if path.is_file():
            mlflow.log_artifact(str(path.resolve()))


def _log_model(path: Path) -> None:
    import inspect

    import mlflow.spark
    from pyspark.ml.recommendation import ALSModel

    model = ALSModel.load(str(path.resolve()))
    # MLflow 3 names a logged model with ``name``; MLflow 2 (older Databricks runtimes) with ``artifact_path``
    where = "name" if "name" in inspect.signature(mlflow.spark.log_model).parameters else "artifact_path"
    mlflow.spark.log_model(model, **{where: "model"}, pip_requirements=["pyspark"])
