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

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from als_spark import caching, sources
from als_spark import schema as S
from als_spark.config import (
    DEFAULT_COLUMNS,
    MOVIELENS_FORMATS,
    MOVIELENS_RATING_RANGE,
    TABLE_FORMATS,
    IngestConfig,
)
from als_spark.errors import ConfigError, InputDataError
from als_spark.sources import first_reason, try_cast

log = logging.getLogger(__name__)


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
    #: The valid input rows before they are combined, in input order (never computed unless used:
    #: the analysis commands' indexes in the notebook's order, :mod:`als_spark.analysis.focus`).
    valid: DataFrame | None = None


def detect_format(first_line: str) -> str | None:
    """The input format a file's first line looks like, or ``None``.

    Parquet and ORC files start with their magic bytes, JSON lines with ``{``. A MovieLens file
    starts with a rating (or ratings.csv's ``userId,`` header); a comma- or tab-separated first
    line whose first field is not a number is the header of a ``delimited`` file.
    """
    if first_line.startswith("PAR1"):
        return "parquet"
    if first_line.startswith("ORC"):
        return "orc"
    line = first_line.lstrip("\ufeff").strip()
    if any((ord(c) < 32 and c != "\t") or c == "\ufffd" for c in line):
        return None  # binary: not a text format
    if line.startswith("{"):
        return "json"
    if "::" in line:
        return "ml-1m"
    separator = "\t" if "\t" in line else "," if "," in line else None
    if separator is None:
        return None
    first = line.split(separator, 1)[0].strip().strip('"')
    if line.lower().startswith("userid,"):
        return "csv"
    if not first.lstrip("-").isdigit():
        return "delimited"
    if separator == "\t":
        return "ml-100k"
    return "csv" if line.count(",") == 3 else None


#: Field separator (a regular expression for ``split``) of each format.
SEPARATORS = {"ml-100k": "\t", "ml-1m": "::", "csv": ","}
_INT32 = (-(2**31), 2**31 - 1)


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
    ids = {name: try_cast(f"_{name}", "BIGINT") for name in (S.USER_ID, S.ITEM_ID)}
    rating = try_cast(f"_{S.RATING}", "DOUBLE")
    timestamp = try_cast(f"_{S.TIMESTAMP}", "BIGINT")

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


def resolve_format(spark: SparkSession, location: str, fmt: str, *, head: list[str] | None = None) -> str:
    """``fmt``, or with ``auto`` the format ``location``'s first line shows (:func:`detect_format`).

    Raises :class:`InputDataError` when the input is missing or empty, or its format cannot be told.
    """
    head = sources.head_lines(spark, location) if head is None else head
    if not head:
        raise InputDataError(f"input is empty: {location} has no lines. Check the path, or pass --dataset synthetic.")
    if fmt != "auto":
        return fmt
    detected = detect_format(head[0])
    if detected is None:
        raise InputDataError(
            f"cannot tell the format of {location} from its first line {head[0][:80]!r}. Expected "
            "u.data, ratings.dat, ratings.csv, Parquet, ORC, JSON lines or a delimited file with a "
            "header line; pass --format to force one."
        )
    log.info("detected input format %s for %s", detected, location)
    return detected


def read_ratings(
    spark: SparkSession,
    path: str,
    *,
    fmt: str = "auto",
    rating_range: tuple[float, float] = MOVIELENS_RATING_RANGE,
    cfg: IngestConfig | None = None,
) -> Ratings:
    """Read a MovieLens ratings file into validated, de-duplicated ``user_id, item_id, rating, timestamp``.

    Every line that cannot be used is rejected with its reason (see
    :func:`parse_lines`) and kept in ``Ratings.rejected``. When a (user, item)
    pair occurs more than once, the row with the latest timestamp wins (then
    the higher rating; ``ingest.aggregate`` may say otherwise); the others are
    counted as duplicates. With ``ingest.columns.rating`` null every line
    weighs 1. Raises :class:`InputDataError` when the input is missing, empty,
    in an unknown format, or has no valid row.
    """
    fmt = resolve_format(spark, path, fmt)
    if fmt not in SEPARATORS:
        raise InputDataError(f"{path} is {fmt}, not a MovieLens file: read it with read_input")
    return _movielens(spark, path, fmt, rating_range, cfg or IngestConfig())


