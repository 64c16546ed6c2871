"""MLflow tracking: what `run`, `evaluate` and `tune` log, read back from a real local store with MlflowClient."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from test_cli import SMALL, U_DATA, U_ITEM

from als_spark import tracking
from als_spark.cli import main
from als_spark.config import Config, build_config
from als_spark.errors import ConfigError

try:
    import mlflow
except ImportError:  # the extra: `.[dev]` has it, the pyspark 3.5 CI step does not
    mlflow = None

# Collected everywhere (tests/test_tiers.py checks that every file is), skipped where mlflow is missing.
pytestmark = pytest.mark.skipif(mlflow is None, reason="mlflow (the extra `mlflow`) is not installed")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A local SQLite tracking store, as MLFLOW_TRACKING_URI names it; the client that reads it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.chdir(tmp_path)  # where a SQLite store puts its default artifact root (./mlruns)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


@pytest.fixture
def data(tmp_path):
    (tmp_path / "u.data").write_text(U_DATA)
    (tmp_path / "u.item").write_text(U_ITEM, encoding="latin-1")
    return tmp_path / "u.data"


def _only_run(client, experiment="als-spark", parent_only=True):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    if parent_only:
        runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0], exp


@pytest.mark.unit
def test_params_are_the_configuration_keys_named_as_in_the_yaml():
    cfg = build_config({"als": {"rank": 7}, "ingest": {"event_weights": {"view": 1, "buy": 5}}})
    got = tracking.params(cfg.to_dict())
    assert got["als.rank"] == "7"
    assert got["ingest.min_rating"] == "4.0"
    assert got["als.num_blocks"] == "None"
    assert got["ingest.event_weights"] == '{"buy": 5.0, "view": 1.0}'
    assert got["recommend.deny_items"] == "[]"
    assert got["tracking.experiment"] == "als-spark"
    every_key = {
        f"{s.name}.{k.name}" for s in dataclasses.fields(cfg) for k in dataclasses.fields(getattr(cfg, s.name))
    }
    assert set(got) == every_key


@pytest.mark.unit
def test_metric_rows_are_named_model_measure_at_k():
    rows = [
        {"model": "als", "k": 10, "precision": 0.5, "recall": 0.25, "ndcg": 0.6, "map": 0.4, "hit_rate": 1.0,
         "coverage": 0.3, "users": 8},
    ]  # fmt: skip
    assert tracking.metric_rows(rows) == {
        "als_precision_at_10": 0.5,
        "als_recall_at_10": 0.25,
        "als_ndcg_at_10": 0.6,
        "als_map_at_10": 0.4,
        "als_hit_rate_at_10": 1.0,
        "als_coverage_at_10": 0.3,
        "als_users": 8.0,
    }


@pytest.mark.unit
def test_tracking_is_on_by_flag_config_or_environment_and_asked_for_without_mlflow_is_exit_2(monkeypatch, caplog):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    on = build_config({"tracking": {"mlflow": True}})
    assert tracking.wanted(Config(), False) is False
    assert tracking.wanted(Config(), True) is True
    assert tracking.wanted(on, False) is True
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert tracking.wanted(Config(), False) is True
    # without the extra: the environment alone leaves the pipeline as it is; asking for it is an error
    monkeypatch.setattr(tracking, "installed", lambda: False)
    assert tracking.wanted(Config(), False) is False
    assert "mlflow is not installed: this run is not tracked" in caplog.text
    with pytest.raises(ConfigError, match=r"pip install 'als-spark\[mlflow\]'"):
        tracking.wanted(on, False)
    with pytest.raises(ConfigError, match="tracking.mlflow must be true or false"):
        build_config({"tracking": {"mlflow": "yes"}})


@pytest.mark.slow
def test_run_logs_params_input_counts_timings_run_json_and_a_model_that_loads_back(spark, store, data, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--input", str(data), "--output", str(out), *SMALL, "--log-level", "WARNING"]) == 0
    run, _ = _only_run(store)
    run_json = json.loads((out / "run.json").read_text())

    assert run.data.params["als.rank"] == "3" and run.data.params["recommend.top_n"] == "2"
    assert run.data.params == tracking.params(run_json["config"])
    assert run.data.tags["als_spark.command"] == "run"
    assert run.data.tags["als_spark.run_id"] == run_json["run_id"]
    assert run.data.tags["als_spark.input"] == str(data)
    assert run.data.tags["als_spark.input_sha256"] == hashlib.sha256(U_DATA.encode()).hexdigest()
    assert run.data.tags["als_spark.output"] == str(out)
    # 32 lines in, none rejected; 8 users x 3 items rated >= 4
    assert run.data.metrics["count_rows_read"] == 32
    assert run.data.metrics["count_rows_rejected"] == 0
    assert run.data.metrics["count_interactions"] == 24
    assert {m for m in run.data.metrics if m.startswith("seconds_")} == {
        f"seconds_{stage}" for stage in run_json["timings_seconds"]
    }
    assert sorted(a.path for a in store.list_artifacts(run.info.run_id)) == ["model", "run.json"]
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="run.json")
    logged = json.loads(Path(downloaded).read_text())
    assert logged == run_json

    # the logged model is the fitted one: its factors are the published factors
    loaded = mlflow.spark.load_model(f"runs:/{run.info.run_id}/model")
    als = loaded.stages[0]
    got = als.userFactors.toPandas().sort_values("id").reset_index(drop=True)
    published = pd.read_parquet(out / "model" / "userFactors").sort_values("id").reset_index(drop=True)
    assert got["id"].tolist() == published["id"].tolist()
    assert [list(f) for f in got["features"]] == [list(f) for f in published["features"]]


@pytest.mark.slow
def test_evaluate_logs_one_metric_per_model_and_measure_into_the_configured_experiment(spark, store, data, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--input", str(data), "--output", str(out), *SMALL, "--k", "2", "--log-level", "WARNING"]
    assert main([*args, "--set", "tracking.experiment=evaluations"]) == 0
    run, _ = _only_run(store, "evaluations")
    table = pd.read_parquet(out / "metrics")
    expected = {
        f"{row.model}_{m}_at_2": pytest.approx(float(getattr(row, m)))
        for row in table.itertuples()
        for m in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
    }
    assert {m: v for m, v in run.data.metrics.items() if "_at_" in m} == expected
    assert {m.split("_")[0] for m in expected} == {"als", "popularity", "random"}
    assert sorted(a.path for a in store.list_artifacts(run.info.run_id)) == ["metrics.md", "run.json"]


@pytest.mark.slow
def test_tune_logs_each_trial_as_a_nested_run_and_the_winners_test_metrics_on_the_parent(spark, store, data, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("tune:\n  method: grid\n  repeats: 1\n  space:\n    als.rank: [2, 3]\n    als.max_iter: 3\n")
    out = tmp_path / "tune"
    args = ["tune", "--input", str(data), "--output", str(out), "--spec", str(spec), "--k", "2", "--mlflow"]
    assert main([*args, "--log-level", "WARNING"]) == 0
    parent, exp = _only_run(store)
    children = store.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    summary = json.loads((out / "tune.json").read_text())
    assert sorted(c.data.params["als.rank"] for c in children) == ["2", "3"]
    board = pd.read_parquet(out / "leaderboard")
    for child in children:
        assert child.data.tags["als_spark.trial_status"] == "ok"
        row = board[board["trial"] == int(child.data.tags["als_spark.trial"])].iloc[0]
        assert child.data.metrics["objective"] == pytest.approx(row["objective"])
    assert parent.data.tags["als_spark.best_trial"] == str(summary["best"]["trial"])
    best = next(row for row in summary["test_metrics"] if row["model"] == "tuned")
    assert parent.data.metrics["tuned_ndcg_at_2"] == pytest.approx(best["ndcg"])
    assert parent.data.metrics["count_trials"] == 2
    assert {"best.yaml", "run.json", "tune.json"} <= {a.path for a in store.list_artifacts(parent.info.run_id)}
