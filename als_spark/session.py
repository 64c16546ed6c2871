"""The one place that builds the SparkSession.

No master is hard-coded: ``spark-submit --master``, ``SPARK_REMOTE`` / ``--remote``
(Spark Connect) and Databricks all decide for themselves; a plain ``python``
run falls back to ``local[*]``. When a session already exists (a Databricks
notebook, a test fixture) it is reused as it is: ``getOrCreate()`` would
silently ignore core settings anyway, so only runtime SQL settings are applied
to it. When this process starts the JVM itself, Java is checked first
(:mod:`als_spark.java`) and, unless log4j is configured elsewhere, Spark logs at
WARN without its start-up noise (``als_spark/log4j2.properties``).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from als_spark.java import ensure_java

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
    return "connect" if is_connect(spark) else str(spark.sparkContext.master)


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


#: The log4j2 configuration of a local driver JVM that :func:`get_spark` starts (see the file).
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
#: The files log4j2 looks for on the classpath, where Spark's launcher puts its conf directory.
_LOG4J2_FILES = tuple(
    f"log4j2{test}.{ext}" for test in ("-test", "") for ext in ("properties", "yaml", "yml", "json", "jsn", "xml")
)
#: Environment variables whose JVM options reach the driver JVM (or log4j itself).
_JVM_OPTION_VARIABLES = (
    "PYSPARK_SUBMIT_ARGS",
    "SPARK_SUBMIT_OPTS",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
)


def _spark_conf_dir() -> str:
    """The conf directory Spark's launcher reads: SPARK_CONF_DIR, else SPARK_HOME/conf, else pyspark's own conf/."""
    if os.environ.get("SPARK_CONF_DIR"):
        return os.environ["SPARK_CONF_DIR"]
    if os.environ.get("SPARK_HOME"):
        return os.path.join(os.environ["SPARK_HOME"], "conf")
    import pyspark

    return os.path.join(os.path.dirname(pyspark.__file__), "conf")


def _spark_defaults_set(key: str) -> bool:
    """Whether a ``spark-defaults.conf`` that spark-submit would read sets ``key``."""
    conf_dir = _spark_conf_dir()
    try:
        with open(os.path.join(conf_dir, "spark-defaults.conf"), encoding="utf-8") as fh:
            return any(
                line.split(None, 1)[0] == key for line in fh if line.strip() and not line.lstrip().startswith("#")
            )
    except OSError:
        return False


def user_log4j_config() -> str | None:
    """Where log4j is configured for a driver JVM started here, outside als-spark, or ``None``.

    A log4j2 file in Spark's conf directory (on the JVM's classpath), ``LOG4J_CONFIGURATION_FILE``,
    or a log4j option in a variable that passes JVM options (``PYSPARK_SUBMIT_ARGS``,
    ``SPARK_SUBMIT_OPTS``, ``JAVA_TOOL_OPTIONS`` ...). Driver Java options set elsewhere, log4j
    or not, make :func:`local_java_options` add none at all.
    """
    conf_dir = _spark_conf_dir()
    for name in _LOG4J2_FILES:
        path = os.path.join(conf_dir, name)
        if os.path.isfile(path):
            return path
    if os.environ.get("LOG4J_CONFIGURATION_FILE"):
        return "LOG4J_CONFIGURATION_FILE"
    return next((var for var in _JVM_OPTION_VARIABLES if "log4j" in os.environ.get(var, "").lower()), None)


def driver_java_options(*, quick: bool, log4j: bool) -> str | None:
    """``spark.driver.extraJavaOptions`` for a local driver JVM started here: the quick JIT
    (:data:`QUICK_JIT_OPTION`) and/or :data:`LOG4J_CONFIG`, space-separated, or ``None`` for neither."""
    options = [QUICK_JIT_OPTION] if quick else []
    if log4j:
        # a file: URI has no spaces to quote in Spark's option parser (a path may)
        options.append(f"-Dlog4j2.configurationFile={LOG4J_CONFIG.resolve().as_uri()}")
    return " ".join(options) or None


def local_java_options(existing: SparkConf, *, input_bytes: int | None, starts_jvm: bool) -> str | None:
    """The driver Java options :func:`get_spark` gives a local session, or ``None`` to set none.

    ``None`` when driver Java options are set elsewhere (spark-submit, ``PYSPARK_SUBMIT_ARGS``,
    spark-defaults.conf: ours would replace them). Otherwise the quick JIT for a small input,
    and :data:`LOG4J_CONFIG` when this process starts the JVM (``starts_jvm``), log4j is not
    configured elsewhere (:func:`user_log4j_config`) and the file is a real file (not inside
    a ``--py-files`` zip).
    """
    if not _java_options_free(existing):
        return None
    quiet = starts_jvm and LOG4J_CONFIG.is_file() and user_log4j_config() is None
    return driver_java_options(quick=quick_jit(input_bytes), log4j=quiet)


def launches_jvm() -> bool:
    """Whether creating a classic session now starts the JVM in this process.

    Not under spark-submit (``PYSPARK_GATEWAY_PORT``: the JVM started this process) and not
    after an earlier session (pyspark keeps its gateway, and that JVM, after ``stop()``).
    """
    from pyspark import SparkContext

    return "PYSPARK_GATEWAY_PORT" not in os.environ and SparkContext._gateway is None


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
    driver Java options are set elsewhere. When this call starts a local JVM itself, it first
    makes sure a usable Java is there (:func:`als_spark.java.ensure_java`, which raises
    :class:`~als_spark.errors.JavaNotFoundError`) and, unless the user configured log4j,
    gives it :data:`LOG4J_CONFIG` (Spark at WARN, without start-up noise).
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
        # In local mode the driver JVM runs every task; Spark's 1g default runs out of heap on
        # millions of ratings. Only takes effect when this process starts the JVM (not under
        # spark-submit, where --driver-memory decides).
        submit_args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
        if cores and memory and not existing.contains("spark.driver.memory") and "--driver-memory" not in submit_args:
            settings["spark.driver.memory"] = memory
        starts_jvm = launches_jvm()
        options = local_java_options(existing, input_bytes=input_bytes, starts_jvm=starts_jvm) if cores else None
        if options:
            settings["spark.driver.extraJavaOptions"] = options
        for key, value in {**settings, **(conf or {})}.items():
            builder = builder.config(key, value)
        if starts_jvm:
            ensure_java()
    spark = builder.getOrCreate()
    if is_connect(spark):
        stop_at_exit(spark)
    log.info("Spark %s session ready (%s)", spark.version, describe(spark))
    return spark


def _java_options_free(existing: SparkConf) -> bool:
    """No driver Java options from spark-submit, ``PYSPARK_SUBMIT_ARGS`` or spark-defaults.conf."""
    key = "spark.driver.extraJavaOptions"
    submit_args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    return not (
        existing.contains(key)
        or "--driver-java-options" in submit_args
        or key in submit_args
        or _spark_defaults_set(key)
    )


def jvm_quick_jit(spark: SparkSession) -> bool | None:
    """Whether the driver JVM runs with :data:`QUICK_JIT_OPTION` (``None`` when that cannot be asked:
    Spark Connect, or a platform that blocks access to the JVM)."""
    if is_connect(spark):
        return None
    try:
        jvm = spark.sparkContext._jvm  # noqa: SLF001 - the driver JVM's own arguments
        assert jvm is not None, "a classic session has a JVM gateway"
        bean = jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
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
            log.warning(
                "the session already exists: %s=%s is ignored (set it where the session is created)", key, value
            )
