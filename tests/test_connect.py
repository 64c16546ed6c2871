"""The pipeline, unchanged, against a local Spark Connect server (``sbin/start-connect-server.sh``).

A Connect client has no ``sparkContext`` and no RDDs (as on Databricks serverless and shared
clusters): any use of them fails the run. ALS checkpoints to the server's
``spark.checkpoint.dir``. The client must exit promptly: with pyspark 4.3 a client that let a
fitted model be finalised at interpreter exit hung releasing the server-side model cache.
Run on its own with ``pytest -m connect``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pandas as pd
import pyspark
import pytest
from spark_services import RUN_TIMEOUT, SETTINGS, assert_same_outputs, connect_server

pytestmark = [
    pytest.mark.connect,
    pytest.mark.slow,
    pytest.mark.skipif(
        int(pyspark.__version__.split(".")[0]) < 4, reason="the pipeline's ML over Spark Connect needs Spark 4"
    ),
]

#: A client that is done must be gone within this many seconds.
EXIT_TIMEOUT = 120


def _client_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYSPARK_SUBMIT_ARGS", "MASTER")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("connect")
    with connect_server(base / "server", checkpoint_dir=base / "checkpoints") as url:
        yield url, base / "checkpoints"


@pytest.fixture(scope="module")
def connect_run(server, reference_run, tmp_path_factory):
    url, _ = server
    out = tmp_path_factory.mktemp("connect-out") / "out"
    command = [
        sys.executable,
        "-m",
        "als_spark",
        "run",
        "--input",
        str(reference_run.data),
        "--output",
        str(out),
        *SETTINGS,
        "--remote",
        url,
    ]
    run = subprocess.run(command, env=_client_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert run.returncode == 0, run.stderr[-5000:]
    return reference_run.output, out, run


def test_connect_run_equals_local_mode(connect_run):
    local_out, out, _ = connect_run
    assert_same_outputs(out, local_out)


def test_connect_run_records_the_server_checkpoint_dir_and_parallelism(connect_run, server):
    local_out, out, run = connect_run
    _, checkpoints = server
    info = json.loads((out / "run.json").read_text())
    assert info["spark"]["master"] == "connect"
    # read from the server's configuration (spark.checkpoint.dir), not from a SparkContext
    assert info["spark"]["checkpoint_dir"] == str(checkpoints)
    # 12 iterations, interval 10: the server's ALS checkpointed there
    assert any("rdd-" in d for _, dirs, _ in os.walk(checkpoints) for d in dirs)
    # measured from the server (local[2]), since spark.default.parallelism is not set there
    assert info["spark"]["parallelism"] == 2
    assert info["counts"] == json.loads((local_out / "run.json").read_text())["counts"]
    assert "Traceback" not in run.stderr


def test_show_over_spark_remote(connect_run, server):
    _, out, _ = connect_run
    url, _ = server
    recs = pd.read_parquet(out / "recommendations")
    user = int(recs["user_id"].min())
    first = recs[recs["user_id"] == user].sort_values("rank").iloc[0]
    shown = subprocess.run(
        [sys.executable, "-m", "als_spark", "show", "--output", str(out), "--user", str(user)],
        env=_client_env(SPARK_REMOTE=url),
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert f"recommendations for user {user}" in shown.stdout and f"users most similar to user {user}" in shown.stdout
    assert first["title"] in shown.stdout


HOLD_MODEL = """
import sys
from als_spark import model, session
from als_spark.config import ALSConfig

if sys.argv[2:] == ["--without-stop-at-exit"]:
    session.stop_at_exit = id  # a no-op: the guard off
spark = session.get_spark(remote=sys.argv[1])
rows = [(u, i, 1.0, 1.0) for u in range(1, 13) for i in range(1, 9) if (u + i) % 3 == 0]
interactions = spark.createDataFrame(rows, "user_id int, item_id int, rating double, confidence double")
# kept in a module global until the end, like a notebook's or a script's `model = ...`
fitted = model.fit(interactions, ALSConfig(rank=2, max_iter=2), num_blocks=1)
print("users", fitted.userFactors.count(), flush=True)
"""


def test_client_holding_a_fitted_model_exits_promptly(server, tmp_path):
    url, _ = server
    script = tmp_path / "hold_model.py"
    script.write_text(HOLD_MODEL)
    try:
        done = subprocess.run(
            [sys.executable, str(script), url], env=_client_env(), capture_output=True, text=True, timeout=EXIT_TIMEOUT
        )
    except subprocess.TimeoutExpired as hung:  # run() has killed it
        pytest.fail(f"the client did not exit within {EXIT_TIMEOUT} s (stdout: {hung.stdout!r})")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "users 12"


@pytest.mark.skipif(not pyspark.__version__.startswith("4.3."), reason="the hang was seen with pyspark 4.3")
def test_without_the_guard_the_same_client_hangs_at_exit(server, tmp_path):
    # The control: the model's finaliser runs at interpreter shutdown, while the session is
    # open, and its release RPC never returns. If this starts to fail, pyspark fixed the hang.
    url, _ = server
    script = tmp_path / "hold_model.py"
    script.write_text(HOLD_MODEL)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, "--without-stop-at-exit"],
        env=_client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    watchdog = threading.Timer(EXIT_TIMEOUT, proc.kill)  # bounds the readline below
    watchdog.start()
    try:
        assert proc.stdout.readline().strip() == "users 12"  # the work is done ...
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(20)  # ... but the process does not end
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(30)
