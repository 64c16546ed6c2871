"""What ``run.json`` records about the environment: versions, BLAS, input checksum."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import SparkSession

import als_spark
from als_spark.errors import note_stage

log = logging.getLogger(__name__)


def _jvm_call(spark: SparkSession, cls: str, method: str, *args: str) -> str | None:
    """Call a static JVM method through SQL ``java_method`` (works over Spark Connect too)."""
    quoted = ", ".join(f"'{a}'" for a in (cls, method, *args))
    try:
        row = spark.sql(f"SELECT java_method({quoted}) AS v").first()
        return None if row is None else row["v"]
    except Exception as exc:  # noqa: BLE001 - informational only; never fail a run over it
        log.debug("java_method(%s) failed: %s", quoted, exc)
        return None


def blas_implementation(spark: SparkSession) -> str:
    """Which BLAS Spark's ML linear algebra loaded: NativeBLAS (e.g. OpenBLAS), VectorBLAS or JavaBLAS."""
    value = _jvm_call(spark, "dev.ludovic.netlib.blas.BLAS", "getInstance")
    return value.split("@")[0].rsplit(".", 1)[-1] if value else "unknown"


def versions(spark: SparkSession) -> dict[str, Any]:
    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "als_spark": als_spark.__version__,
        "spark": spark.version,
        "java": _jvm_call(spark, "java.lang.System", "getProperty", "java.version"),
        "python": platform.python_version(),
        "pyspark": dist("pyspark"),
        "pandas": dist("pandas"),
        "pyarrow": dist("pyarrow"),
        "numpy": dist("numpy"),
        "blas": blas_implementation(spark),
    }


def sha256_of(path: str) -> str | None:
    """SHA-256 of a local file, or ``None`` when it is not one (a directory, glob or remote URI)."""
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Timer:
    """Wall-clock seconds per named stage, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("stage %s ...", name)
        try:
            yield
        except BaseException as exc:
            note_stage(exc, name)
            raise
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)
            log.info("stage %s done in %.1f s", name, self.seconds[name])


def doctor(*, remote: str | None = None) -> list[str]:
    """Print what the pipeline runs on and return the problems found (empty when all is well).

    For a local run it checks Java first, without starting a JVM (:mod:`als_spark.java`), and
    returns that problem alone when there is no usable Java; then it gets the session
    (:func:`als_spark.session.get_spark`) and reports what Spark itself says.
    """
    from als_spark import java as jv
    from als_spark.session import get_spark, launches_jvm

    problems: list[str] = []
    print("als-spark doctor")
    runtime = None
    if not (remote or os.environ.get("SPARK_REMOTE")) and launches_jvm():
        spark_version = jv.spark_version()
        looked = jv.search_java(spark_version)
        runtime = looked[-1].runtime
        print(f"  {'java':<10} " + (runtime.describe() if runtime else "none usable"))
        for candidate in looked if runtime is None else [c for c in looked[:-1] if c.java]:
            print(f"  {'':<10} not used: {candidate.describe()}")
        if runtime is None:
            problems.append(jv.no_java_message(looked, spark_version))
            print("  problems found")
            return problems
    info = versions(get_spark(remote=remote))
    for key, value in info.items():
        if not (key == "java" and runtime is not None and value == runtime.version):  # printed above
            print(f"  {key:<10} {value}")
    java = info.get("java") or ""
    if java and int(java.split(".")[0]) < 17 and info["spark"].startswith("4."):
        problems.append(f"Spark 4 needs Java 17 or newer; this JVM is {java}")
    pandas = info.get("pandas") or ""
    if pandas.split(".")[0] not in ("1", "2"):
        problems.append(f"pandas {pandas} is not supported by pyspark; install pandas<3")
    pyarrow = info.get("pyarrow") or "0"
    if int(pyarrow.split(".")[0]) < 14:
        problems.append(f"pyarrow {pyarrow} is too old; install pyarrow>=14")
    if info.get("blas") != "JNIBLAS":
        print(
            "  note: Spark uses a Java BLAS; a native one makes large-rank ALS several times faster. "
            "On Debian/Ubuntu: apt-get install libopenblas0 (Spark then loads libblas.so.3)."
        )
    print("  ok" if not problems else "  problems found")
    return problems
