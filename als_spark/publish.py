"""Write the pipeline's tables (Parquet) and files, and publish them all together.

Every table goes through :func:`conform`, a ``select`` + ``cast`` to the schema
in :mod:`als_spark.schema`, so readers get exactly the documented contract.

**Publish protocol** (:class:`Publisher`). A run never writes into the tables
readers see. It stages every table and file of the run; when all are written,
:meth:`Publisher.check` checks each table (Spark's ``_SUCCESS`` marker, readable
schema, row count), ``run.json`` is staged last, and :meth:`Publisher.commit`
publishes them. How depends on the storage:

- **Local file systems with symbolic links** (the default): the run writes into
  its own snapshot directory and one atomic link switch publishes every table
  at once (:mod:`als_spark.snapshots`). ``DIR/<table>`` stays the path readers open.
- **Local or FUSE file systems without links** (``/dbfs``, ``/Volumes``): the run
  stages into ``DIR/.staging-<run id>/`` and moves each table into place; an
  existing one is swapped with its replacement in one ``renameat2(RENAME_EXCHANGE)``
  (where that is not available, the old table is renamed aside first: a
  millisecond gap). Each table is whole, but tables switch one after another.
- **Remote URIs** (``s3://``, ``abfss://``, ``hdfs://``, ``dbfs:``): the same
  staging and moves through Hadoop's ``FileSystem`` on a classic session; over
  Spark Connect (no JVM access) tables are overwritten in place and a warning says so.

A failure or kill before the commit leaves the published outputs untouched; the
next run removes what the dead one staged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import uuid
from collections.abc import Mapping
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from als_spark import snapshots
from als_spark.lock import LOCK_NAME, WriterLock
from als_spark.paths import local_path
from als_spark.session import is_connect
from als_spark.storage import HadoopFS, LocalFS

__all__ = ["Publisher", "conform", "local_path", "read_table", "snapshot", "table_path"]

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


def conform(df: DataFrame, schema: StructType, extra: tuple[str, ...] = ()) -> DataFrame:
    """Select the schema's columns in order, cast to its types, then any ``extra`` columns."""
    cols = [F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields]
    return df.select(*cols, *extra)


def table_path(output: str, name: str) -> str:
    return posixpath.join(output.rstrip("/"), name)


def read_table(spark: SparkSession, output: str, name: str) -> DataFrame:
    return spark.read.parquet(table_path(output, name))


def snapshot(output: str) -> str:
    """The directory of the run published under ``output`` now: read several tables from it to read
    them all from one run (:func:`als_spark.snapshots.snapshot`). ``output`` itself where it has no
    snapshots (remote storage, a file system without links, nothing published yet)."""
    local = local_path(output)
    return snapshots.snapshot(os.path.abspath(local)) if local is not None else output


