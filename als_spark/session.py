"""The one place that builds the SparkSession.

No master is hard-coded: ``spark-submit --master``, ``SPARK_REMOTE`` / ``--remote``
(Spark Connect) and Databricks all decide for themselves; a plain ``python``
run falls back to ``local[*]``. When a session already exists (a Databricks
notebook, a test fixture) it is reused as it is: ``getOrCreate()`` would
silently ignore core settings anyway, so only runtime SQL settings are applied
to it.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

if TYPE_CHECKING:
    from pyspark import SparkConf

log = logging.getLogger(__name__)

#: Settings applied only when this module creates the session.
DEFAULT_CONF: dict[str, str] = {
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def is_connect(spark: SparkSession) -> bool:
    """True when ``spark`` is a Spark Connect client session (no ``sparkContext``)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def stop_at_exit(spark: SparkSession) -> None:
    """Stop a Spark Connect session when the interpreter exits, before objects are finalised.

    A Connect client releases each fitted model's server-side cache from the model's
    finaliser. At interpreter shutdown that RPC can block forever (seen with pyspark 4.3:
    a job that finished its work then hung at exit, holding a scheduler slot). Stopping the
    session first, from an ``atexit`` handler registered after the client's own, makes
    those finalisers no-ops; the server drops the session's models with the session.
    """
    def stop() -> None:
        try:
            spark.stop()
        except Exception as exc:  # noqa: BLE001 - best effort at exit; the server times the session out
            log.debug("stopping the Spark Connect session at exit failed: %s", exc)

    atexit.register(stop)


def describe(spark: SparkSession) -> str:
    """The master URL, or ``connect`` for a Spark Connect session."""
    return "connect" if is_connect(spark) else spark.sparkContext.master


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def local_driver_memory(physical_bytes: int | None) -> str | None:
    """Heap for a local-mode driver: half the machine's memory in whole GiB, between 1g and 16g."""
    if not physical_bytes:
        return None
    gib = physical_bytes // 2 // 2**30
    return f"{min(max(gib, 1), 16)}g"


def local_cores(master: str) -> int | None:
    """Cores of a ``local``/``local[N]``/``local[*]`` master, ``None`` for a cluster master."""
    if master == "local":
        return 1
    if master.startswith("local[") and master.endswith("]"):
        inner = master[len("local[") : -1].split(",")[0]
        return os.cpu_count() or 1 if inner == "*" else int(inner) if inner.isdigit() else None
    return None


#: Inputs below this size get a quick-starting driver JVM in local mode (see :func:`quick_jit`).
QUICK_JIT_MAX_BYTES = 16 * 2**20
#: The JVM option that stops the JIT at its first (C1) tier.
QUICK_JIT_OPTION = "-XX:TieredStopAtLevel=1"


def quick_jit(input_bytes: int | None) -> bool:
    """Whether a local run over ``input_bytes`` of ratings should stop the JIT at C1.

    A run over a small input is Spark's fixed cost: a few hundred short jobs in a fresh JVM,
    while the optimising (C2) JIT compiles Spark's own code on the same cores. Stopping at C1
    compiles far less and sooner; measured on ML-100k (2 MB), ``evaluate`` took 0.82x the
    time (median 35.5 s against 43.2 s, 2 cores); at 1M ratings (20 MB) it made no difference
    and at 10M (228 MB) the run took 1.11x as long. Long runs over big inputs want C2's faster
    code, so from :data:`QUICK_JIT_MAX_BYTES` on (or when the size is unknown) nothing changes.
    """
    return input_bytes is not None and 0 <= input_bytes < QUICK_JIT_MAX_BYTES


def _spark_defaults_set(key: str) -> bool:
    """Whether a ``spark-defaults.conf`` that spark-submit would read sets ``key``."""
    conf_dir = os.environ.get("SPARK_CONF_DIR") or (
        os.path.join(os.environ["SPARK_HOME"], "conf") if os.environ.get("SPARK_HOME") else None
    )
    if not conf_dir:
        return False
    try:
        with open(os.path.join(conf_dir, "spark-defaults.conf"), encoding="utf-8") as fh:
            return any(line.split(None, 1)[0] == key for line in fh if line.strip() and not line.lstrip().startswith("#"))
    except OSError:
        return False


