"""session.get_spark: an existing session is reused, never silently reconfigured."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from pyspark import SparkConf

from als_spark import session
from als_spark.session import get_spark, is_connect, local_cores, local_driver_memory


def test_an_existing_session_is_reused_with_runtime_settings_applied_and_core_ones_reported(spark, caplog):
    # getOrCreate() on a running session keeps its core settings whatever the builder says;
    # get_spark applies what can still change and says what it could not.
    before = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        with caplog.at_level(logging.WARNING, logger="als_spark.session"):
            got = get_spark(conf={"spark.sql.shuffle.partitions": "3", "spark.executor.memory": "9g"})
        assert got is spark
        assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    assert "spark.executor.memory=9g is ignored" in caplog.text
    assert "shuffle.partitions" not in caplog.text
    assert not is_connect(spark)


def test_local_cores_of_a_master():
    assert (local_cores("local"), local_cores("local[3]"), local_cores("local[2,4]")) == (1, 3, 2)
    assert local_cores("local[*]") >= 1
    assert local_cores("spark://127.0.0.1:7077") is None and local_cores("yarn") is None


def test_local_driver_memory_is_half_the_machine_within_1g_and_16g():
    gib = 2**30
    assert local_driver_memory(int(23.5 * gib)) == "11g"  # this 24 GB development machine
    assert local_driver_memory(8 * gib) == "4g"
    assert local_driver_memory(1 * gib) == "1g"  # never below Spark's own default
    assert local_driver_memory(128 * gib) == "16g"
    assert local_driver_memory(None) is None


def test_quick_jit_only_for_inputs_known_to_be_below_16_mib():
    mib = 2**20
    assert [session.quick_jit(n) for n in (0, 1_979_173, 16 * mib - 1)] == [True, True, True]
    assert [session.quick_jit(n) for n in (16 * mib, 20_000_000, None)] == [False, False, False]


@pytest.mark.parametrize(
    "submit_args, defaults, conf, free",
    [
        ("", None, {}, True),
        ("--driver-java-options=-Dx=1 pyspark-shell", None, {}, False),
        ("--conf spark.driver.extraJavaOptions=-Dx=1 pyspark-shell", None, {}, False),
        ("", "spark.driver.extraJavaOptions  -Dx=1\n", {}, False),
        ("", "# spark.driver.extraJavaOptions  -Dx=1\nspark.driver.memory 2g\n", {}, True),
        ("", None, {"spark.driver.extraJavaOptions": "-Dx=1"}, False),
    ],
)
def test_java_options_set_anywhere_else_are_left_alone(submit_args, defaults, conf, free, tmp_path, monkeypatch):
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", submit_args)
    monkeypatch.delenv("SPARK_HOME", raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    if defaults is not None:
        (tmp_path / "spark-defaults.conf").write_text(defaults)
    existing = SparkConf(loadDefaults=False).setAll(list(conf.items()))
    assert session._java_options_free(existing) is free


_SHOW_JVM = (
    "import json; from als_spark.session import get_spark, jvm_quick_jit; "
    "s = get_spark(input_bytes={n}); "
    "args = list(s._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()); "
    "print(json.dumps([jvm_quick_jit(s), [a for a in args if a.startswith('-XX:Tiered') or a == '-Dx=1']]))"
)


@pytest.mark.parametrize(
    "n, submit_args, expected",
    [
        (1000, None, [True, ["-XX:TieredStopAtLevel=1"]]),  # the JVM really runs with it
        (1000, "--driver-java-options=-Dx=1 pyspark-shell", [False, ["-Dx=1"]]),  # the user's options win
        (None, None, [False, []]),  # size unknown: the JVM's defaults
    ],
)
def test_a_local_session_started_for_a_small_input_runs_a_quick_jit_jvm(n, submit_args, expected, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_SUBMIT_ARGS", "SPARK_REMOTE", "MASTER")}
    if submit_args:
        env["PYSPARK_SUBMIT_ARGS"] = submit_args
    env["SPARK_CONF_DIR"] = str(tmp_path)  # no spark-defaults.conf
    proc = subprocess.run([sys.executable, "-c", _SHOW_JVM.format(n=n)], env=env, capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected
