"""The Airflow DAG (jobs/airflow/als_spark_dag.py) run in a real Airflow: ``airflow dags test`` of one date, twice.

Airflow and its Spark provider live in their own venv (tests/airflow_env.py builds it from the
pins of tests/airflow-requirements.txt); each Airflow command runs in it as a subprocess, with
``AIRFLOW_HOME`` and its SQLite metadata database in a temporary directory. The DAG file is
used as it is deployed: the environment plays the Airflow worker's. ``ALS_SPARK_HOME`` is a
checkout (``jobs/`` and ``conf/`` linked to this one's) whose ``dist/`` holds the zip
``python -m als_spark.package`` builds, ``ALS_SPARK_PYTHON`` is a Python without ``als_spark``
(the zip carries it), and the ``spark_default`` connection (``AIRFLOW_CONN_SPARK_DEFAULT``)
names ``local[2]``, so SparkSubmitOperator runs this venv's ``spark-submit`` (first on
``PATH``) in local mode. Spark is kept cheap, as the other deployment tests keep it, by a
``spark-defaults.conf`` in ``SPARK_CONF_DIR``.

``airflow dags test`` runs the task in its own process and writes the task's log to its own
output (nothing goes to ``AIRFLOW_HOME/logs`` in this mode); a failure shows the end of it.
A failed attempt would make it wait out the DAG's 15-minute ``retry_delay``, and it ignores
SIGTERM, so the run is watched through Airflow's database and killed as soon as the task
fails once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import airflow_env
import pandas as pd
import pyarrow.parquet as pq
import pytest
from spark_services import (
    ROOT,
    RUN_TIMEOUT,
    expected_summary,
    python_without_als_spark,
    read_table,
    spark_env,
    write_dataset,
)

import als_spark
from als_spark import publish
from als_spark.package import build_zip
from als_spark.session import LOG4J_CONFIG, QUICK_JIT_OPTION

DAG_ID = "als_spark_daily"
TASK_ID = "als_spark_run"
RUN_DATE = "2026-11-29"
#: Ratings in the input: synthetic data sparse enough that every user has movies left to recommend
#: (smaller synthetic inputs rate nearly every movie), and a DAG run of about a minute.
N_RATINGS = 10_000
#: What a run of the pipeline publishes (besides run.json), in run.json's order.
PUBLISHED = [
    "dataset_summary",
    "ratings",
    "interactions",
    "rejected",
    "user_index",
    "item_index",
    "items",
    "model",
    "user_factors",
    "item_factors",
    "recommendations",
    "similar_items",
    "similar_users",
]
#: What Spark gets from SPARK_CONF_DIR/spark-defaults.conf: the test session's settings (tests/conftest.py).
SPARK_DEFAULTS = {
    "spark.driver.memory": "1g",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.extraJavaOptions": QUICK_JIT_OPTION,
}
#: Task states after which ``airflow dags test`` only waits (for the retry) or gives up.
FAILED = ("up_for_retry", "failed", "upstream_failed")
#: Lines of ``airflow dags test``'s output shown when it fails.
LOG_TAIL = 150


@dataclasses.dataclass(frozen=True)
class Deployment:
    """An Airflow home with a migrated database, the DAG's environment, and its input."""

    airflow: Path  #: the ``airflow`` command of the Airflow venv
    env: dict[str, str]  #: the environment of every Airflow command
    home: Path  #: AIRFLOW_HOME
    ratings: Path  #: the input, $ALS_SPARK_DATA/input/u.data
    output: Path  #: $ALS_SPARK_DATA/out/run_date=<RUN_DATE>
    zip: Path  #: $ALS_SPARK_HOME/dist/als_spark-<version>.zip
    python: Path  #: $ALS_SPARK_PYTHON

    @property
    def database(self) -> Path:
        return self.home / "airflow.db"


@dataclasses.dataclass(frozen=True)
class DagRun:
    """One ``airflow dags test``: Airflow's record of its run and task, and its output."""

    run_id: str
    logical_date: str
    state: str
    task_state: str
    try_number: int
    log: Path  #: ``airflow dags test``'s output, the task's log included
    seconds: float


