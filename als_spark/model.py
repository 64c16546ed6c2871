"""Fit ``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` safely, and read its factors.

Two things a tutorial skips are handled here:

* **Checkpointing.** Spark ALS checkpoints its factor RDDs every
  ``checkpointInterval`` iterations *only if a checkpoint directory is set*;
  without one the lineage grows with every iteration and long runs die with
  ``StackOverflowError``. :func:`checkpoint_dir` always provides one.
* **Deterministic input.** The interactions are cached and materialised before
  the fit, so a recomputed partition is identical to the first one.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Iterator

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from als_spark import schema as S
from als_spark.config import ALSConfig
from als_spark.errors import ConfigError
from als_spark.lock import process_alive
from als_spark.session import is_connect

log = logging.getLogger(__name__)


#: Spark Connect parallelism measured once per session id (it costs a small job).
_CONNECT_PARALLELISM: dict[str, int] = {}


def _conf(spark: SparkSession, key: str) -> str | None:
    """A configuration value, or ``None`` when unset or not readable (Databricks serverless refuses some keys)."""
    try:
        return spark.conf.get(key, None)
    except Exception as exc:  # noqa: BLE001 - an unreadable setting is an unset one here
        log.debug("cannot read %s: %s", key, exc)
        return None


def parallelism(spark: SparkSession) -> int:
    """The number of tasks the cluster runs at once (at least 1).

    Over Spark Connect there is no ``sparkContext``: ``spark.default.parallelism`` is
    used when set, else the number of partitions ``spark.range`` gets (Spark gives a
    leaf scan the default parallelism), measured once per session.
    """
    if not is_connect(spark):
        return max(1, spark.sparkContext.defaultParallelism)
    value = _conf(spark, "spark.default.parallelism")
    if value:
        return max(1, int(value))
    key = str(getattr(spark, "session_id", id(spark)))
    if key not in _CONNECT_PARALLELISM:
        try:
            row = spark.range(0, 1 << 16).select(F.spark_partition_id().alias("p")).agg(F.max("p")).first()
            assert row is not None  # a global aggregate has one row
            _CONNECT_PARALLELISM[key] = max(1, int(row[0]) + 1)
        except Exception as exc:  # noqa: BLE001 - a guess is better than failing the run
            log.warning("could not measure the Spark Connect parallelism (%s); assuming 2", exc)
            _CONNECT_PARALLELISM[key] = 2
    return _CONNECT_PARALLELISM[key]


#: Temporary checkpoint directories are ``<tmp>/als-spark-checkpoints-<driver pid>-<random>``.
TEMPORARY_PREFIX = "als-spark-checkpoints-"
#: A temporary checkpoint directory untouched this long whose driver is gone is abandoned.
ABANDONED_AFTER_SECONDS = 3600.0
#: The temporary checkpoint directories this process made, and those it removed again.
_MADE_TEMPORARIES: set[str] = set()
_REMOVED_TEMPORARIES: set[str] = set()


def _last_change(path: str) -> float:
    """The newest modification time of ``path`` and everything under it."""
    newest = os.lstat(path).st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def remove_abandoned_checkpoints(
    directory: str | None = None, *, idle_seconds: float = ABANDONED_AFTER_SECONDS
) -> list[str]:
    """Remove the temporary checkpoint directories of drivers that were killed; return them.

    A run removes its temporary checkpoint directory when it ends, but a driver killed
    with ``SIGKILL`` (or a crashed machine) cannot. One is removed here when the process
    named in it no longer runs (or it names none: made by an older version) and nothing
    in it changed for ``idle_seconds``, so a live run is never touched, even one whose
    process this machine cannot see (another container sharing ``/tmp``).
    """
    removed = []
    now = time.time()
    for path in glob.glob(os.path.join(directory or tempfile.gettempdir(), TEMPORARY_PREFIX + "*")):
        owner = re.match(r"(\d+)-", os.path.basename(path)[len(TEMPORARY_PREFIX) :])
        try:
            if (owner and process_alive(int(owner.group(1)))) or now - _last_change(path) < idle_seconds:
                continue
        except OSError:  # removed meanwhile, or not ours to read
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            log.info("removed %s, the checkpoint directory of a run that was killed", path)
            removed.append(path)
    return removed


def _in(checkpoint: str, directories: set[str]) -> bool:
    return any(checkpoint.removeprefix("file:").startswith(t + os.sep) for t in directories)


def _removed_temporary(checkpoint: str) -> bool:
    """Whether Spark's checkpoint directory lies in a temporary one :func:`checkpoint_dir` has removed."""
    return _in(checkpoint, _REMOVED_TEMPORARIES)


