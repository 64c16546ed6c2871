"""Interaction tables of any Spark-readable kind: read one, and map its columns to the pipeline's roles.

============= ===============================================================================
format        read with
============= ===============================================================================
``parquet``   ``spark.read.parquet``: a file, a folder or a glob
``orc``       ``spark.read.orc``
``json``      ``spark.read.json`` (JSON lines)
``delimited`` ``spark.read.csv``, a header line by default; ``ingest.options`` sets delimiter,
              quote, header and Spark's other CSV options
``table``     ``spark.table``: a catalog table or view by name (``--table``)
============= ===============================================================================

:func:`parse_frame` turns any such DataFrame into the rows :func:`~als_spark.ingest.validated`
checks: ``ingest.columns`` names the user, item, rating, timestamp and event columns, and every
row that cannot be used gets its reason, rendered as JSON in ``line``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DateType, IntegralType, NumericType, StringType, TimestampType

from als_spark import ids
from als_spark import schema as S
from als_spark.config import DEFAULT_COLUMNS, IngestConfig
from als_spark.errors import InputDataError


def read_source(spark: SparkSession, location: str, fmt: str, options: Mapping[str, Any]) -> DataFrame:
    """The table at ``location`` (a path, or a table name for ``table``) read as ``fmt``.

    A missing path or table, or a file that is not of the format, is an :class:`InputDataError`.
    """
    try:
        if fmt == "table":
            return spark.table(location)
        reader = spark.read
        for key, value in {**({"header": True} if fmt == "delimited" else {}), **options}.items():
            reader = reader.option(key, value)
        df = reader.format("csv" if fmt == "delimited" else fmt).load(location)
        df.schema  # noqa: B018 - Spark Connect reads the schema lazily: fail here, not later
        return df
    except AnalysisException as exc:
        raise InputDataError(_unreadable(location, fmt, exc)) from None
    except Exception as exc:  # noqa: BLE001 - the JVM's reader errors (a file of another format) have no Python class
        if "SparkException" not in type(exc).__name__ + str(exc)[:500] and "FAILED_READ_FILE" not in str(exc):
            raise
        raise InputDataError(_unreadable(location, fmt, exc)) from None


def head_lines(spark: SparkSession, path: str, n: int = 2) -> list[str]:
    """The first ``n`` lines of the text at ``path`` (a byte-order mark removed); a missing path is an :class:`InputDataError`."""
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


def _unreadable(location: str, fmt: str, exc: Exception) -> str:
    text = str(exc)
    if fmt == "table":
        return (
            f"no table or view named {location!r} in the catalog ({_first_line(text)}). "
            "Check the name (database.table), or pass --input PATH for a file."
        )
    if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
        return f"input not found: {location}. Check the path, or pass --dataset synthetic for built-in data."
    return (
        f"cannot read {location} as {fmt}: {_first_line(text)}. "
        "Check the path and --format (ingest.format), or its reader options (ingest.options)."
    )


def _first_line(text: str) -> str:
    """The line of a Spark error that says what is wrong: the one with an error class, else the first."""
    lines = [line.strip().removeprefix(": ") for line in text.strip().splitlines() if line.strip()]
    for line in lines:
        match = re.search(r"\[[A-Z_.]+\].*", line)
        if match:
            return match.group(0)[:300]
    return lines[0][:300] if lines else "no detail"


def try_cast(name: str, type_name: str) -> Column:
    """Column ``name`` cast to ``type_name``, NULL where it cannot be (SQL form: pyspark 3.5 has no ``Column.try_cast``)."""
    quoted = name.replace("`", "``")
    return F.expr(f"try_cast(`{quoted}` AS {type_name})")


def first_reason(checks: list[tuple[Column, str]]) -> Column:
    """The text of the first of ``checks`` (condition, reason) that holds, NULL when none does."""
    reason = F.when(checks[0][0], F.lit(checks[0][1]))
    for condition, text in checks[1:]:
        reason = reason.when(condition, F.lit(text))
    return reason


def columns_for(df: DataFrame, cfg: IngestConfig) -> dict[str, str]:
    """Role -> column of ``df`` for the roles this configuration reads, checked against ``df``'s columns.

    The timestamp is optional where it keeps its default name (``timestamp``); every other role
    this kind of source needs (``IngestConfig.kind``) must exist.
    """
    mapping = cfg.columns
    needed = ["user", "item"] + {"rating": ["rating"], "event": ["event"], "unary": []}[cfg.kind]
    present = set(df.columns)
    found: dict[str, str] = {}
    for role in needed:
        name = mapping.get(role)
        if name is None:
            raise InputDataError(f"ingest.columns.{role} is null, but this source needs a {role} column")
        if name not in present:
            raise _no_column(role, name, df)
        found[role] = name
    stamp = mapping.get("timestamp")
    if stamp is not None:
        if stamp in present:
            found["timestamp"] = stamp
        elif stamp != DEFAULT_COLUMNS["timestamp"]:
            raise _no_column("timestamp", stamp, df)
    return found


def _no_column(role: str, name: str, df: DataFrame) -> InputDataError:
    hint = f"map it with --set ingest.columns.{role}=COLUMN (columns={{'{role}': ...}} in Python)"
    if role == "rating":
        hint += (
            ", or set ingest.columns.rating to null when every row is one interaction, "
            "or ingest.event_weights when rows have event types"
        )
    return InputDataError(
        f"the input has no column {name!r} for the {role}: {hint}. Its columns are: {', '.join(df.columns) or 'none'}."
    )


def _wrong_type(role: str, name: str, found: DataType, wanted: str) -> InputDataError:
    return InputDataError(f"column {name!r} (the {role}) is of type {found.simpleString()}; it must be {wanted}.")


def _timestamp_seconds(name: str, dtype: DataType) -> Column:
    """Seconds since the epoch from an integer, timestamp, date or text column (NULL where unreadable)."""
    if isinstance(dtype, IntegralType):
        return F.col(name).cast("long")
    if isinstance(dtype, (TimestampType, DateType)) or dtype.typeName() == "timestamp_ntz":
        return F.unix_timestamp(F.col(name).cast("timestamp"))
    return F.coalesce(try_cast(name, "BIGINT"), F.unix_timestamp(try_cast(name, "TIMESTAMP")))


def parse_frame(
    df: DataFrame, cfg: IngestConfig, *, rating_range: tuple[float, float] = (0.0, float("inf"))
) -> DataFrame:
    """``line, reason, user_id, item_id, rating, timestamp`` from any DataFrame (see :func:`columns_for`).

    The ids keep their type (a string or an integral type); ``rating`` is the rating, the
    event's weight (``ingest.event_weights``) or 1 (no rating column). ``reason`` is NULL for a
    usable row, else the first of: a null or blank id, a missing rating that is not a finite
    number within ``rating_range`` (negative ratings are out of range), a missing or unknown
    event type, a timestamp that is not a time. ``line`` is the row's columns as JSON.
    """
    names = columns_for(df, cfg)
    fields = {f.name: f.dataType for f in df.schema.fields}
    for role in ("user", "item"):
        if not ids.is_id_type(fields[names[role]]):
            raise _wrong_type(role, names[role], fields[names[role]], "a string or an integer type")
    checks: list[tuple[Column, str]] = []
    for role, column in (("user", S.USER_ID), ("item", S.ITEM_ID)):
        value = F.col(names[role])
        checks.append((value.isNull(), f"missing {column}"))
        if isinstance(fields[names[role]], StringType):
            checks.append((value.rlike(r"^\s*$"), f"blank {column}"))  # empty, or only white space

    if "rating" in names:
        rating_type = fields[names["rating"]]
        if not isinstance(rating_type, (NumericType, StringType)):
            raise _wrong_type("rating", names["rating"], rating_type, "a number (or text holding one)")
        raw = F.col(names["rating"])
        rating = try_cast(names["rating"], "DOUBLE") if isinstance(rating_type, StringType) else raw.cast("double")
        low, high = rating_range
        checks += [
            (raw.isNull(), f"missing {S.RATING}"),
            (rating.isNull(), "rating is not a number"),
            (F.isnan(rating) | rating.isin(float("inf"), float("-inf")), "rating is not finite"),
        ]
        if low >= 0:
            checks.append((rating < 0, "rating is negative"))
        checks.append((~rating.between(low, high), f"rating outside [{low:g}, {high:g}]"))
    elif "event" in names:
        event_type = fields[names["event"]]
        if not isinstance(event_type, StringType):
            raise _wrong_type("event", names["event"], event_type, "a string (the event type)")
        assert cfg.event_weights is not None  # the event role is only read with event_weights
        weights = F.create_map(*[x for k, w in sorted(cfg.event_weights.items()) for x in (F.lit(k), F.lit(w))])
        event = F.col(names["event"])
        rating = F.try_element_at(weights, event)
        checks += [(event.isNull(), "missing event"), (rating.isNull(), "unknown event type")]
    else:
        rating = F.lit(1.0)

    if "timestamp" in names:
        stamp_type = fields[names["timestamp"]]
        allowed = (IntegralType, TimestampType, DateType, StringType)
        if not isinstance(stamp_type, allowed) and stamp_type.typeName() != "timestamp_ntz":
            raise _wrong_type(
                "timestamp", names["timestamp"], stamp_type, "an integer (seconds), a timestamp, a date or text"
            )
        timestamp = _timestamp_seconds(names["timestamp"], stamp_type)
        checks.append((F.col(names["timestamp"]).isNotNull() & timestamp.isNull(), "timestamp is not a time"))
    else:
        timestamp = F.lit(None).cast("long")

    used = list(dict.fromkeys(names.values()))
    return df.select(
        F.to_json(F.struct(*[F.col(c) for c in used])).alias("line"),
        first_reason(checks).alias("reason"),
        F.col(names["user"]).alias(S.USER_ID),
        F.col(names["item"]).alias(S.ITEM_ID),
        rating.alias(S.RATING),
        timestamp.alias(S.TIMESTAMP),
    )
