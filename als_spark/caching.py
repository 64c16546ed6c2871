"""Cached DataFrames that live exactly as long as one run.

Every pipeline command runs inside :func:`scope` (``runlog.running`` opens
one); :func:`cache` caches a DataFrame and, inside a scope, registers it, and
the scope unpersists everything it registered when it ends, whether the run
succeeded or failed.

Why it matters: a long-lived session (a notebook, a Spark Connect server, a
scheduler that reuses its session, ``als-spark bench`` with repeats) would
otherwise keep every run's caches. Worse, Spark finds cached data by *query
plan*, not by file contents: after ``u.data`` (or a table the previous stage
published) is replaced, a second run in the same session that reads the same
path would silently get the old rows from the cache.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

_SCOPE: contextvars.ContextVar[list[DataFrame] | None] = contextvars.ContextVar("als_spark_cache_scope", default=None)


def cache(df: DataFrame) -> DataFrame:
    """``df.cache()``; inside a :func:`scope`, also released when the scope ends."""
    cached = df.cache()
    held = _SCOPE.get()
    if held is not None:
        held.append(cached)
    return cached


@contextmanager
def scope() -> Iterator[list[DataFrame]]:
    """Unpersist, on exit, every DataFrame :func:`cache` cached inside the block.

    Scopes nest: an inner scope releases its own DataFrames only. Yields the
    list of DataFrames cached so far (for tests and logging).
    """
    held: list[DataFrame] = []
    token = _SCOPE.set(held)
    try:
        yield held
    finally:
        _SCOPE.reset(token)
        for df in reversed(held):
            try:
                df.unpersist()
            except Exception as exc:  # noqa: BLE001 - a stopped session has nothing left to release
                log.debug("could not unpersist a cached DataFrame: %s", exc)
