"""session.get_spark: an existing session is reused, never silently reconfigured."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

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
    proc = subprocess.run(
        [sys.executable, "-c", _SHOW_JVM.format(n=n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected


# --- the log4j2 configuration of a local JVM that get_spark starts ------------------------------------

#: What driver_java_options writes for als_spark/log4j2.properties (this checkout's copy).
LOG4J_OPTION = f"-Dlog4j2.configurationFile=file://{Path(__file__).resolve().parents[1]}/als_spark/log4j2.properties"


def test_driver_java_options_join_the_quick_jit_and_the_log4j_configuration():
    assert session.driver_java_options(quick=True, log4j=True) == f"-XX:TieredStopAtLevel=1 {LOG4J_OPTION}"
    assert session.driver_java_options(quick=False, log4j=True) == LOG4J_OPTION
    assert session.driver_java_options(quick=True, log4j=False) == "-XX:TieredStopAtLevel=1"
    assert session.driver_java_options(quick=False, log4j=False) is None


_QUICK = "-XX:TieredStopAtLevel=1"


@pytest.mark.parametrize(
    "env, files, conf, starts_jvm, input_bytes, expected",
    [
        # nothing configured: the quick JIT for a small input, and our log4j2 configuration
        ({}, {}, {}, True, 1000, f"{_QUICK} {LOG4J_OPTION}"),
        ({}, {}, {}, True, None, LOG4J_OPTION),
        ({}, {"spark-defaults.conf": "spark.driver.memory 2g\n"}, {}, True, 1000, f"{_QUICK} {LOG4J_OPTION}"),
        # the JVM is not ours (spark-submit, an earlier session): no log4j setting (the JIT one is a no-op there)
        ({}, {}, {}, False, 1000, _QUICK),
        # log4j configured by the user: the classpath (Spark's conf dir), log4j's variable, JVM option variables
        ({}, {"log4j2.properties": "rootLogger.level = info\n"}, {}, True, 1000, _QUICK),
        ({}, {"log4j2.xml": "<Configuration/>\n"}, {}, True, None, None),
        ({"LOG4J_CONFIGURATION_FILE": "/etc/log4j2.xml"}, {}, {}, True, 1000, _QUICK),
        ({"SPARK_SUBMIT_OPTS": "-Dlog4j2.configurationFile=/etc/log4j2.xml"}, {}, {}, True, 1000, _QUICK),
        ({"JAVA_TOOL_OPTIONS": "-Dlog4j.configurationFile=/etc/log4j2.xml"}, {}, {}, True, 1000, _QUICK),
        # driver Java options set elsewhere, log4j or not: ours would replace them, so none at all
        (
            {"PYSPARK_SUBMIT_ARGS": "--driver-java-options=-Dlog4j2.configurationFile=/x pyspark-shell"},
            {},
            {},
            True,
            1000,
            None,
        ),
        (
            {},
            {"spark-defaults.conf": "spark.driver.extraJavaOptions -Dlog4j2.configurationFile=/x\n"},
            {},
            True,
            1000,
            None,
        ),
        ({}, {}, {"spark.driver.extraJavaOptions": "-Dx=1"}, True, 1000, None),
    ],
)
def test_which_driver_java_options_a_local_session_gets(
    env, files, conf, starts_jvm, input_bytes, expected, tmp_path, monkeypatch
):
    for var in (
        "PYSPARK_SUBMIT_ARGS",
        "SPARK_HOME",
        "LOG4J_CONFIGURATION_FILE",
        "SPARK_SUBMIT_OPTS",
        "JAVA_TOOL_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "_JAVA_OPTIONS",
    ):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    existing = SparkConf(loadDefaults=False).setAll(list(conf.items()))
    assert session.local_java_options(existing, input_bytes=input_bytes, starts_jvm=starts_jvm) == expected


_QUIET_JVM = (
    "import json; from als_spark.session import get_spark; "
    "s = get_spark(input_bytes=1000); "
    "args = list(s._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()); "
    # two tasks of about 2.5 MB each (distinct values: pickle would share equal objects): Spark's
    # 'task of very large size' warning must still show
    "s.sparkContext.parallelize([str(i).encode() * 300 for i in range(4000)], 2).count(); "
    "print(json.dumps([a for a in args if a.startswith(('-XX:Tiered', '-Dlog4j2'))]))"
)
#: What Spark prints at the start with its default configuration and that ours leaves out.
_START_UP_NOISE = (
    "Using Spark's default log4j profile",
    "Setting default log level",
    "To adjust logging level",
    "NativeCodeLoader",
    "resolves to a loopback address",
    "Set SPARK_LOCAL_IP",
)


@pytest.mark.slow
@pytest.mark.parametrize("user_config", [False, True])
def test_a_local_jvm_started_here_is_quiet_unless_the_user_configured_log4j(user_config, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_SUBMIT_ARGS", "SPARK_REMOTE", "MASTER")}
    env["SPARK_CONF_DIR"] = str(tmp_path)  # no spark-defaults.conf
    if user_config:  # the user's own log4j2.properties in Spark's conf directory: it alone decides
        (tmp_path / "log4j2.properties").write_text(
            "rootLogger.level = info\nrootLogger.appenderRef.stdout.ref = console\nappender.console.type = Console\n"
            "appender.console.name = console\nappender.console.target = SYSTEM_ERR\n"
            "appender.console.layout.type = PatternLayout\nappender.console.layout.pattern = USERS %p %c{1}: %m%n\n"
        )
    proc = subprocess.run(
        [sys.executable, "-c", _QUIET_JVM],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    args = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "WARN TaskSetManager: Stage 0 contains a task of very large size" in proc.stderr  # a real problem shows
    if user_config:
        assert args == ["-XX:TieredStopAtLevel=1"]
        assert "USERS WARN TaskSetManager: Stage 0 contains a task of very large size" in proc.stderr
    else:
        assert args == ["-XX:TieredStopAtLevel=1", LOG4J_OPTION]
        assert [noise for noise in _START_UP_NOISE if noise in proc.stderr] == []
        assert " INFO " not in proc.stderr