def get_spark(
    app_name: str = "als-spark",
    *,
    remote: str | None = None,
    conf: dict[str, str] | None = None,
    input_bytes: int | None = None,
) -> SparkSession:
    """Return the active SparkSession, or create one.

    ``remote`` (or ``SPARK_REMOTE``) selects Spark Connect. Without a master from
    spark-submit or ``spark.master``, a classic session runs on ``local[*]``.
    ``input_bytes``, the size of the input when known, lets a local session that this
    call starts pick a quick-starting JVM for small inputs (:func:`quick_jit`), unless
    driver Java options are set elsewhere.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        _apply_runtime_conf(active, conf or {})
        return active
    builder = SparkSession.builder.appName(app_name)
    remote = remote or os.environ.get("SPARK_REMOTE")
    if remote:
        builder = builder.remote(remote)
        for key, value in (conf or {}).items():
            builder = builder.config(key, value)
    else:
        from pyspark import SparkConf

        # Under spark-submit the JVM already exists and SparkConf() sees its --master.
        existing = SparkConf()
        master = existing.get("spark.master", None) or os.environ.get("MASTER")
        if master is None:
            master = "local[*]"
            builder = builder.master(master)
            # Local Python workers run this interpreter (with our dependencies), not whatever
            # `python3` is first on PATH. On a cluster, the cluster's settings decide.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        settings = dict(DEFAULT_CONF)
        cores = local_cores(master)
        if cores and not existing.contains("spark.sql.shuffle.partitions"):
            # 200 shuffle partitions on a laptop turn every groupBy into hundreds of
            # tiny tasks (measured: ML-100k pipeline 160 s at 200, 30 s at 4 on 2 cores).
            settings["spark.sql.shuffle.partitions"] = str(2 * cores)
        memory = local_driver_memory(_physical_memory())
        if cores and memory and not existing.contains("spark.driver.memory"):
            if "--driver-memory" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
                # In local mode the driver JVM runs every task; Spark's 1g default runs out
                # of heap on millions of ratings. Only takes effect when this process starts
                # the JVM (not under spark-submit, where --driver-memory decides).
                settings["spark.driver.memory"] = memory
        if cores and quick_jit(input_bytes) and _java_options_free(existing):
            settings["spark.driver.extraJavaOptions"] = QUICK_JIT_OPTION
        for key, value in {**settings, **(conf or {})}.items():
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if is_connect(spark):
        stop_at_exit(spark)
    log.info("Spark %s session ready (%s)", spark.version, describe(spark))
    return spark


def _java_options_free(existing: SparkConf) -> bool:
    """No driver Java options from spark-submit, ``PYSPARK_SUBMIT_ARGS`` or spark-defaults.conf."""
    key = "spark.driver.extraJavaOptions"
    submit_args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    return not (existing.contains(key) or "--driver-java-options" in submit_args or key in submit_args
                or _spark_defaults_set(key))


def jvm_quick_jit(spark: SparkSession) -> bool | None:
    """Whether the driver JVM runs with :data:`QUICK_JIT_OPTION` (``None`` when that cannot be asked:
    Spark Connect, or a platform that blocks access to the JVM)."""
    if is_connect(spark):
        return None
    try:
        bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
        return QUICK_JIT_OPTION in list(bean.getInputArguments())
    except Exception as exc:  # noqa: BLE001 - provenance only; never fail a run over it
        log.debug("cannot read the driver JVM's options: %s", exc)
        return None


def _apply_runtime_conf(spark: SparkSession, conf: dict[str, str]) -> None:
    """Set what can still be set on a running session; warn about what cannot."""
    for key, value in conf.items():
        if spark.conf.isModifiable(key):
            spark.conf.set(key, value)
        else:
            log.warning("the session already exists: %s=%s is ignored (set it where the session is created)", key, value)
