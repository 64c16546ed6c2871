"""Item titles: read them from an item file or table, and carry them into output tables."""

from __future__ import annotations

import posixpath

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from als_spark import schema as S
from als_spark import sources
from als_spark.config import TABLE_FORMATS, ItemsConfig
from als_spark.errors import InputDataError
from als_spark.ingest import detect_format

#: Item file that sits beside each ratings format in the official archives.
ITEM_FILES = {"ml-100k": "u.item", "ml-1m": "movies.dat", "csv": "movies.csv"}


def with_title(df: DataFrame, items: DataFrame, *, id_col: str = S.ITEM_ID, title_col: str = S.TITLE) -> DataFrame:
    """Append ``title_col``: the title of ``id_col`` from ``items`` (``item_id, title``), null if unknown."""
    titles = F.broadcast(items.select(F.col(S.ITEM_ID).alias("_tid"), F.col(S.TITLE).alias(title_col)))
    return df.join(titles, df[id_col] == titles["_tid"], "left").drop("_tid")


def items_path_beside(ratings_path: str, fmt: str) -> str:
    """Where the official archive keeps the item file for ``ratings_path``."""
    return posixpath.join(posixpath.dirname(ratings_path.rstrip("/")), ITEM_FILES[fmt])


def read_items(spark: SparkSession, path: str, *, fmt: str | None = None, cfg: ItemsConfig | None = None) -> DataFrame:
    """Read an item file or table into ``item_id, title`` (for MovieLens files the format comes from the name).

    ``items.format`` picks a table format (``table``: ``path`` is a table name), whose
    ``items.columns`` name the item and title columns. Raises :class:`InputDataError` when it is
    missing or has no readable row.
    """
    cfg = cfg or ItemsConfig()
    if fmt is None and cfg.format != "auto":
        fmt = cfg.format
    if fmt not in TABLE_FORMATS:
        head = sources.head_lines(spark, path, 1)  # also a clear error when it is missing
        if not head:
            raise InputDataError(f"item file is empty: {path}")
        if fmt is None:
            fmt = {v: k for k, v in ITEM_FILES.items()}.get(posixpath.basename(path.rstrip("/")))
        if fmt is None:
            detected = detect_format(head[0])
            fmt = (
                detected
                if detected in TABLE_FORMATS
                else "ml-1m"
                if "::" in head[0]
                else "ml-100k"
                if "|" in head[0]
                else "csv"
            )
    if fmt in TABLE_FORMATS:
        df = sources.read_source(spark, path, fmt, cfg.options)
        names = {role: cfg.columns.get(role) for role in ("item", "title")}
        for role, name in names.items():
            if name is not None and name not in df.columns:
                raise InputDataError(
                    f"the item table {path} has no column {name!r} for the {role}: map it with "
                    f"--set items.columns.{role}=COLUMN. Its columns are: {', '.join(df.columns) or 'none'}."
                )
        title = F.col(names["title"]).cast("string") if names["title"] else F.lit(None).cast("string")
        df = df.select(F.col(str(names["item"])).alias(S.ITEM_ID), title.alias(S.TITLE))
        return df.where(F.col(S.ITEM_ID).isNotNull()).dropDuplicates([S.ITEM_ID])
    two_cols = StructType([StructField(S.ITEM_ID, IntegerType()), StructField(S.TITLE, StringType())])
    reader = spark.read.option("mode", "PERMISSIVE")
    if fmt == "ml-100k":
        df = reader.csv(path, sep="|", schema=two_cols, encoding="ISO-8859-1", quote="")
    elif fmt == "ml-1m":
        df = reader.csv(path, sep="::", schema=two_cols, encoding="ISO-8859-1", quote="")
    else:
        df = reader.csv(path, sep=",", header=True, schema=two_cols, quote='"', escape='"', encoding="UTF-8")
    return df.where(F.col(S.ITEM_ID).isNotNull()).dropDuplicates([S.ITEM_ID]).select(S.ITEM_ID, S.TITLE)
