"""The user's own ids in, the same ids out: the dense integer indexes ALS needs, and back.

Spark's ALS takes 32-bit integer ids. The rule (one :class:`IdMap` for users, one for items):

- integer ids that all fit in 32 bits are their own index, so such an input gives exactly the
  tables it always did;
- any other ids (strings, or integers beyond the 32-bit range) are numbered ``0, 1, 2, ...`` in
  ascending order of id (strings by their UTF-8 bytes): the same ids always get the same indexes.

Every table the pipeline publishes carries the original ids in their original type; the mapping
itself is published as ``user_index`` / ``item_index`` (``id``, ``index``), so a reader can join
the Spark model's factors to ids, and a later stage reads the mapping back instead of rebuilding it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, IntegerType, IntegralType, StructField, StructType

from als_spark import caching
from als_spark import schema as S

INDEX = "index"
_INT32 = (-(2**31), 2**31 - 1)


def index_schema(dtype: DataType) -> StructType:
    """The schema of a published ``user_index`` / ``item_index`` table whose ids are of ``dtype``."""
    return StructType([StructField(S.ID, dtype, False), StructField(INDEX, IntegerType(), False)])


@dataclass(frozen=True)
class IdMap:
    """One kind of id (users or items) and its ALS indexes.

    ``table`` is ``id, index`` (cached), one row per id the model knows; ``identity`` is true
    when every id is its own index (integers within 32 bits), and the mapping is then a cast.
    """

    dtype: DataType  #: the ids' own type
    table: DataFrame  #: id, index
    identity: bool

    def to_index(self, df: DataFrame, column: str) -> DataFrame:
        """``df`` with ``column``'s ids replaced by their indexes; a row whose id has no index is dropped."""
        if self.identity:
            if isinstance(df.schema[column].dataType, IntegerType):
                return df  # already ALS's type: the very same frame (and plan)
            return df.withColumn(column, F.col(column).cast("int"))
        pairs = self.table.select(F.col(S.ID).alias(column), F.col(INDEX).alias("_index"))
        joined = df.join(pairs, column)
        return joined.select(*[F.col("_index").alias(c) if c == column else F.col(c) for c in df.columns])

    def to_ids(self, df: DataFrame, column: str) -> DataFrame:
        """``df`` with the indexes in ``column`` replaced by the ids they stand for."""
        if self.identity:
            if df.schema[column].dataType == self.dtype:
                return df
            return df.withColumn(column, F.col(column).cast(self.dtype))
        pairs = self.table.select(F.col(INDEX).alias(column), F.col(S.ID).alias("_id"))
        joined = df.join(pairs, column)
        return joined.select(*[F.col("_id").alias(c) if c == column else F.col(c) for c in df.columns])

    def ids_frame(self, spark: SparkSession, values: Iterable[object]) -> DataFrame:
        """``id`` (int index) of the given ids, as the model numbers them; unknown ids are left out."""
        asked = spark.createDataFrame([(v,) for v in values], StructType([StructField(S.ID, self.dtype, True)]))
        return self.to_index(asked, S.ID)


def to_indexes(df: DataFrame, users: IdMap, items: IdMap) -> DataFrame:
    """``df`` with ``user_id`` and ``item_id`` replaced by their indexes (:meth:`IdMap.to_index`)."""
    return items.to_index(users.to_index(df, S.USER_ID), S.ITEM_ID)


def is_id_type(dtype: DataType) -> bool:
    """Whether ids of this type can be mapped: strings and integral types."""
    return isinstance(dtype, IntegralType) or dtype.typeName() == "string"


def build(df: DataFrame, column: str) -> IdMap:
    """The :class:`IdMap` of the distinct ids in ``df[column]`` (non-null; see the module's rule)."""
    dtype = df.schema[column].dataType
    distinct = df.select(F.col(column).alias(S.ID)).distinct()
    if isinstance(dtype, IntegralType):
        bounds = distinct.agg(F.min(S.ID), F.max(S.ID)).first()
        assert bounds is not None  # a global aggregate has one row
        low, high = bounds[0], bounds[1]
        if low is None or (_INT32[0] <= low and high <= _INT32[1]):
            table = distinct.select(S.ID, F.col(S.ID).cast("int").alias(INDEX))
            return IdMap(dtype=dtype, table=caching.cache(table), identity=True)
    return IdMap(dtype=dtype, table=_numbered(distinct), identity=False)


def _numbered(distinct: DataFrame) -> DataFrame:
    """``id, index``: each id's position (from 0) in ascending order, without moving all ids to one task.

    The sort range-partitions the ids; each row's position inside its partition comes from
    ``monotonically_increasing_id`` (partition number in the upper bits, row number below), and
    each partition's offset from a count per partition. The positions are cached first, so the
    counts and the indexes are computed from the same rows.
    """
    positions = caching.cache(
        distinct.orderBy(S.ID).select(
            S.ID, F.spark_partition_id().alias("_part"), F.monotonically_increasing_id().alias("_pos")
        )
    )
    counts = positions.groupBy("_part").agg(F.count(F.lit(1)).alias("n"), F.min("_pos").alias("first")).collect()
    offsets, start = [], 0
    for row in sorted(counts, key=lambda r: r["_part"]):
        offsets.append((row["_part"], start - row["first"]))
        start += row["n"]
    if start > _INT32[1]:
        raise ValueError(f"{start} distinct ids: ALS numbers them with 32-bit integers")
    shift = distinct.sparkSession.createDataFrame(offsets, "_part int, _shift long")
    table = caching.cache(
        positions.join(F.broadcast(shift), "_part").select(
            S.ID, (F.col("_pos") + F.col("_shift")).cast("int").alias(INDEX)
        )
    )
    table.count()  # materialized before the positions it is made of are released
    positions.unpersist()
    return table


def from_table(table: DataFrame) -> IdMap:
    """The :class:`IdMap` a published ``user_index`` / ``item_index`` table holds."""
    dtype = table.schema[S.ID].dataType
    identity = False
    if isinstance(dtype, IntegralType):
        identity = table.where(F.col(S.ID).cast("long") != F.col(INDEX).cast("long")).limit(1).count() == 0
    return IdMap(dtype=dtype, table=caching.cache(table.select(S.ID, INDEX)), identity=identity)
