"""Where a run's interactions come from: a file, a catalog table, a built-in dataset or a caller's DataFrame.

:func:`load_ratings` reads the :class:`Source` a command was given, validated and combined per
(user, item) by :mod:`als_spark.ingest`, with the item titles when there are any, and records
what it read in ``run.json``'s ``input``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from als_spark import caching, ids, ingest, publish, runinfo, session, sources, titles
from als_spark import schema as S
from als_spark.config import TABLE_FORMATS, Config, RecommendConfig
from als_spark.errors import InputDataError
from als_spark.runlog import RunLog

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DATASETS = ("synthetic", "ml-100k")


@dataclass(frozen=True)
class Source:
    """Where the ratings come from: a file (``path``), a catalog ``table``, a built-in ``dataset`` or a ``dataframe``."""

    path: str | None = None
    dataset: str | None = None
    table: str | None = None  #: a catalog table or view, read with ``spark.table``
    items: str | None = None  #: item file (or, with ``items.format: table``, table) with titles
    synthetic_seed: int = 42
    synthetic_ratings: int = 100_000  #: size of ``dataset="synthetic"`` (MovieLens-shaped users and items)
    dataframe: DataFrame | None = None  #: ratings a caller already has (:func:`als_spark.api.run`)
    #: role -> column of ``dataframe``, over ``ingest.columns`` (:func:`~als_spark.ingest.read_dataframe`)
    columns: Mapping[str, str | None] | None = None
    items_frame: DataFrame | None = None  #: ``item_id, title`` for ``dataframe``


def load_ratings(
    spark: SparkSession, source: Source, cfg: Config, runlog: RunLog, *, with_items: bool = True
) -> tuple[ingest.Ratings, DataFrame | None]:
    """The validated ratings and, with ``with_items``, the item titles (``None`` when there are none).

    Commands that write no titles (evaluate, tune, compare, converge) pass ``with_items=False`` and
    skip reading the item file.
    """
    if source.dataset == "synthetic":
        return _synthetic(spark, source, runlog)

    if source.dataframe is not None:
        ratings = ingest.read_dataframe(source.dataframe, cfg.ingest, columns=source.columns)
        ingest.check_rejected(ratings, cfg.ingest.max_rejected_fraction, "the DataFrame")
        runlog.input.update({"format": ratings.fmt, "columns": dict(source.columns or {})})
        items = None
        if with_items and source.items_frame is not None:
            items = caching.cache(source.items_frame.select(S.ITEM_ID, S.TITLE))
        return ratings, items

    if source.table is not None:
        ratings = ingest.read_input(spark, source.table, cfg.ingest, table=True)
        ingest.check_rejected(ratings, cfg.ingest.max_rejected_fraction, source.table)
        runlog.input.update({"table": source.table, "format": "table"})
        return ratings, _items(spark, source.items if with_items else None, cfg, runlog, required=True)

    path = source.path
    if source.dataset == "ml-100k":
        from als_spark import datasets

        path = str(datasets.fetch_ml_100k() / "u.data")
        runlog.input["dataset"] = "ml-100k"
    if path is None:
        raise InputDataError("no input: pass --input PATH, --table NAME or --dataset synthetic|ml-100k")
    ratings = ingest.read_input(spark, path, cfg.ingest)
    ingest.check_rejected(ratings, cfg.ingest.max_rejected_fraction, path)
    local = publish.local_path(path)
    runlog.input.update(
        {
            "path": os.path.abspath(local) if local else path,
            "format": ratings.fmt,
            "sha256": runinfo.sha256_of(local) if local and os.path.isfile(local) else None,
        }
    )
    if not with_items:
        runlog.input["items_path"] = None
        return ratings, None
    if source.items:
        return ratings, _items(spark, source.items, cfg, runlog, required=True)
    if ratings.fmt not in titles.ITEM_FILES:
        runlog.input["items_path"] = None
        return ratings, None
    return ratings, _items(spark, titles.items_path_beside(path, ratings.fmt), cfg, runlog, required=False)


def _items(
    spark: SparkSession, location: str | None, cfg: Config, runlog: RunLog, *, required: bool
) -> DataFrame | None:
    """The titles at ``location``; a missing file beside the ratings (``required`` false) means no titles."""
    if location is None:
        return None
    try:
        items = caching.cache(titles.read_items(spark, location, cfg=cfg.items))
        items.count()
    except InputDataError:
        if required:
            raise
        log.info("no item file at %s: tables will have no titles", location)
        runlog.input["items_path"] = None
        return None
    runlog.input["items_path"] = location
    return items


def _synthetic(spark: SparkSession, source: Source, runlog: RunLog) -> tuple[ingest.Ratings, DataFrame]:
    from als_spark import synthetic

    data = synthetic.generate_for_size(source.synthetic_ratings, seed=source.synthetic_seed)
    df = caching.cache(driver_frame(spark, runlog, data.ratings.astype({S.RATING: "float64"}), S.RATINGS, "ratings"))
    n = df.count()
    items = driver_frame(spark, runlog, data.items, S.ITEMS, "items")
    runlog.input.update(
        {
            "dataset": "synthetic",
            "seed": source.synthetic_seed,
            "ratings": source.synthetic_ratings,
            "format": "synthetic",
        }
    )
    rejected = spark.createDataFrame([], schema=S.REJECTED)
    ratings = ingest.Ratings(
        df=df, rejected=rejected, rows_read=n, rows_rejected=0, duplicates_dropped=0, rows=n, fmt="synthetic", valid=df
    )
    return ratings, items


def driver_frame(spark: SparkSession, runlog: RunLog, frame: pd.DataFrame, schema: StructType, name: str) -> DataFrame:
    """A pandas frame made on the driver as a Spark DataFrame of ``schema``.

    In local mode it goes through a Parquet file in the run's scratch directory: ``createDataFrame``
    ships the rows inside the tasks, and Spark warns "contains a task of very large size" at every
    stage that reads them. Elsewhere (a cluster, Spark Connect) the scratch directory is not
    visible to the executors, and ``createDataFrame`` is used.
    """
    if not session.describe(spark).startswith("local"):
        return spark.createDataFrame(frame, schema=schema)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(runlog.scratch(), f"{name}.parquet")
    pq.write_table(pa.Table.from_pandas(frame[schema.fieldNames()], preserve_index=False), path)
    return spark.read.parquet(path).select(*[F.col(f.name).cast(f.dataType) for f in schema.fields])


@dataclass(frozen=True)
class Filters:
    """``recommend``'s candidate filters by ALS index: items allowed, items denied, (user, item) pairs denied."""

    allow: DataFrame | None = None  #: id
    deny_items: DataFrame | None = None  #: id
    deny_pairs: DataFrame | None = None  #: user_id, item_id


