"""Where an output path lives: this machine's file system (or a FUSE mount) or a remote store.

Imports nothing of Spark, so that ``als-spark show`` (:mod:`als_spark.lookup`) stays JVM-free.
"""

from __future__ import annotations


def local_path(path: str) -> str | None:
    """The local file-system path of ``path``, or ``None`` for a remote URI.

    ``file:`` is stripped; ``/dbfs/...`` and ``/Volumes/...`` (FUSE mounts) are local;
    ``s3://``, ``abfss://``, ``hdfs://``, ``dbfs:/`` ... are not.
    """
    for prefix in ("file://", "file:"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return None if "://" in path or path.startswith("dbfs:") else path
