"""The one place that builds the SparkSession.

No master is hard-coded: ``spark-submit --master``, ``SPARK_REMOTE`` / ``--remote``
(Spark Connect) and Databricks all decide for themselves; a plain ``python``
run falls back to ``local[*]``. When a session already exists (a Databricks
notebook, a test fixture) it is reused as it is.
"""

from __future__ import annotations

import logging
import os
import sys

from pyspark.sql import SparkSession

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


def describe(spark: SparkSession) -> str:
    """The master URL, or ``connect`` for a Spark Connect session."""
    return "connect" if is_connect(spark) else spark.sparkContext.master


def local_cores(master: str) -> int | None:
    """Cores of a ``local``/``local[N]``/``local[*]`` master, ``None`` for a cluster master."""
    if master == "local":
        return 1
    if master.startswith("local[") and master.endswith("]"):
        inner = master[len("local[") : -1].split(",")[0]
        return os.cpu_count() or 1 if inner == "*" else int(inner) if inner.isdigit() else None
    return None


def get_spark(app_name: str = "als-spark", *, remote: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """Return the active SparkSession, or create one.

    ``remote`` (or ``SPARK_REMOTE``) selects Spark Connect. Without a master from
    spark-submit or ``spark.master``, a classic session runs on ``local[*]``.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    remote = remote or os.environ.get("SPARK_REMOTE")
    if remote:
        builder = builder.remote(remote)
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
        for key, value in {**settings, **(conf or {})}.items():
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    log.info("Spark %s session ready (%s)", spark.version, describe(spark))
    return spark
