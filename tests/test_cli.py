"""The command line: exit codes and messages a user can act on, and the stage-by-stage path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from als_spark import datasets
from als_spark.cli import build_parser, main
from als_spark.cli.options import input_bytes

ROOT = Path(__file__).resolve().parents[1]

# Two taste groups: users 1-4 like items 1-3, users 5-8 like items 4-6; each user also
# rated one item of the other group badly (rating 1 or 2), which `rated` exclusion removes.
U_DATA = "".join(
    f"{u}\t{i}\t{5 if (u + i) % 2 else 4}\t{880000000 + 10 * u + i}\n"
    for u in range(1, 9)
    for i in ((1, 2, 3) if u <= 4 else (4, 5, 6))
) + "".join(f"{u}\t{4 if u <= 4 else 1}\t{1 + u % 2}\t{890000000 + u}\n" for u in range(1, 9))
U_ITEM = "".join(f"{i}|Movie {i} (199{i})|01-Jan-199{i}||http://x/{i}|0|1\n" for i in range(1, 7))
SMALL = ["--set", "als.rank=3", "--set", "als.max_iter=5", "--set", "recommend.top_n=2", "--set", "similar.top_k=2"]


@pytest.fixture
def movielens(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "u.data").write_text(U_DATA)
    (folder / "u.item").write_text(U_ITEM, encoding="latin-1")
    return folder


def _table(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    if "features" in df:
        df["features"] = df["features"].map(list)
    return df.sort_values([c for c in df.columns[:3] if c != "features"]).reset_index(drop=True)


def test_staged_commands_write_the_same_tables_as_run(spark, movielens, tmp_path, capsys):
    whole, staged = tmp_path / "whole", tmp_path / "staged"
    src = ["--input", str(movielens / "u.data")]
    assert main(["run", *src, "--output", str(whole), *SMALL, "--log-level", "WARNING"]) == 0
    assert main(["ingest", *src, "--output", str(staged), *SMALL, "--log-level", "WARNING"]) == 0
    for stage in ("train", "recommend", "similar"):
        assert main([stage, "--output", str(staged), *SMALL, "--log-level", "WARNING"]) == 0
    for name in (
        "dataset_summary",
        "interactions",
        "ratings",
        "items",
        "user_factors",
        "recommendations",
        "similar_items",
        "similar_users",
    ):
        pd.testing.assert_frame_equal(_table(whole / name), _table(staged / name), obj=name)
    recs = _table(staged / "recommendations")
    # Users 1-4 rated items 1-4 (4 badly): only 5 and 6 are left to recommend; titles come from u.item.
    assert recs[recs.user_id == 1][["rank", "item_id"]].values.tolist() in ([[1, 5], [2, 6]], [[1, 6], [2, 5]])
    assert recs[recs.user_id == 1]["title"].tolist() == [
        f"Movie {i} (199{i})" for i in recs[recs.user_id == 1]["item_id"]
    ]
    # `show` answers the notebook's questions from the written tables
    assert main(["show", "--output", str(staged), "--user", "1"]) == 0
    shown = capsys.readouterr().out
    assert "recommendations for user 1" in shown and "users most similar to user 1" in shown
    first = recs[recs.user_id == 1].iloc[0]
    assert f"    1 {first.item_id:>8} " in shown and first.title in shown
    assert main(["show", "--output", str(staged), "--item", "1"]) == 0
    assert "items most similar to item 1 (Movie 1 (1991))" in capsys.readouterr().out
    info = json.loads((staged / "run.json").read_text())
    assert info["command"] == "similar"
    # stage commands add up to one record
    assert {"ingest", "fit", "recommend", "similar_items", "similar_users"} <= set(info["timings_seconds"])
    assert info["counts"]["interactions"] == 24 and info["counts"]["ratings"] == 32
    assert info["input"]["sha256"] and info["input"]["items_path"].endswith("u.item")


def test_missing_input_exits_3_with_a_message_and_writes_nothing(spark, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "missing.data"), "--output", str(out)]) == 3
    err = capsys.readouterr().err
    assert "input not found" in err and "Traceback" not in err
    assert not out.exists()


def test_no_interaction_left_exits_3(spark, movielens, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(["run", "--input", str(movielens / "u.data"), "--output", str(out), "--set", "ingest.min_rating=6"]) == 3
    )
    assert "no interactions left" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.unit
def test_bad_config_exits_2_naming_the_key_before_spark_starts(tmp_path, capsys):
    assert main(["run", "--dataset", "synthetic", "--output", str(tmp_path / "o"), "--set", "als.rank=0"]) == 2
    assert "als.rank must be a positive integer, got 0" in capsys.readouterr().err


@pytest.mark.unit
def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["run", "--output", str(tmp_path)]) == 2  # no input
    assert "one of the arguments --input --table --dataset is required" in capsys.readouterr().err
    assert main(["run", "--input", "x", "--dataset", "synthetic", "--output", str(tmp_path)]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["train", "--output", str(tmp_path), "--config", str(tmp_path / "none.yaml")]) == 2


def test_stage_without_its_inputs_explains_what_to_run_first(spark, tmp_path, capsys):
    assert main(["recommend", "--output", str(tmp_path / "empty")]) == 3
    assert "run `als-spark train --output" in capsys.readouterr().err


def test_ml_100k_offline_exits_4_pointing_at_input(spark, monkeypatch, tmp_path, capsys):
    # (the session fixture: the CLI gets the test session before it fetches the dataset)
    real = datasets.fetch_ml_100k
    # a closed local port stands in for "no network"; the test never leaves the machine
    monkeypatch.setattr(
        datasets,
        "fetch_ml_100k",
        lambda **kw: real(cache_dir=tmp_path, url="http://127.0.0.1:9/ml-100k.zip", timeout=2),
    )
    assert main(["run", "--dataset", "ml-100k", "--output", str(tmp_path / "o")]) == 4
    err = capsys.readouterr().err
    assert "--input" in err and "--dataset synthetic" in err


@pytest.mark.unit
def test_every_stage_is_a_subcommand_with_the_documented_options():
    parser = build_parser()
    args = parser.parse_args(
        [
            "run",
            "--input",
            "u.data",
            "--output",
            "o",
            "--config",
            "c.yaml",
            "--set",
            "als.rank=5",
            "--format",
            "csv",
            "--items",
            "i",
        ]
    )
    assert (args.command, args.input, args.output, args.config, args.overrides, args.format, args.items) == (
        "run",
        "u.data",
        "o",
        "c.yaml",
        ["als.rank=5"],
        "csv",
        "i",
    )
    # evaluate leaves out the user's train items unless told otherwise (--exclude rated: below)
    assert parser.parse_args(["evaluate", "--input", "u.data", "--output", "o"]).exclude == "train"
    for stage in ("ingest", "train", "recommend", "similar", "synthesize"):
        assert (
            parser.parse_args(
                [stage, "--output", "o"] + (["--dataset", "synthetic"] if stage == "ingest" else [])
            ).command
            == stage
        )


@pytest.mark.e2e
@pytest.mark.parametrize("entry", [["-m", "als_spark"], [str(ROOT / "jobs" / "run.py")]])
def test_module_and_job_entry_points_reach_the_same_cli(entry, tmp_path):
    # No Spark needed: a config error is reported by the same code path with the same exit code.
    cmd = (
        [sys.executable, *entry]
        + (["run"] if entry[0] == "-m" else [])
        + ["--dataset", "synthetic", "--output", str(tmp_path), "--set", "als.nope=1"]
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "unknown configuration key 'als.nope'" in proc.stderr


@pytest.mark.unit
def test_synthesize_writes_movielens_files(tmp_path, capsys):
    assert main(["synthesize", "--output", str(tmp_path / "syn"), "--ratings", "20000"]) == 0
    lines = (tmp_path / "syn" / "u.data").read_text().splitlines()
    assert len(lines) == 20000 and len(lines[0].split("\t")) == 4


def test_evaluate_writes_metrics_table_and_markdown(spark, movielens, tmp_path, capsys):
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "--input",
        str(movielens / "u.data"),
        "--output",
        str(out),
        "--k",
        "2",
        "--split",
        "chronological",
        "--exclude",
        "rated",
        *SMALL,
    ]
    assert main([*args, "--log-level", "WARNING"]) == 0
    metrics = pd.read_parquet(out / "metrics")
    assert metrics["model"].tolist() == ["als", "popularity", "random"]
    assert (metrics["k"] == 2).all() and (metrics["split"] == "chronological").all()
    # 8 users with 3 interactions each: round(0.25 * 3) = 1 held out per user, all 8 evaluated
    assert (metrics["users"] == 8).all()
    table = (out / "metrics.md").read_text()
    assert (
        table.splitlines()[0] == "| model | precision@2 | recall@2 | ndcg@2 | map@2 | hit_rate@2 | coverage | users |"
    )
    assert table in capsys.readouterr().out
    info = json.loads((out / "run.json").read_text())["input"]
    assert info["evaluation"] == {
        "k": 2,
        "test_fraction": 0.25,
        "split": "chronological",
        "seed": 42,
        "exclude": "rated",
    }
    # evaluate writes no titles, so it does not read the u.item beside the input
    assert (movielens / "u.item").exists() and info["items_path"] is None


@pytest.mark.unit
def test_input_size_known_before_spark_starts(movielens, tmp_path):
    # What get_spark gets to choose a quick-starting JVM for small inputs (session.quick_jit).
    parser = build_parser()

    def size(*argv: str) -> int | None:
        return input_bytes(parser.parse_args(["evaluate", *argv, "--output", str(tmp_path / "o")]))

    data = movielens / "u.data"
    assert size("--input", str(data)) == len(U_DATA.encode())
    assert size("--input", f"file://{data}") == len(U_DATA.encode())
    assert size("--input", str(movielens)) == len(U_DATA.encode()) + len(
        U_ITEM.encode("latin-1")
    )  # a folder: its files
    assert size("--input", str(tmp_path / "missing")) is None
    assert size("--input", "s3://bucket/ratings.csv") is None
    assert size("--dataset", "ml-100k") == 1_979_173
    assert size("--dataset", "synthetic", "--synthetic-ratings", "1000") == 20_000


@pytest.mark.unit
def test_evaluate_passes_the_input_size_to_the_session(movielens, tmp_path, monkeypatch):
    from als_spark import session

    seen = {}

    class Stop(Exception):
        pass

    def fake_get_spark(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(session, "get_spark", fake_get_spark)
    with pytest.raises(Stop):
        main(["evaluate", "--input", str(movielens / "u.data"), "--output", str(tmp_path / "o")])
    assert seen == {"remote": None, "input_bytes": len(U_DATA.encode())}


# What the driver raised when a 20M-rating run's 512 MB executors ran out of heap
# (benchmarks/small_executors.py, 2026-12-02), cut to its first lines.
EXECUTOR_OOM = (
    "An error occurred while calling o326.count.\n"
    ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 1 in stage 5.0 failed 4 times, "
    "most recent failure: Lost task 1.3 in stage 5.0 (TID 20) (127.0.0.1 executor 4): "
    "java.lang.OutOfMemoryError: Java heap space\n"
    "\tat org.apache.spark.util.collection.unsafe.sort.UnsafeSorterSpillReader.<init>(UnsafeSorterSpillReader.java:54)\n"
)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            EXECUTOR_OOM,
            "Spark ran out of memory during the ingest stage in the executor (Lost task 1.3 in stage 5.0 (TID 20) "
            "(127.0.0.1 executor 4): java.lang.OutOfMemoryError: Java heap space). Give each executor more memory",
        ),
        (
            "Job aborted due to stage failure: ExecutorLostFailure (executor 1 exited caused by one of the running "
            "tasks) Reason: Command exited with code 52",
            "Spark ran out of memory during the ingest stage in the executor (ExecutorLostFailure (executor 1 exited "
            "caused by one of the running tasks) Reason: Command exited with code 52). Give each executor more memory",
        ),
        (
            "An error occurred while calling o12.collectToPython.\n: java.lang.OutOfMemoryError: Java heap space\n",
            "Spark ran out of memory during the ingest stage in the driver (java.lang.OutOfMemoryError: Java heap "
            "space). Give the driver more memory",
        ),
    ],
)
def test_a_spark_failure_for_want_of_memory_becomes_a_paragraph_that_says_what_to_change(text, expected):
    from als_spark.errors import SparkResourceError, note_stage, spark_resource_failure

    exc = RuntimeError(text)
    note_stage(exc, "ingest")
    note_stage(exc, "run")  # an outer stage does not replace the innermost one
    got = spark_resource_failure(exc)
    assert isinstance(got, SparkResourceError) and got.exit_code == 6
    assert str(got).startswith(expected)
    assert str(got).endswith(
        "This run published nothing: the tables already in the output are unchanged, and the same command can be "
        "run again once Spark has more memory."
    )
    assert "\n" not in str(got)


@pytest.mark.unit
def test_other_spark_failures_are_not_called_a_want_of_memory():
    from als_spark.errors import spark_resource_failure

    assert spark_resource_failure(RuntimeError("Job aborted due to stage failure: ArithmeticException")) is None
    assert spark_resource_failure(ValueError("no such column user")) is None


def test_run_whose_executors_run_out_of_memory_exits_6_without_a_stack_trace_and_publishes_nothing(
    spark, reference_run, tmp_path, monkeypatch, capsys
):
    import os
    import shutil

    from als_spark import pipeline

    out = tmp_path / "out"
    shutil.copytree(reference_run.output, out, symlinks=True)  # a published output
    published = os.readlink(out / "current")

    def out_of_memory(*_args, **_kwargs):
        raise RuntimeError(EXECUTOR_OOM)  # as Py4J raises it: a Java exception's text on a Python exception

    monkeypatch.setattr(pipeline, "load_ratings", out_of_memory)
    assert main(["run", "--input", str(reference_run.data), "--output", str(out)]) == 6
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().startswith("error: Spark ran out of memory during the ingest stage in the executor")
    assert os.readlink(out / "current") == published
    assert sorted(os.listdir(out / ".runs")) == sorted(os.listdir(reference_run.output / ".runs"))
