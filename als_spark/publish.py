"""Write the pipeline's tables (Parquet) and its ``run.json``.

Every table goes through :func:`conform`, a ``select`` + ``cast`` to the schema
in :mod:`als_spark.schema`, so what readers get is exactly the documented
contract whatever the computation produced.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
from typing import Any, Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

log = logging.getLogger(__name__)


def conform(df: DataFrame, schema: StructType, extra: tuple[str, ...] = ()) -> DataFrame:
    """Select the schema's columns in order, cast to its types, then any ``extra`` columns."""
    cols = [F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields]
    return df.select(*cols, *extra)


def table_path(output: str, name: str) -> str:
    return posixpath.join(output.rstrip("/"), name)


def write_table(df: DataFrame, output: str, name: str) -> str:
    """Write ``df`` as Parquet to ``output/name``, replacing what was there. Returns the path."""
    path = table_path(output, name)
    df.write.mode("overwrite").parquet(path)
    log.info("wrote %s", path)
    return path


def read_table(spark: SparkSession, output: str, name: str) -> DataFrame:
    return spark.read.parquet(table_path(output, name))


def local_path(path: str) -> str | None:
    """The local file-system path of ``path``, or ``None`` for a remote URI."""
    for prefix in ("file://", "file:"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return None if "://" in path or path.startswith("dbfs:") else path


def write_json(spark: SparkSession, output: str, name: str, payload: Mapping[str, Any]) -> str:
    """Write ``payload`` as pretty JSON to ``output/name`` (see :func:`write_text`)."""
    return write_text(spark, output, name, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_text(spark: SparkSession, output: str, name: str, text: str) -> str:
    """Write ``text`` to the file ``output/name``.

    On a local (or FUSE-mounted, like ``/dbfs`` and ``/Volumes``) path the file is
    replaced atomically; on a remote URI it is written through Spark as a
    one-file text dataset directory of that name.
    """
    path = table_path(output, name)
    local = local_path(path)
    if local is None:
        spark.createDataFrame([(text,)], "value string").coalesce(1).write.mode("overwrite").text(path)
        return path
    os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(local) or ".", prefix=f".{name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, local)
    return path


def read_json(output: str, name: str) -> dict[str, Any] | None:
    """The JSON document at ``output/name`` if it is a readable local file, else ``None``."""
    local = local_path(table_path(output, name))
    if local is None or not os.path.isfile(local):
        return None
    with open(local, encoding="utf-8") as fh:
        return json.load(fh)
