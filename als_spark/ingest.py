"""Read ratings and item titles from the MovieLens file formats into typed DataFrames.

Supported rating formats (``--format`` forces one; ``auto`` looks at the first line):

========== ================================ ===========================================
format     file                             layout
========== ================================ ===========================================
``ml-100k`` ``u.data``                       ``user<TAB>item<TAB>rating<TAB>timestamp``
``ml-1m``   ``ratings.dat``                  ``user::item::rating::timestamp``
``csv``     ``ratings.csv`` (latest, 25M)    header ``userId,movieId,rating,timestamp``
========== ================================ ===========================================

Each has a matching item file that carries titles: ``u.item`` (Latin-1, ``|``),
``movies.dat`` (Latin-1, ``::``) and ``movies.csv`` (UTF-8, quoted CSV).
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from als_spark import schema as S
from als_spark.errors import ConfigError, InputDataError

log = logging.getLogger(__name__)

#: Item file that sits beside each ratings format in the official archives.
ITEM_FILES = {"ml-100k": "u.item", "ml-1m": "movies.dat", "csv": "movies.csv"}


@dataclass(frozen=True)
class Ratings:
    """Ratings that passed validation, and how many input rows did not."""

    df: DataFrame  #: user_id, item_id, rating, timestamp; one row per (user, item); cached
    rows_read: int  #: lines read from the input (after a header)
    rows_rejected: int  #: lines with a missing or unparseable field
    duplicates_dropped: int  #: valid rows dropped because a later one rated the same pair
    rows: int  #: rows in ``df``
    fmt: str  #: the format read (detected or forced)


def _head_lines(spark: SparkSession, path: str, n: int = 2) -> list[str]:
    try:
        rows = spark.read.text(path).limit(n).collect()
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "Path does not exist" in str(exc):
            raise InputDataError(
                f"input not found: {path}. Pass --input with the path of a ratings file "
                "(u.data, ratings.dat or ratings.csv), or --dataset synthetic for built-in data."
            ) from None
        raise
    return [r[0].lstrip("\ufeff") for r in rows]


def detect_format(first_line: str) -> str | None:
    """The ratings format a file's first line looks like, or ``None``."""
    line = first_line.lstrip("\ufeff").strip()
    if "::" in line:
        return "ml-1m"
    if "\t" in line:
        return "ml-100k"
    if line.lower().startswith("userid,") or line.count(",") == 3:
        return "csv"
    return None