def _movielens(
    spark: SparkSession, path: str, fmt: str, rating_range: tuple[float, float], cfg: IngestConfig
) -> Ratings:
    """A MovieLens file of known format ``fmt``, parsed, validated and combined."""
    parsed = parse_lines(spark.read.text(path), fmt, rating_range=rating_range)
    if cfg.kind == "unary":
        parsed = parsed.withColumn(S.RATING, F.lit(1.0))
    return validated(parsed, path, fmt, hint="Check the delimiter and columns, or pass --format.", cfg=cfg)


def validated(parsed: DataFrame, source: str, fmt: str, *, hint: str, cfg: IngestConfig | None = None) -> Ratings:
    """:class:`Ratings` from parsed rows (``line, reason, user_id, item_id, rating, timestamp``).

    Counts the rows read and rejected, raises :class:`InputDataError` when there are none or none
    is valid (the message names ``source``, the most common reasons and ``hint``), and combines
    the rows of each (user, item) pair by ``ingest.aggregate`` (:func:`aggregate`).
    """
    how = (cfg or IngestConfig()).aggregation()
    parsed = caching.cache(parsed)
    counts = parsed.agg(F.count(F.lit(1)).alias("read"), F.count("reason").alias("rejected")).first()
    assert counts is not None  # a global aggregate has one row
    rows_read, rows_rejected = int(counts["read"]), int(counts["rejected"])
    rejected = parsed.where(F.col("reason").isNotNull()).select("line", "reason")
    if rows_read == 0:
        raise InputDataError(f"input is empty: {source} has no rows.")
    if rows_read == rows_rejected:
        raise InputDataError(
            f"no valid row in {source} ({rows_read} {_unit(fmt)} read as format {fmt}, all rejected; "
            f"{_reasons(rejected)}). {hint}"
        )
    if rows_rejected:
        log.warning("rejected %d of %d input %s", rows_rejected, rows_read, _unit(fmt))

    valid = parsed.where(F.col("reason").isNull()).select(S.USER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)
    deduped = caching.cache(aggregate(valid, how))
    rows = deduped.count()
    duplicates = rows_read - rows_rejected - rows
    if duplicates and how == "latest":
        log.warning("dropped %d duplicate (user, item) rows; the latest rating of each pair was kept", duplicates)
    elif duplicates:
        log.info("combined %d repeated (user, item) rows into their pair's %s", duplicates, how)
    return Ratings(
        df=deduped,
        rejected=rejected,
        rows_read=rows_read,
        rows_rejected=rows_rejected,
        duplicates_dropped=duplicates,
        rows=rows,
        fmt=fmt,
        valid=valid,
    )


def read_dataframe(
    df: DataFrame, cfg: IngestConfig | None = None, *, columns: Mapping[str, str | None] | None = None
) -> Ratings:
    """Validate a DataFrame a caller already has (or a table source) into ``user_id, item_id, rating, timestamp``.

    ``ingest.columns`` (with ``columns`` over it) maps the roles to ``df``'s columns; rows are
    checked by :func:`~als_spark.sources.parse_frame` and repeated (user, item) rows combined
    by ``ingest.aggregate``. The ids keep their type. A missing column or a column of the wrong
    type is an :class:`InputDataError` naming it and the columns the DataFrame has.
    """
    cfg = with_columns(cfg or IngestConfig(), columns)
    parsed = sources.parse_frame(df, cfg, rating_range=cfg.rating_range("dataframe"))
    return validated(parsed, "the DataFrame", "dataframe", hint="Check the column mapping (ingest.columns).", cfg=cfg)