def read_id_table(spark: SparkSession, ref: str | Mapping[str, Any], roles: Mapping[str, str]) -> DataFrame:
    """The table ``ref`` names (see ``RecommendConfig.allow_items``), as the columns ``roles`` names' values.

    ``roles`` maps a role (``user``, ``item``) to the output column (``user_id``, ``item_id``); the
    table's own column for each is ``columns.<role>``, by default the output name. ``format: auto``
    reads Parquet, ORC and JSON lines by their first bytes and anything else as delimited text
    with a header line. Rows with a null id are dropped.
    """
    spec: dict[str, Any] = {"path": ref} if isinstance(ref, str) else dict(ref)
    fmt = str(spec.get("format") or "auto")
    location = str(spec.get("table") or spec.get("path"))
    if spec.get("table") is not None:
        fmt = "table"
    elif fmt == "auto":
        head = sources.head_lines(spark, location, 1)
        detected = ingest.detect_format(head[0]) if head else None
        fmt = detected if detected in TABLE_FORMATS else "delimited"
    options = spec.get("options") or {}
    assert isinstance(options, Mapping)
    df = sources.read_source(spark, location, fmt, options)
    named = {**dict(roles), **{role: str(name) for role, name in dict(spec.get("columns") or {}).items()}}
    missing = [named[role] for role in roles if named[role] not in df.columns]
    if missing:
        raise InputDataError(
            f"{location} has no column {', '.join(map(repr, missing))}: name the table's columns with columns: "
            f"{{{', '.join(f'{role}: COLUMN' for role in roles)}}}. Its columns are: {', '.join(df.columns) or 'none'}."
        )
    out = df.select(*[F.col(named[role]).alias(column) for role, column in roles.items()])
    return out.dropna()


def _indexed(df: DataFrame, maps: Mapping[str, ids.IdMap]) -> DataFrame:
    """``df`` with each column of ``maps`` cast to that map's id type and replaced by its index (unknown ids drop)."""
    for column, id_map in maps.items():
        cast = sources.try_cast(column, id_map.dtype.simpleString())
        known = id_map.table.select(F.col(S.ID).alias(column))
        df = id_map.to_index(df.withColumn(column, cast).join(known, column, "left_semi"), column)
    return df


def read_filters(spark: SparkSession, cfg: RecommendConfig, user_ids: ids.IdMap, item_ids: ids.IdMap) -> Filters:
    """The configured ``recommend.allow_items``, ``deny_items`` and ``deny``, by the model's indexes.

    Ids the model does not know are dropped: an allowed item without factors cannot be
    recommended anyway, and a denied one never is.
    """
    allow = deny_items = deny_pairs = None
    if cfg.allow_items is not None:
        table = read_id_table(spark, cfg.allow_items, {"item": S.ITEM_ID})
        allow = _indexed(table, {S.ITEM_ID: item_ids}).select(F.col(S.ITEM_ID).alias(S.ID))
    if cfg.deny_items:
        listed = spark.createDataFrame([(str(v),) for v in cfg.deny_items], f"{S.ITEM_ID} string")
        deny_items = _indexed(listed, {S.ITEM_ID: item_ids}).select(F.col(S.ITEM_ID).alias(S.ID))
    if cfg.deny is not None:
        table = read_id_table(spark, cfg.deny, {"user": S.USER_ID, "item": S.ITEM_ID})
        deny_pairs = _indexed(table, {S.USER_ID: user_ids, S.ITEM_ID: item_ids})
    return Filters(allow=allow, deny_items=deny_items, deny_pairs=deny_pairs)
