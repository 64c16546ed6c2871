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
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType,
    IntegerType,
    IntegralType,
    NumericType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from als_spark import caching
from als_spark import schema as S
from als_spark.errors import ConfigError, InputDataError

log = logging.getLogger(__name__)

#: Item file that sits beside each ratings format in the official archives.
ITEM_FILES = {"ml-100k": "u.item", "ml-1m": "movies.dat", "csv": "movies.csv"}


@dataclass(frozen=True)
class Ratings:
    """Ratings that passed validation, and how many input rows did not."""

    df: DataFrame  #: user_id, item_id, rating, timestamp; one row per (user, item); cached
    rejected: DataFrame  #: line, reason: every input line that could not be used
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


#: Field separator (a regular expression for ``split``) of each format.
SEPARATORS = {"ml-100k": "\t", "ml-1m": "::", "csv": ","}
_INT32 = (-(2**31), 2**31 - 1)


def _try_cast(column: str, type_name: str) -> Column:
    # NULL instead of an error (or a silent truncation of "1.5" to 1) for bad text; SQL form for pyspark 3.5.
    return F.expr(f"try_cast(`{column}` AS {type_name})")


def parse_lines(lines: DataFrame, fmt: str, *, rating_range: tuple[float, float]) -> DataFrame:
    """Parse raw text lines (column ``value``) of a ratings format.

    Returns ``line, reason, user_id, item_id, rating, timestamp``: ``reason`` is
    NULL for a valid row, otherwise why it was rejected (the typed columns are
    then NULL or meaningless). A UTF-8 byte-order mark and a trailing carriage
    return are removed first; a ``csv`` header line is dropped.
    """
    if fmt not in SEPARATORS:
        raise ConfigError(f"ingest.format must be one of auto, ml-100k, ml-1m, csv, got {fmt!r}")
    low, high = rating_range
    line = F.regexp_replace(F.regexp_replace("value", "^\ufeff", ""), "\r$", "")
    df = lines.select(line.alias("line"))
    if fmt == "csv":
        df = df.where(~F.lower(F.trim("line")).startswith("userid,"))
    names = (S.USER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)
    fields = F.split("line", SEPARATORS[fmt], -1)
    df = df.select("line", fields.alias("_f")).select(
        "line", "_f", *[F.trim(F.try_element_at("_f", F.lit(i + 1))).alias(f"_{name}") for i, name in enumerate(names)]
    )
    raw = {name: F.col(f"_{name}") for name in names}
    ids = {name: _try_cast(f"_{name}", "BIGINT") for name in (S.USER_ID, S.ITEM_ID)}
    rating = _try_cast(f"_{S.RATING}", "DOUBLE")
    timestamp = _try_cast(f"_{S.TIMESTAMP}", "BIGINT")

    checks: list[tuple[Column, str]] = [
        (F.trim("line") == "", "empty line"),
        (F.size("_f") != 4, "wrong number of fields"),
    ]
    for name in (S.USER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP):
        checks.append((raw[name] == "", f"missing {name}"))
    for name in (S.USER_ID, S.ITEM_ID):
        checks.append((ids[name].isNull(), f"{name} is not an integer"))
        checks.append((~ids[name].between(*_INT32), f"{name} outside the 32-bit integer range"))
    checks += [
        (rating.isNull(), "rating is not a number"),
        (F.isnan(rating) | rating.isin(float("inf"), float("-inf")), "rating is not finite"),
        (~rating.between(low, high), f"rating outside [{low:g}, {high:g}]"),
        (timestamp.isNull(), "timestamp is not an integer"),
    ]
    return df.select(
        "line",
        first_reason(checks).alias("reason"),
        *[F.when(ids[n].between(*_INT32), ids[n].cast("int")).alias(n) for n in (S.USER_ID, S.ITEM_ID)],
        rating.alias(S.RATING),
        timestamp.alias(S.TIMESTAMP),
    )


def first_reason(checks: list[tuple[Column, str]]) -> Column:
    """The text of the first of ``checks`` (condition, reason) that holds, NULL when none does."""
    reason = F.when(checks[0][0], F.lit(checks[0][1]))
    for condition, text in checks[1:]:
        reason = reason.when(condition, F.lit(text))
    return reason


