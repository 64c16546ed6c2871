"""spark-submit on a real Spark standalone cluster (a master and two workers on 127.0.0.1).

The package reaches the executors the way the README tells users to ship it: a zip built by
``python -m als_spark.package`` and passed with ``--py-files``, and a Python with the
dependencies named by ``spark.pyspark.python``. That Python does not have ``als_spark``
installed, as on a real cluster, so the run passes only if the zip is what the driver and the
executors import. The cluster and the reference run are shared with ``test_faults.py`` (tests/conftest.py).
Run on its own with ``pytest -m cluster``.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from spark_services import RUN_TIMEOUT, SETTINGS, assert_same_outputs, spark_env, submit_command

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def submitted(standalone_cluster, shipped, reference_run, tmp_path_factory):
    """The pipeline submitted to the cluster: (cluster output, process, master URL, checkpoints)."""
    base = tmp_path_factory.mktemp("cluster-run")
    out, checkpoints = base / "out", base / "checkpoints"
    command = submit_command(
        standalone_cluster.url,
        shipped,
        args=[
            "--input",
            str(reference_run.data),
            "--output",
            str(out),
            *SETTINGS,
            "--set",
            f"als.checkpoint_dir={checkpoints}",
        ],
    )
    run = subprocess.run(command, cwd=base, env=spark_env(base), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert run.returncode == 0, run.stderr[-5000:]
    return out, run, standalone_cluster.url, checkpoints


def test_the_executor_python_needs_the_shipped_zip(shipped, tmp_path):
    # the stand-in for a cluster's Python has the dependencies but not the package
    python, zipped = shipped.python, shipped.package
    has_deps = subprocess.run(
        [str(python), "-c", "import numpy, pyarrow, pyspark, yaml"], capture_output=True, timeout=120
    )
    assert has_deps.returncode == 0, has_deps.stderr
    no_package = subprocess.run(
        [str(python), "-c", "import als_spark"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert "ModuleNotFoundError" in no_package.stderr
    env = {**os.environ, "PYTHONPATH": str(zipped)}
    imported = subprocess.run(
        [str(python), "-c", "import als_spark.topk as t; print(t.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert imported.stdout.strip() == f"{zipped}/als_spark/topk.py", imported.stderr


def test_cluster_run_equals_local_mode(submitted, reference_run):
    cluster_out, _, _, _ = submitted
    assert_same_outputs(cluster_out, reference_run.output)


def test_spark_submit_decides_the_master_and_als_checkpoints_on_the_cluster(submitted, reference_run):
    out, _, master, checkpoints = submitted
    info = json.loads((out / "run.json").read_text())
    # no master in code: the one given to spark-submit is the one used
    assert info["spark"]["master"] == master
    assert info["spark"]["als_blocks"] == 2
    assert info["spark"]["checkpoint_dir"].startswith(f"file:{checkpoints}")
    # 12 iterations, interval 10: ALS checkpointed its factors into the configured directory
    assert any("rdd-" in d for _, dirs, _ in os.walk(checkpoints) for d in dirs)
    assert info["counts"] == json.loads((reference_run.output / "run.json").read_text())["counts"]
