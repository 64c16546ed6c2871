"""The shared fixtures and the test tiers.

* ``spark``: one SparkSession for the whole test run (local[2], 2 shuffle partitions, no UI, UTC).
* ``reference_run``: the local-mode pipeline run every deployment test compares with, made once.
* ``standalone_cluster`` and ``shipped``: one Spark standalone cluster for the test run, and the
  ``--py-files`` zip and the Python without ``als_spark`` that jobs submitted to it use
  (tests/test_cluster.py and tests/test_faults.py). The tests that use the cluster are run one
  after another, and it is stopped after the last of them: started once, never left idle.

Every test gets exactly one tier marker (pyproject.toml lists them): its own, if it has one,
else its file's from :data:`FILE_TIERS`. In a file of tier :data:`BY_FIXTURE` a test is
``spark_unit`` if it uses the ``spark`` fixture (directly or through another fixture), else
``unit``. A ``unit`` test never uses ``spark``; tests/test_tiers.py checks that every file is
listed here and that every collected test has one tier.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

TIERS = ("unit", "spark_unit", "integration", "e2e", "deploy")
#: A file of library tests: ``spark_unit`` where a test uses the ``spark`` fixture, else ``unit``.
BY_FIXTURE = "unit or spark_unit"

#: The tier of the tests of every file, unless a test is marked with another tier itself.
FILE_TIERS = {
    "test_airflow.py": "deploy",
    "test_api.py": BY_FIXTURE,
    "test_byod.py": "integration",
    "test_caching.py": BY_FIXTURE,
    "test_cli.py": "integration",
    "test_cluster.py": "deploy",
    "test_compare.py": BY_FIXTURE,
    "test_compare_cli.py": "integration",
    "test_config.py": BY_FIXTURE,
    "test_connect.py": "deploy",
    "test_datasets.py": BY_FIXTURE,
    "test_deploy.py": "deploy",
    "test_end_to_end.py": "e2e",
    "test_evaluate.py": BY_FIXTURE,
    "test_evaluate_job.py": BY_FIXTURE,
    "test_faults.py": "deploy",
    "test_feedback.py": BY_FIXTURE,
    "test_foldin.py": BY_FIXTURE,
    "test_fuzz.py": "integration",
    "test_ids.py": BY_FIXTURE,
    "test_ingest.py": BY_FIXTURE,
    # Another's file: its slow tests, which run the command line in a process without Java, would be e2e.
    "test_java.py": BY_FIXTURE,
    "test_layout.py": BY_FIXTURE,
    "test_lock.py": BY_FIXTURE,
    "test_snapshots.py": "unit",
    "test_lookup.py": BY_FIXTURE,
    "test_model.py": BY_FIXTURE,
    "test_new_users.py": "integration",
    "test_properties.py": BY_FIXTURE,
    "test_publish.py": "integration",
    "test_serving.py": BY_FIXTURE,
    # Its pure helpers' tests and its subprocess JVM test would be unit and e2e; the file is
    # another's, so the whole file is spark_unit until its tests carry markers of their own.
    "test_session.py": "spark_unit",
    "test_sources.py": BY_FIXTURE,
    "test_synthetic.py": BY_FIXTURE,
    "test_tiers.py": BY_FIXTURE,
    "test_topk.py": BY_FIXTURE,
    "test_tune.py": BY_FIXTURE,
    "test_tracking.py": "integration",
    "test_tune_cli.py": "integration",
}


def tier_of(item: pytest.Item) -> str | None:
    """The tier ``item`` gets: its own tier marker, else its file's (``None`` for a file not listed)."""
    own = {m.name for m in item.iter_markers() if m.name in TIERS}
    if len(own) > 1:
        raise pytest.UsageError(f"{item.nodeid}: more than one tier marker ({', '.join(sorted(own))})")
    tier = own.pop() if own else FILE_TIERS.get(item.path.name)
    if tier == BY_FIXTURE:
        tier = "spark_unit" if "spark" in item.fixturenames else "unit"
    if tier == "unit" and "spark" in item.fixturenames:
        raise pytest.UsageError(f"{item.nodeid}: a unit test uses the spark fixture; mark it spark_unit or integration")
    return tier


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if tier is not None and not any(m.name == tier for m in item.iter_markers()):
            item.add_marker(tier)
    # The standalone cluster is session-scoped: run its users together, from where the first
    # one is, so that the cluster does not idle through the files in between.
    users = [item for item in items if "standalone_cluster" in item.fixturenames]
    if users:
        first = items.index(users[0])
        rest = [item for item in items if "standalone_cluster" not in item.fixturenames]
        items[:] = rest[:first] + users + rest[first:]
    # The real Airflow's tests last: .ci/run builds their venv in the background meanwhile
    # (tests/airflow_env.py; a build in progress is waited for, not started again).
    airflow = [item for item in items if item.path.name == "test_airflow.py"]
    items[:] = [item for item in items if item.path.name != "test_airflow.py"] + airflow


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    from als_spark.session import QUICK_JIT_OPTION

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("als-spark-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # C1 only, as the CLI starts for small inputs (als_spark.session.quick_jit): a fifth less CPU
        # for these small jobs, for the same time.
        .config("spark.driver.extraJavaOptions", QUICK_JIT_OPTION)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def reference_run(spark, tmp_path_factory):
    """The pipeline run in local mode on the test session (``spark_services.SETTINGS``): ``.data`` and ``.output``."""
    from spark_services import run_reference

    return run_reference(tmp_path_factory.mktemp("reference"))


#: Stops the standalone cluster: after the last test that uses it, or at the end of the session.
_CLUSTER = contextlib.ExitStack()


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """A Spark standalone cluster (a master and two one-core workers on 127.0.0.1) for the test run."""
    from spark_services import running_cluster

    yield _CLUSTER.enter_context(running_cluster(tmp_path_factory.mktemp("standalone") / "cluster"))
    _CLUSTER.close()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # Its users run one after another (above): once the last has run, stop the cluster
    # rather than keep three idle JVMs until the session ends.
    if "standalone_cluster" in item.fixturenames and (
        nextitem is None or "standalone_cluster" not in nextitem.fixturenames
    ):
        _CLUSTER.close()


@pytest.fixture(scope="session")
def shipped(tmp_path_factory):
    """What a job submitted to the cluster ships: the ``--py-files`` zip, and a Python without ``als_spark``."""
    from spark_services import Shipped, python_without_als_spark

    from als_spark.package import build_zip

    base: Path = tmp_path_factory.mktemp("shipped")
    return Shipped(python=python_without_als_spark(base), package=build_zip(base / "dist"))