class Publisher:
    """Stage a run's tables and files, then publish them together (see the module docstring)."""

    def __init__(self, spark: SparkSession, output: str, run_id: str, *, drop: tuple[str, ...] = ()) -> None:
        """``drop``: names this run may write but, when it does not, must not keep from the run before
        (an ``explanations`` table a run without ``recommend.explain`` would leave stale)."""
        self.spark, self.output, self.run_id, self.drop = spark, output.rstrip("/"), run_id, drop
        local = local_path(self.output)
        self._fs: LocalFS | HadoopFS | None
        if local is not None:
            # Spark resolves a relative path against the JVM's working directory, Python against its
            # own: they differ once a notebook changes directory, so both get the absolute path.
            local = os.path.abspath(local)
            self._fs, self._root = LocalFS(), local
        elif not is_connect(spark):
            self._fs, self._root = HadoopFS(spark, self.output), self.output
        else:
            log.warning("Spark Connect with a remote output %s: tables are overwritten in place, not staged", output)
            self._fs, self._root = None, self.output
        self.staged: dict[str, StructType | None] = {}
        #: Held from here until :meth:`release`: no other run writes this output meanwhile (:mod:`als_spark.lock`).
        self.lock = None if self._fs is None else WriterLock(self._fs, self._fs_path(LOCK_NAME), run_id, self.output)
        #: An output directory this run made only to hold its lock is removed again if nothing is published.
        self._made_root = local is not None and not os.path.exists(local)
        if self.lock is not None:
            self.lock.acquire()
        #: Whether all tables switch together (:mod:`als_spark.snapshots`): a local file system with links.
        self.linked = local is not None and snapshots.supported(local)
        #: Where the run writes its tables and files until they are published.
        self.staging = self.output
        if self.linked:
            assert local is not None
            self.staging = snapshots.run_dir(local, run_id)
        elif self._fs is not None:
            self.staging = self._fs_path(STAGING_PREFIX + run_id)

    def _fs_path(self, *parts: str) -> str:
        return posixpath.join(self._root, *parts)

    def path(self, name: str) -> str:
        """Where to write table ``name`` now (the staging directory)."""
        self.staged.setdefault(name, None)
        return table_path(self.staging, name)

    def write_table(self, df: DataFrame, name: str) -> str:
        """Write ``df`` as Parquet into staging; returns the path it will be published at."""
        df.write.mode("overwrite").parquet(self.path(name))
        self.staged[name] = df.schema
        log.info("staged %s", name)
        return table_path(self.output, name)

    def stage_file(self, name: str, data: str | bytes) -> str | None:
        """Stage a small file (text, or bytes such as a PNG), published with the tables; returns its published path.

        Over Spark Connect with a remote output (nothing is staged there) a text file is written in
        place and a binary one is skipped with a warning (``None``).
        """
        if self._fs is None:
            if isinstance(data, bytes):
                log.warning("%s is not written: Spark Connect cannot write a binary file to %s", name, self.output)
                return None
            self.spark.createDataFrame([(data,)], "value string").coalesce(1).write.mode("overwrite").text(
                table_path(self.output, name)
            )
            return table_path(self.output, name)
        self.staged[name] = None
        self._fs.write(posixpath.join(self.staging, name), _as_bytes(data))
        return table_path(self.output, name)

    def _check(self, name: str) -> int | None:
        """Row count of a staged table after checking it is complete and readable."""
        schema = self.staged[name]
        if schema is None:  # not a Parquet table (the saved model, a text file): its writer committed it
            return None
        staged_dir = table_path(self.staging, name)
        marker = posixpath.join(self.staging, name, "_SUCCESS")
        if self._fs is not None and not self._fs.exists(marker):
            raise OSError(f"staged table {name} is incomplete (no _SUCCESS marker in {staged_dir})")
        local = local_path(staged_dir)
        if local is not None:
            # Footers only, no Spark job: schema and row count straight from the Parquet files.
            import pyarrow.parquet as pq

            files = [os.path.join(local, f) for f in os.listdir(local) if f.endswith(".parquet")]
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
            names = pq.ParquetFile(files[0]).schema_arrow.names if files else [f.name for f in schema.fields]
            if names != [f.name for f in schema.fields]:
                raise OSError(f"staged table {name} has columns {names}, expected {[f.name for f in schema.fields]}")
            return rows
        table = self.spark.read.parquet(staged_dir)
        expected = [(f.name, f.dataType) for f in schema.fields]
        if [(f.name, f.dataType) for f in table.schema.fields] != expected:
            raise OSError(
                f"staged table {name} has schema {table.schema.simpleString()}, expected {schema.simpleString()}"
            )
        return table.count()

    def check(self) -> dict[str, int | None]:
        """Check that every staged table is complete and readable; their row counts (``None`` for files)."""
        return {name: self._check(name) for name in self.staged}

    def commit(self) -> None:
        """Publish everything staged (after :meth:`check`): one switch, or one move per table (module docstring)."""
        if self.linked:
            snapshots.commit(self._root, self.run_id, drop=tuple(n for n in self.drop if n not in self.staged))
        elif self._fs is not None:
            for name in self.staged:  # in the order staged: run.json, staged last, is moved last
                self._fs.replace(posixpath.join(self.staging, name), self._fs_path(name))
            self._fs.delete(self.staging)
        if self._fs is not None:
            self.clean_abandoned()
        log.info("published %d tables to %s", len(self.staged), self.output)

    def publish(self) -> dict[str, int | None]:
        """:meth:`check` then :meth:`commit`; returns the row counts."""
        counts = self.check()
        self.commit()
        return counts

    def abort(self) -> None:
        """Drop everything staged and release the output; the published outputs stay as they were."""
        if self.linked:
            snapshots.abandon(self._root, self.run_id)
        elif self._fs is not None:
            self._fs.delete(self.staging)
        self.release()

    def release(self) -> None:
        """Let other runs write this output again (after :meth:`publish` or :meth:`commit`)."""
        if self.lock is not None:
            self.lock.release()
        if self._made_root:
            with contextlib.suppress(OSError):  # not empty: something was published
                os.rmdir(self._root)

    def clean_abandoned(self) -> None:
        """Remove staging directories left by runs that were killed before publishing (their snapshots
        are removed by :func:`als_spark.snapshots.commit`)."""
        if self._fs is None:
            return
        for entry in self._fs.list(self._root):
            if entry.startswith(STAGING_PREFIX) and entry != STAGING_PREFIX + self.run_id:
                log.info("removing abandoned %s", entry)
                self._fs.delete(self._fs_path(entry))


def _as_bytes(data: str | bytes) -> bytes:
    return data if isinstance(data, bytes) else data.encode("utf-8")


def publish_together(
    spark: SparkSession,
    output: str,
    *,
    tables: Mapping[str, DataFrame] | None = None,
    files: Mapping[str, str | bytes | None] | None = None,
) -> dict[str, str]:
    """Stage ``tables`` (Parquet) and small ``files`` under ``output`` and publish them all together.

    A file whose content is ``None`` (a plot that could not be drawn) is left out. Returns
    ``name -> published path``; on any failure nothing is published and the staging is removed.
    """
    publisher = Publisher(spark, output, uuid.uuid4().hex)
    paths: dict[str, str] = {}
    try:
        for name, df in (tables or {}).items():
            paths[name] = publisher.write_table(df, name)
        for name, data in (files or {}).items():
            path = publisher.stage_file(name, data) if data is not None else None
            if path is not None:
                paths[name] = path
        publisher.publish()
    except BaseException:
        publisher.abort()
        raise
    publisher.release()
    return paths


def read_json(output: str, name: str) -> dict[str, Any] | None:
    """The JSON document at ``output/name`` if it is a readable local file, else ``None``."""
    local = local_path(table_path(output, name))
    if local is None or not os.path.isfile(local):
        return None
    with open(local, encoding="utf-8") as fh:
        return json.load(fh)


def to_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
