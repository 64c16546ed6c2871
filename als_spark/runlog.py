"""One command's run: its tables are staged, then published together with ``run.json``.

Every command that writes tables runs inside :func:`running`: it stages what it
writes (:meth:`RunLog.write_table`, :meth:`RunLog.stage_file`), records counts,
input and timings, and on success publishes everything at once
(:class:`~als_spark.publish.Publisher`) and writes ``run.json`` last. On failure
nothing is published, and every DataFrame the run cached is released
(:mod:`als_spark.caching`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from als_spark import caching, publish, runinfo, session
from als_spark.config import Config


class RunLog:
    """One command's run: stages its tables, then publishes them and ``run.json`` together.

    Use :func:`running`; stage functions call :meth:`write_table` and add to
    ``counts``, ``input``, ``spark`` and ``timer``.
    """

    def __init__(self, spark: SparkSession, output: str, command: str, config: Config) -> None:
        self.spark, self.output, self.command, self.config = spark, output, command, config
        self.run_id = uuid.uuid4().hex
        self.started_at = _now()
        self.input: dict[str, Any] = {}
        self.counts: dict[str, Any] = {}
        self.outputs: dict[str, str] = {}
        self.details: dict[str, Any] = {}
        quick = session.jvm_quick_jit(spark)
        if quick is not None:
            self.details["quick_jit"] = quick
        self.timer = runinfo.Timer()
        self.publisher = publish.Publisher(spark, output, self.run_id, drop=MAY_WRITE.get(command, ()))
        self.result: dict[str, Any] = {}
        #: Closed when the run ends, after its caches are released (see :func:`running`).
        self.resources = contextlib.ExitStack()
        self._scratch: str | None = None

    def scratch(self) -> str:
        """A local temporary directory for the run's own intermediate files, removed when the run ends."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="als-spark-run-")
            self.resources.callback(shutil.rmtree, self._scratch, ignore_errors=True)
        return self._scratch

    def write_table(self, df: DataFrame, name: str) -> None:
        """Stage ``df`` as table ``name``; it is published when the run succeeds."""
        self.outputs[name] = self.publisher.write_table(df, name)

    def stage_file(self, name: str, data: str | bytes | None) -> None:
        """Stage a small file (a report, a PNG) with the run's tables; ``None`` (no plot) stages nothing."""
        if data is None:
            return
        path = self.publisher.stage_file(name, data)
        if path is not None:
            self.outputs[name] = path

    def stage_path(self, name: str) -> str:
        """A staging path for a directory written by another writer (the ALS model)."""
        self.outputs[name] = publish.table_path(self.output, name)
        return self.publisher.path(name)

    def finish(self) -> dict[str, Any]:
        """Check every staged table, stage ``run.json`` (last, so it names what is published), then publish them all."""
        with self.timer.stage("publish"):  # the checks; the switch that follows takes milliseconds
            rows = self.publisher.check()
        self.counts.update({name: n for name, n in rows.items() if name in PUBLISHED_COUNTS})
        # Stage commands (ingest, train, ...) add to the run.json of the stages before them.
        previous = publish.read_json(self.output, "run.json") or {}
        staged = self.command != "run" and previous.get("command") != "run"
        merge = (lambda key, new: {**previous.get(key, {}), **new}) if staged else (lambda key, new: new)
        published = {name: {"path": self.outputs[name], "rows": n} for name, n in rows.items()}
        self.result = {
            "command": self.command,
            "run_id": self.run_id,
            "status": "succeeded",
            "started_at": self.started_at,
            "finished_at": _now(),
            "input": merge("input", self.input),
            "config": self.config.to_dict(),
            "counts": merge("counts", self.counts),
            "timings_seconds": merge("timings_seconds", self.timer.seconds),
            "outputs": merge("outputs", self.outputs),
            "published": merge("published", published),
            "spark": merge("spark", {"master": session.describe(self.spark), **self.details}),
            "versions": runinfo.versions(self.spark),
        }
        self.publisher.stage_file("run.json", publish.to_json(self.result))
        self.publisher.commit()
        self.publisher.release()
        return self.result


#: Published tables whose row counts also go into ``run.json`` ``counts``.
PUBLISHED_COUNTS = ("recommendations", "similar_items", "similar_users")

#: Tables a command writes only with some configurations: when it does not write one, the copy an
#: earlier run published is dropped, not kept beside tables it no longer matches.
MAY_WRITE = {"run": ("items", "explanations"), "ingest": ("items",), "recommend": ("explanations",)}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def running(spark: SparkSession, output: str, command: str, config: Config) -> Iterator[RunLog]:
    """A run that publishes its tables if the block succeeds and publishes nothing if it fails."""
    runlog = RunLog(spark, output, command, config)
    # Every DataFrame cached during the run is released when it ends (see als_spark.caching),
    # before its scratch files go.
    with runlog.resources, caching.scope():
        try:
            yield runlog
        except BaseException:
            runlog.publisher.abort()
            raise
        try:
            runlog.finish()
        finally:
            runlog.publisher.release()  # also when publishing failed: the next run cleans up