def read_ratings(spark: SparkSession, path: str, *, fmt: str = "auto") -> Ratings:
    """Read a ratings file into validated, de-duplicated ``user_id, item_id, rating, timestamp``.

    Rows with a missing or unparseable field, or a non-finite rating, are rejected
    and counted. When a (user, item) pair occurs more than once, the row with
    the latest timestamp wins (then the higher rating); the others are counted
    as duplicates. Raises :class:`InputDataError` when the input is missing,
    empty, in an unknown format, or has no valid row.
    """
    head = _head_lines(spark, path)
    if not head:
        raise InputDataError(f"input is empty: {path} has no lines. Check the path, or pass --dataset synthetic.")
    if fmt == "auto":
        detected = detect_format(head[0])
        if detected is None:
            raise InputDataError(
                f"cannot tell the format of {path} from its first line {head[0][:80]!r}. "
                "Expected tab-separated u.data, '::'-separated ratings.dat or ratings.csv with a "
                "userId,movieId,rating,timestamp header; pass --format to force one."
            )
        fmt = detected
        log.info("detected input format %s for %s", fmt, path)

    reader = spark.read.option("mode", "PERMISSIVE")
    if fmt == "ml-100k":
        raw = reader.csv(path, sep="\t", schema=S.RAW_RATINGS_INT)
    elif fmt == "ml-1m":
        raw = reader.csv(path, sep="::", schema=S.RAW_RATINGS_INT)
    elif fmt == "csv":
        has_header = head[0].lower().startswith("userid")
        raw = reader.csv(path, sep=",", header=has_header, schema=S.RAW_RATINGS_CSV)
        raw = raw.withColumnsRenamed({"userId": S.USER_ID, "movieId": S.ITEM_ID})
    else:
        raise ConfigError(f"ingest.format must be one of auto, ml-100k, ml-1m, csv, got {fmt!r}")

    valid_row = (
        F.col(S.USER_ID).isNotNull()
        & F.col(S.ITEM_ID).isNotNull()
        & F.col(S.RATING).isNotNull()
        & ~F.isnan(S.RATING)
        & ~F.col(S.RATING).isin(float("inf"), float("-inf"))
        & F.col(S.TIMESTAMP).isNotNull()
    )
    flagged = raw.withColumn("_valid", F.coalesce(valid_row, F.lit(False)))
    counts = flagged.groupBy().agg(
        F.count(F.lit(1)).alias("read"), F.sum(F.when(~F.col("_valid"), 1).otherwise(0)).alias("rejected")
    ).first()
    rows_read, rows_rejected = int(counts["read"]), int(counts["rejected"] or 0)
    if rows_read == 0:
        raise InputDataError(f"input is empty: {path} has no rating rows.")
    if rows_read == rows_rejected:
        raise InputDataError(
            f"no valid rating row in {path} ({rows_read} rows read, all rejected) as format {fmt}. "
            "Check the delimiter and columns, or pass --format."
        )
    if rows_rejected:
        log.warning("rejected %d of %d input rows with a missing or unparseable field", rows_rejected, rows_read)

    valid = flagged.where("_valid").select(S.USER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)
    deduped = deduplicate_latest(valid).cache()
    rows = deduped.count()
    duplicates = rows_read - rows_rejected - rows
    if duplicates:
        log.warning("dropped %d duplicate (user, item) rows; the latest rating of each pair was kept", duplicates)
    return Ratings(df=deduped, rows_read=rows_read, rows_rejected=rows_rejected, duplicates_dropped=duplicates, rows=rows, fmt=fmt)


def deduplicate_latest(ratings: DataFrame) -> DataFrame:
    """One row per (user, item): the latest timestamp wins, then the higher rating."""
    # Structs compare field by field: the max is the latest timestamp, then the higher rating.
    latest = F.max(F.struct(S.TIMESTAMP, S.RATING)).alias("_latest")
    return ratings.groupBy(S.USER_ID, S.ITEM_ID).agg(latest).select(
        S.USER_ID, S.ITEM_ID, f"_latest.{S.RATING}", f"_latest.{S.TIMESTAMP}"
    )


def items_path_beside(ratings_path: str, fmt: str) -> str:
    """Where the official archive keeps the item file for ``ratings_path``."""
    return posixpath.join(posixpath.dirname(ratings_path.rstrip("/")), ITEM_FILES[fmt])


def read_items(spark: SparkSession, path: str, *, fmt: str | None = None) -> DataFrame:
    """Read an item file into ``item_id, title`` (format from its name unless given).

    Raises :class:`InputDataError` when it is missing or has no readable row.
    """
    head = _head_lines(spark, path, 1)  # also a clear error when it is missing
    if not head:
        raise InputDataError(f"item file is empty: {path}")
    if fmt is None:
        fmt = {v: k for k, v in ITEM_FILES.items()}.get(posixpath.basename(path.rstrip("/")))
    if fmt is None:
        fmt = "ml-1m" if "::" in head[0] else "ml-100k" if "|" in head[0] else "csv"
    two_cols = StructType([StructField(S.ITEM_ID, IntegerType()), StructField(S.TITLE, StringType())])
    reader = spark.read.option("mode", "PERMISSIVE")
    if fmt == "ml-100k":
        df = reader.csv(path, sep="|", schema=two_cols, encoding="ISO-8859-1", quote="")
    elif fmt == "ml-1m":
        df = reader.csv(path, sep="::", schema=two_cols, encoding="ISO-8859-1", quote="")
    else:
        df = reader.csv(path, sep=",", header=True, schema=two_cols, quote='"', escape='"', encoding="UTF-8")
    return df.where(F.col(S.ITEM_ID).isNotNull()).dropDuplicates([S.ITEM_ID]).select(S.ITEM_ID, S.TITLE)