@contextlib.contextmanager
def checkpoint_dir(spark: SparkSession, path: str | None = None) -> Iterator[str | None]:
    """Make sure ALS has a checkpoint directory while the block runs; yield it.

    With ``path``, checkpoint there. Without, keep a directory the session
    already has (a notebook may have set one), or else create a temporary local
    directory and remove it on exit (and those of killed runs, see
    :func:`remove_abandoned_checkpoints`); on a multi-node cluster set
    ``als.checkpoint_dir`` to shared storage instead. Over Spark Connect the
    server's ``spark.checkpoint.dir`` is used (a client cannot set it; it is read
    through ``spark.conf``, never ``sparkContext``).
    """
    if is_connect(spark):
        configured = _conf(spark, "spark.checkpoint.dir")
        if path and path != configured:
            log.warning(
                "als.checkpoint_dir=%s is ignored over Spark Connect: the server checkpoints to its "
                "spark.checkpoint.dir (%s)",
                path,
                configured,
            )
        if not configured:
            log.warning(
                "Spark Connect server has no spark.checkpoint.dir: ALS will not checkpoint and "
                "long runs may fail with StackOverflowError. Start the server with --conf spark.checkpoint.dir=..."
            )
        yield configured
        return
    sc = spark.sparkContext
    existing = sc.getCheckpointDir()
    # A temporary directory this function made for another block is never reused: it is removed
    # when that block ends (a fitted Recommender keeps its own until it is closed), and a removed
    # one would be recreated by Spark with nothing left to remove it.
    if path is None and existing and not _in(existing, _MADE_TEMPORARIES):
        yield existing
        return
    temporary = None
    if path is None:
        remove_abandoned_checkpoints()
        temporary = tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-")
        _MADE_TEMPORARIES.add(temporary)
        if not (sc.master or "").startswith("local"):
            log.warning(
                "checkpointing to %s on the driver's local disk; on a multi-node cluster set "
                "als.checkpoint_dir to shared storage (HDFS, S3, DBFS)",
                temporary,
            )
    target = path or temporary
    assert target is not None
    sc.setCheckpointDir(target)  # Spark adds a unique subdirectory
    try:
        yield sc.getCheckpointDir()
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
            _REMOVED_TEMPORARIES.add(temporary)
            # Spark cannot unset a checkpoint directory: point it back at the one an enclosing block
            # (or a fitted Recommender) still uses, under a new subdirectory; else it keeps pointing
            # at the removed one, which model.fit refuses and the next block replaces.
            if existing and not _removed_temporary(existing):
                sc.setCheckpointDir(posixpath.dirname(existing.rstrip("/")))


def build_als(cfg: ALSConfig, *, num_blocks: int) -> ALS:
    """The ALS estimator for ``user_id, item_id, confidence`` interactions."""
    return ALS(
        rank=cfg.rank,
        maxIter=cfg.max_iter,
        regParam=cfg.reg_param,
        alpha=cfg.alpha,
        seed=cfg.seed,
        implicitPrefs=True,
        numUserBlocks=num_blocks,
        numItemBlocks=num_blocks,
        checkpointInterval=cfg.checkpoint_interval,
        userCol=S.USER_ID,
        itemCol=S.ITEM_ID,
        ratingCol=S.CONFIDENCE,
        coldStartStrategy="drop",
    )


def fit(interactions: DataFrame, cfg: ALSConfig, *, num_blocks: int | None = None) -> ALSModel:
    """Fit implicit ALS on cached ``interactions``. Call inside :func:`checkpoint_dir`.

    Raises :class:`~als_spark.errors.ConfigError` when the fit would checkpoint
    (``max_iter > checkpoint_interval``) but the session has no checkpoint
    directory, or only one a :func:`checkpoint_dir` block has already removed:
    without checkpoints the factors' lineage grows with every iteration, and
    the fit, or the first use of its factors, dies with ``StackOverflowError``
    (ML-100k at rank 64 and 15 iterations already does). Over Spark Connect the
    server's setting cannot be checked here (:func:`checkpoint_dir` warns).
    """
    spark = interactions.sparkSession
    if cfg.max_iter > cfg.checkpoint_interval and not is_connect(spark):
        current = spark.sparkContext.getCheckpointDir()
        if not current or _removed_temporary(current):
            raise ConfigError(
                f"ALS with max_iter={cfg.max_iter} checkpoints every {cfg.checkpoint_interval} iterations, but the "
                "Spark session has no checkpoint directory"
                + (f" (its last one, {current}, was removed when its block ended)" if current else "")
                + ": call model.fit inside `with model.checkpoint_dir(spark):` and use the factors inside that "
                "block, or set one with spark.sparkContext.setCheckpointDir(...). Without checkpoints the fit "
                "can fail with StackOverflowError."
            )
    blocks = cfg.num_blocks or num_blocks or parallelism(spark)
    log.info(
        "fitting ALS rank=%d max_iter=%d reg_param=%g alpha=%g seed=%d blocks=%d",
        cfg.rank,
        cfg.max_iter,
        cfg.reg_param,
        cfg.alpha,
        cfg.seed,
        blocks,
    )
    return build_als(cfg, num_blocks=blocks).fit(interactions)


def factors(model: ALSModel) -> tuple[DataFrame, DataFrame]:
    """``(user_factors, item_factors)``, each ``id, features`` with the input ids."""

    def table(df: DataFrame) -> DataFrame:
        return df.select(F.col("id").cast("int").alias(S.ID), F.col("features").cast("array<float>").alias(S.FEATURES))

    return table(model.userFactors), table(model.itemFactors)