def _records(database: Path) -> list[tuple[str, str, str, str, int]]:
    """(run id, logical date, run state, task state, try number) of every run of the DAG in Airflow's database."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as db:
        return db.execute(
            "SELECT dr.run_id, dr.logical_date, dr.state, ti.state, ti.try_number FROM dag_run dr "
            "JOIN task_instance ti ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id "
            "WHERE dr.dag_id = ? AND ti.task_id = ?",
            (DAG_ID, TASK_ID),
        ).fetchall()


def _failure(what: str, log: Path, deployment: Deployment) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    files = sorted(p for p in (deployment.home / "logs").rglob("*") if p.is_file())
    return (
        f"{what}\n--- the last {LOG_TAIL} lines of `airflow dags test` ({log}), the task's log included:\n"
        + "\n".join(lines[-LOG_TAIL:])
        + "".join(f"\n--- {p}:\n" + p.read_text(errors="replace")[-5000:] for p in files)
    )


def airflow(deployment: Deployment, *args: str, timeout: float = 300) -> str:
    """Run ``airflow ARGS`` to completion; its output, or a failure that shows it."""
    done = subprocess.run(
        [str(deployment.airflow), *args],
        env=deployment.env,
        cwd=deployment.home,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"airflow {' '.join(args)} exited with {done.returncode}:\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}"
    )
    return done.stdout


def dags_test(deployment: Deployment, log: Path) -> DagRun:
    """``airflow dags test DAG_ID RUN_DATE``, killed (with everything it started) if its task fails once or it overruns."""
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(deployment.airflow), "dags", "test", DAG_ID, RUN_DATE],
            env=deployment.env,
            cwd=deployment.home,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        while proc.poll() is None:
            if time.monotonic() - start > RUN_TIMEOUT:
                pytest.fail(_failure(f"airflow dags test still running after {RUN_TIMEOUT} s", log, deployment))
            try:
                states = {record[3] for record in _records(deployment.database)}
            except sqlite3.OperationalError:  # locked by a write, or the run's tables not there yet
                states = set()
            if states & set(FAILED):
                pytest.fail(_failure(f"the task failed ({', '.join(sorted(states))})", log, deployment))
            time.sleep(2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # SIGTERM does not stop `airflow dags test`
            proc.wait(30)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, _failure(f"airflow dags test exited with {proc.returncode}", log, deployment)
    records = _records(deployment.database)
    assert len(records) == 1, _failure(f"expected one run of {DAG_ID}, found {records}", log, deployment)
    return DagRun(*records[0], log=log, seconds=seconds)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Deployment:
    venv = airflow_env.ensure()
    print(f"\n{venv.bin.parent}: {'built' if venv.built else 'up to date'} in {venv.seconds:.1f} s")
    base = tmp_path_factory.mktemp("airflow")
    # ALS_SPARK_HOME: a checkout with dist/ built as the DAG's docstring says
    checkout = base / "als-spark"
    checkout.mkdir()
    for name in ("jobs", "conf"):
        (checkout / name).symlink_to(ROOT / name, target_is_directory=True)
    zip_path = build_zip(checkout / "dist")
    data = base / "data"
    ratings = write_dataset(data / "input", N_RATINGS)
    python = python_without_als_spark(base)
    spark_conf = base / "spark-conf"
    spark_conf.mkdir()
    (spark_conf / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in SPARK_DEFAULTS.items()))
    shutil.copy(LOG4J_CONFIG, spark_conf / "log4j2.properties")  # Spark at WARN, as als-spark starts it
    home = base / "airflow-home"
    home.mkdir()
    env = {
        k: v
        for k, v in spark_env(base / "spark").items()
        if not k.startswith("AIRFLOW")
        and k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(
        # the spark-submit of the venv running the tests, and its pip-installed Spark (spark_env's SPARK_HOME)
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)]),
        SPARK_CONF_DIR=str(spark_conf),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "jobs" / "airflow"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        # the provider takes a "spark" connection's host as the master when it has no port
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": "local[2]"}),
        ALS_SPARK_HOME=str(checkout),
        ALS_SPARK_DATA=str(data),
        ALS_SPARK_PYTHON=str(python),
    )
    assert shutil.which("spark-submit", path=env["PATH"]) == str(Path(sys.executable).parent / "spark-submit")
    # the Python the job runs has every dependency but not the package: the zip must carry it
    # (run outside this checkout: `python -c` puts the working directory on sys.path)
    for code, ok in (("import numpy, pyarrow, yaml, pandas", True), ("import als_spark", False)):
        done = subprocess.run([str(python), "-c", code], cwd=base, env=env, capture_output=True, timeout=60)
        assert (done.returncode == 0) == ok, (code, done.stderr[-2000:])
    deployment = Deployment(
        airflow=venv.bin / "airflow",
        env=env,
        home=home,
        ratings=ratings,
        output=data / "out" / f"run_date={RUN_DATE}",
        zip=zip_path,
        python=python,
    )
    airflow(deployment, "db", "migrate")
    return deployment


@pytest.fixture(scope="module")
def first_run(deployment, tmp_path_factory) -> tuple[DagRun, Path]:
    """The first ``airflow dags test`` of RUN_DATE, and a copy of the snapshot it published."""
    run = dags_test(deployment, deployment.home / "dags-test-1.log")
    print(f"first airflow dags test: {run.seconds:.1f} s")
    copy = tmp_path_factory.mktemp("first-run") / "snapshot"
    shutil.copytree(publish.snapshot(str(deployment.output)), copy, symlinks=True)
    return run, copy


def _expected_input_tables(ratings: Path) -> dict[str, pd.DataFrame]:
    """``ratings``, ``interactions`` and ``dataset_summary`` as conf/default.yaml makes them, computed from the file."""
    raw = pd.read_csv(ratings, sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    assert not raw.duplicated(["user_id", "item_id"]).any()  # so no row is dropped as a repeat
    rows = raw.astype({"user_id": "int32", "item_id": "int32", "rating": "float64", "timestamp": "int64"})
    # ingest.min_rating: 4.0 keeps ratings >= 4; confidence: rating makes each one's confidence the rating itself
    liked = rows[rows.rating >= 4.0].drop(columns="timestamp").assign(confidence=lambda d: d.rating)
    summary = expected_summary(liked)
    ordered = {
        "ratings": rows.sort_values(["user_id", "item_id", "rating"]),
        "interactions": liked.sort_values(["user_id", "item_id", "rating"]),
        "dataset_summary": summary,
    }
    return {name: df.reset_index(drop=True) for name, df in ordered.items()}


@pytest.mark.slow
def test_airflow_dags_test_submits_the_pipeline_to_local_spark_and_publishes_the_run_dates_tables(
    deployment, first_run
):
    run, _ = first_run
    # Airflow's own record: one run of that logical date, its one task succeeded at the first try
    assert (run.logical_date[:10], run.state, run.task_state, run.try_number) == (RUN_DATE, "success", "success", 1)
    log = run.log.read_text(errors="replace")
    # the operator's command: the connection's master, the zip, the Python, the date in the output path
    (command,) = re.findall(r"Spark-Submit cmd: (spark-submit .*?) \[", log)
    assert command.startswith("spark-submit --master local[2] ")
    assert f"--py-files {deployment.zip} " in command and f"spark.pyspark.python={deployment.python} " in command
    assert f"--output {deployment.output} " in command
    output = deployment.output
    info = json.loads((output / "run.json").read_text())
    assert (info["status"], info["spark"]["master"], info["versions"]["als_spark"]) == (
        "succeeded",
        "local[2]",
        als_spark.__version__,
    )
    # exactly these tables are published under run_date=<ds>, each readable where a reader looks
    assert list(info["published"]) == PUBLISHED
    assert sorted(os.listdir(publish.snapshot(str(output)))) == sorted([*PUBLISHED, "run.json"])
    assert all((output / name).is_dir() for name in PUBLISHED)
    # the tables computed from the input alone, compared whole with what the file gives by hand
    for name, expected in _expected_input_tables(deployment.ratings).items():
        pd.testing.assert_frame_equal(read_table(output, name), expected, obj=name)
    assert read_table(output, "rejected").empty
    # recommend: top_n 10, exclude: rated. Each user with factors gets the 10 best of the movies with
    # factors that they did not rate (all of them if fewer), ranked 1, 2, ...; a rated movie never.
    recs, rated = read_table(output, "recommendations"), read_table(output, "ratings")
    movies = set(read_table(output, "item_factors")["id"])
    left = {user: len(movies - set(group.item_id)) for user, group in rated.groupby("user_id")}
    expected_counts = {u: min(10, left[u]) for u in read_table(output, "user_factors")["id"] if left[u]}
    assert recs.groupby("user_id").size().to_dict() == expected_counts
    assert recs.merge(rated, on=["user_id", "item_id"]).empty
    assert (recs.groupby("user_id").cumcount() + 1 == recs["rank"]).all()  # read_table sorts by user, rank


def _part_files(table: Path) -> dict[str, Path]:
    """A table's Parquet parts by name without the write job's random UUID (``part-00000-c000.snappy.parquet``)."""
    return {
        re.sub(r"-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "", str(p.relative_to(table))): p
        for p in table.rglob("part-*.parquet")
    }


@pytest.mark.slow
def test_a_second_airflow_dags_test_of_the_date_publishes_identical_tables(deployment, first_run):
    first, first_snapshot = first_run
    second = dags_test(deployment, deployment.home / "dags-test-2.log")
    print(f"second airflow dags test: {second.seconds:.1f} s")
    # Airflow replaced the date's run with a new one, whose task succeeded at the first try
    assert second.run_id != first.run_id
    assert (second.logical_date[:10], second.state, second.task_state, second.try_number) == (
        RUN_DATE,
        "success",
        "success",
        1,
    )
    snapshot = Path(publish.snapshot(str(deployment.output)))
    a, b = json.loads((first_snapshot / "run.json").read_text()), json.loads((snapshot / "run.json").read_text())
    assert a["run_id"] != b["run_id"]  # a new run of the pipeline, published in place of the first
    assert (a["counts"], a["config"], a["published"]) == (b["counts"], b["config"], b["published"])
    # Every table holds the same rows in the same order with the same values, part file by part
    # file. The files are not byte-identical: each write names its parts with a random UUID, and
    # Parquet's footer lists each column's encodings in an order that changes from JVM to JVM.
    for name in PUBLISHED:
        parts_a, parts_b = _part_files(first_snapshot / name), _part_files(snapshot / name)
        assert sorted(parts_a) == sorted(parts_b), name
        for part, path in parts_a.items():
            assert pq.read_table(path).equals(pq.read_table(parts_b[part]), check_metadata=True), f"{name}/{part}"
    # the model's metadata differs only in its creation time and the estimator's random uid
    meta_a, meta_b = (
        json.loads(next((s / "model" / "metadata").glob("part-*")).read_text()) for s in (first_snapshot, snapshot)
    )
    assert {k: v for k, v in meta_a.items() if k not in ("timestamp", "uid")} == {
        k: v for k, v in meta_b.items() if k not in ("timestamp", "uid")
    }


def test_the_deployment_guide_names_the_airflow_versions_the_test_pins():
    pins = dict(line.split("==") for line in airflow_env.REQUIREMENTS.read_text().splitlines() if "==" in line)
    guide = (ROOT / "docs" / "deploy.md").read_text()
    # the section "Scheduled runs", its whitespace collapsed so that where its lines break does not matter
    section = " ".join(guide[guide.index("## Scheduled runs") :].split("\n## ")[0].split())
    core, provider = pins["apache-airflow"], pins["apache-airflow-providers-apache-spark"]
    assert f"with Airflow {core} and the provider {provider}, pinned in `tests/airflow-requirements.txt`" in section