def with_columns(cfg: IngestConfig, columns: Mapping[str, str | None] | None) -> IngestConfig:
    """``cfg`` with ``columns`` (role -> column, e.g. the API's ``columns=``) over ``ingest.columns``."""
    if not columns:
        return cfg
    unknown = sorted(set(columns) - set(DEFAULT_COLUMNS))
    if unknown:
        raise ConfigError(f"unknown column role(s) {', '.join(unknown)}; the roles are {', '.join(DEFAULT_COLUMNS)}")
    return dataclasses.replace(cfg, columns={**cfg.columns, **columns})


def read_input(spark: SparkSession, location: str, cfg: IngestConfig, *, table: bool = False) -> Ratings:
    """Read and validate any input: a MovieLens file, a table format, or (``table``) a catalog table by name.

    ``ingest.format`` picks the reader; ``auto`` looks at the file's first line (MovieLens,
    Parquet, ORC, JSON lines or a delimited file with a header).
    """
    fmt = "table" if table else cfg.format
    options = dict(cfg.options)
    if fmt not in TABLE_FORMATS:
        head = sources.head_lines(spark, location)
        fmt = resolve_format(spark, location, fmt, head=head)
        if cfg.format == "auto" and fmt == "delimited" and not {"sep", "delimiter"} & set(options):
            options["sep"] = "\t" if "\t" in head[0] else ","  # the delimiter the detection saw
    if fmt in TABLE_FORMATS:
        df = sources.read_source(spark, location, fmt, options)
        parsed = sources.parse_frame(df, cfg, rating_range=cfg.rating_range(fmt))
        hint = "Check ingest.columns, ingest.event_weights and the reader options (ingest.options)."
        return validated(parsed, location, fmt, hint=hint, cfg=cfg)
    if cfg.kind == "event":
        raise ConfigError(
            f"ingest.event_weights needs a table with an event column, but {location} is a MovieLens "
            f"{fmt} file of ratings: remove ingest.event_weights, or read a table (--format parquet, ...)."
        )
    return _movielens(spark, location, fmt, cfg.rating_range(fmt), cfg)  # its first line is already read


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
        unit = _unit(ratings.fmt)
        raise InputDataError(
            f"{ratings.rows_rejected} of {ratings.rows_read} {unit} of {path} "
            f"({ratings.rows_rejected / ratings.rows_read:.1%}) were rejected, more than "
            f"ingest.max_rejected_fraction = {max_fraction:g}: {_reasons(ratings.rejected)}. "
            "Nothing was published. Fix the input, force the right --format, or raise the limit with "
            "--set ingest.max_rejected_fraction=..."
        )


def aggregate(ratings: DataFrame, how: str) -> DataFrame:
    """One row per (user, item) of ``user_id, item_id, rating, timestamp``, combined by ``how``.

    ``latest``: the row with the latest timestamp (then the higher rating); ``sum``, ``max``:
    of the ratings (weights); ``count``: the number of rows. All but ``latest`` keep the latest
    timestamp of the pair. A NULL timestamp is older than any other.
    """
    if how == "latest":
        return deduplicate_latest(ratings)
    value = {"sum": F.sum(S.RATING), "max": F.max(S.RATING), "count": F.count(F.lit(1))}.get(how)
    if value is None:
        raise ValueError(f"aggregate must be latest, sum, max or count, got {how!r}")
    return ratings.groupBy(S.USER_ID, S.ITEM_ID).agg(
        value.cast("double").alias(S.RATING), F.max(S.TIMESTAMP).alias(S.TIMESTAMP)
    )


def _unit(fmt: str) -> str:
    return "lines" if fmt in MOVIELENS_FORMATS else "rows"


def deduplicate_latest(ratings: DataFrame) -> DataFrame:
    """One row per (user, item): the latest timestamp wins, then the higher rating."""
    # Structs compare field by field: the max is the latest timestamp, then the higher rating.
    latest = F.max(F.struct(S.TIMESTAMP, S.RATING)).alias("_latest")
    return (
        ratings.groupBy(S.USER_ID, S.ITEM_ID)
        .agg(latest)
        .select(S.USER_ID, S.ITEM_ID, f"_latest.{S.RATING}", f"_latest.{S.TIMESTAMP}")
    )