def read_ratings(
    spark: SparkSession, path: str, *, fmt: str = "auto", rating_range: tuple[float, float] = (0.5, 5.0)
) -> Ratings:
    """Read a ratings file into validated, de-duplicated ``user_id, item_id, rating, timestamp``.

    Every line that cannot be used is rejected with its reason (see
    :func:`parse_lines`) and kept in ``Ratings.rejected``. When a (user, item)
    pair occurs more than once, the row with the latest timestamp wins (then
    the higher rating); the others are counted as duplicates. Raises
    :class:`InputDataError` when the input is missing, empty, in an unknown
    format, or has no valid row.
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

    parsed = parse_lines(spark.read.text(path), fmt, rating_range=rating_range)
    return validated(parsed, path, fmt, hint="Check the delimiter and columns, or pass --format.")


def validated(parsed: DataFrame, source: str, fmt: str, *, hint: str) -> Ratings:
    """:class:`Ratings` from parsed rows (``line, reason, user_id, item_id, rating, timestamp``).

    Counts the rows read and rejected, raises :class:`InputDataError` when there are none or none
    is valid (the message names ``source``, the most common reasons and ``hint``), and keeps the
    latest rating of each (user, item) pair.
    """
    parsed = caching.cache(parsed)
    counts = parsed.agg(F.count(F.lit(1)).alias("read"), F.count("reason").alias("rejected")).first()
    assert counts is not None  # a global aggregate has one row
    rows_read, rows_rejected = int(counts["read"]), int(counts["rejected"])
    rejected = parsed.where(F.col("reason").isNotNull()).select("line", "reason")
    if rows_read == 0:
        raise InputDataError(f"input is empty: {source} has no rating rows.")
    if rows_read == rows_rejected:
        raise InputDataError(
            f"no valid rating row in {source} ({rows_read} lines read as format {fmt}, all rejected; "
            f"{_reasons(rejected)}). {hint}"
        )
    if rows_rejected:
        log.warning("rejected %d of %d input %s", rows_rejected, rows_read, "rows" if fmt == "dataframe" else "lines")

    valid = parsed.where(F.col("reason").isNull()).select(S.USER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)
    deduped = caching.cache(deduplicate_latest(valid))
    rows = deduped.count()
    duplicates = rows_read - rows_rejected - rows
    if duplicates:
        log.warning("dropped %d duplicate (user, item) rows; the latest rating of each pair was kept", duplicates)
    return Ratings(
        df=deduped,
        rejected=rejected,
        rows_read=rows_read,
        rows_rejected=rows_rejected,
        duplicates_dropped=duplicates,
        rows=rows,
        fmt=fmt,
    )


#: The roles of ``columns=`` (and, later, ``ingest.columns``) and the source column each defaults to.
COLUMN_DEFAULTS = {"user": S.USER_ID, "item": S.ITEM_ID, "rating": S.RATING, "timestamp": S.TIMESTAMP}


def read_dataframe(
    df: DataFrame, *, columns: Mapping[str, str] | None = None, rating_range: tuple[float, float] = (0.5, 5.0)
) -> Ratings:
    """Validate a DataFrame a caller already has into ``user_id, item_id, rating, timestamp``.

    ``columns`` maps the roles ``user``, ``item``, ``rating`` and ``timestamp`` to the
    DataFrame's column names (defaults: our own names, :data:`COLUMN_DEFAULTS`). Ids must be
    integer columns within the 32-bit range, the rating a numeric column; the timestamp
    (optional unless named) an integer (seconds) or a timestamp column. Rows are checked as
    lines of a file are: a missing id or rating, an id outside the 32-bit range, a rating that
    is not finite or outside ``rating_range`` are rejected with their reason, the row rendered
    as JSON in ``line``. A missing column or a column of the wrong type is an
    :class:`InputDataError` naming it and the columns the DataFrame has.
    """
    unknown = sorted(set(columns or {}) - set(COLUMN_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown column role(s) {', '.join(unknown)}; the roles are {', '.join(COLUMN_DEFAULTS)}")
    names = {**COLUMN_DEFAULTS, **(columns or {})}
    types = dict(df.dtypes)
    has_timestamp = names["timestamp"] in types
    if not has_timestamp and columns and "timestamp" in columns:
        raise _no_column("timestamp", names["timestamp"], df)
    for role in ("user", "item", "rating"):
        if names[role] not in types:
            raise _no_column(role, names[role], df)
    fields = {f.name: f.dataType for f in df.schema.fields}
    for role in ("user", "item"):
        if not isinstance(fields[names[role]], IntegralType):
            raise _wrong_type(role, names[role], fields[names[role]], "an integer type (int or bigint)")
    if not isinstance(fields[names["rating"]], NumericType):
        raise _wrong_type("rating", names["rating"], fields[names["rating"]], "a numeric type")
    if has_timestamp and not isinstance(fields[names["timestamp"]], (IntegralType, TimestampType)):
        raise _wrong_type(
            "timestamp", names["timestamp"], fields[names["timestamp"]], "an integer (seconds) or a timestamp"
        )

    low, high = rating_range
    user, item = F.col(names["user"]).cast("long"), F.col(names["item"]).cast("long")
    rating = F.col(names["rating"]).cast("double")
    timestamp = F.col(names["timestamp"]).cast("long") if has_timestamp else F.lit(None).cast("long")
    used = [names[r] for r in ("user", "item", "rating", "timestamp") if r != "timestamp" or has_timestamp]
    checks: list[tuple[Column, str]] = [
        (user.isNull(), f"missing {S.USER_ID}"),
        (item.isNull(), f"missing {S.ITEM_ID}"),
        (rating.isNull(), f"missing {S.RATING}"),
        (~user.between(*_INT32), f"{S.USER_ID} outside the 32-bit integer range"),
        (~item.between(*_INT32), f"{S.ITEM_ID} outside the 32-bit integer range"),
        (F.isnan(rating) | rating.isin(float("inf"), float("-inf")), "rating is not finite"),
        (~rating.between(low, high), f"rating outside [{low:g}, {high:g}]"),
    ]
    parsed = df.select(
        F.to_json(F.struct(*[F.col(c) for c in used])).alias("line"),
        first_reason(checks).alias("reason"),
        F.when(user.between(*_INT32), user.cast("int")).alias(S.USER_ID),
        F.when(item.between(*_INT32), item.cast("int")).alias(S.ITEM_ID),
        rating.alias(S.RATING),
        timestamp.alias(S.TIMESTAMP),
    )
    return validated(parsed, "the DataFrame", "dataframe", hint="Check the column mapping (columns=...).")


def _no_column(role: str, name: str, df: DataFrame) -> InputDataError:
    return InputDataError(
        f"the input has no column {name!r} for the {role} (columns={{'{role}': ...}} maps it); "
        f"its columns are: {', '.join(df.columns) or 'none'}"
    )


def _wrong_type(role: str, name: str, found: DataType, wanted: str) -> InputDataError:
    return InputDataError(f"column {name!r} (the {role}) is {found.simpleString()}; it must be {wanted}")


def _reasons(rejected: DataFrame, n: int = 3) -> str:
    """The most common rejection reasons with an example line each, for an error message."""
    top = (
        rejected.groupBy("reason")
        .agg(F.count(F.lit(1)).alias("n"), F.min("line").alias("example"))
        .orderBy(F.desc("n"), "reason")
        .limit(n)
        .collect()
    )
    return "; ".join(f"{r['n']} x {r['reason']} (e.g. {r['example'][:60]!r})" for r in top)


def check_rejected(ratings: Ratings, max_fraction: float, path: str) -> None:
    """Raise :class:`InputDataError` when more than ``max_fraction`` of the rows were rejected."""
    if ratings.rows_read and ratings.rows_rejected / ratings.rows_read > max_fraction:
        unit = "rows" if ratings.fmt == "dataframe" else "lines"
        raise InputDataError(
            f"{ratings.rows_rejected} of {ratings.rows_read} {unit} of {path} "
            f"({ratings.rows_rejected / ratings.rows_read:.1%}) were rejected, more than "
            f"ingest.max_rejected_fraction = {max_fraction:g}: {_reasons(ratings.rejected)}. "
            "Nothing was published. Fix the input, force the right --format, or raise the limit with "
            "--set ingest.max_rejected_fraction=..."
        )


def deduplicate_latest(ratings: DataFrame) -> DataFrame:
    """One row per (user, item): the latest timestamp wins, then the higher rating."""
    # Structs compare field by field: the max is the latest timestamp, then the higher rating.
    latest = F.max(F.struct(S.TIMESTAMP, S.RATING)).alias("_latest")
    return (
        ratings.groupBy(S.USER_ID, S.ITEM_ID)
        .agg(latest)
        .select(S.USER_ID, S.ITEM_ID, f"_latest.{S.RATING}", f"_latest.{S.TIMESTAMP}")
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
