"""Column names and schemas: the contract between stages and with readers of our tables.

Every table the pipeline writes is produced by a ``select`` of the columns named
here, in this order, so its Parquet schema is exactly what the README documents.
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    DataType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

# --- column names -----------------------------------------------------------
USER_ID = "user_id"
ITEM_ID = "item_id"
RATING = "rating"
TIMESTAMP = "timestamp"
CONFIDENCE = "confidence"
TITLE = "title"
ID = "id"
FEATURES = "features"
RANK = "rank"
SCORE = "score"
SIMILAR_ITEM_ID = "similar_item_id"
SIMILAR_USER_ID = "similar_user_id"
SIMILAR_TITLE = "similar_title"
SIMILARITY = "similarity"
SOURCE = "source"
BECAUSE_ITEM_ID = "because_item_id"
CONTRIBUTION = "contribution"
SHARE = "share"

#: The columns that hold a user id, and those that hold an item id, in the tables below.
USER_COLUMNS = (USER_ID, SIMILAR_USER_ID)
ITEM_COLUMNS = (ITEM_ID, SIMILAR_ITEM_ID, BECAUSE_ITEM_ID)


def with_id_types(schema: StructType, user: DataType | None = None, item: DataType | None = None) -> StructType:
    """``schema`` with its user-id and item-id columns of the ids' own types (see :mod:`als_spark.ids`).

    A factor table's ``id`` is a user's or an item's: pass the one type it holds.
    """
    fields = []
    for f in schema.fields:
        dtype = f.dataType
        if user is not None and (f.name in USER_COLUMNS or (f.name == ID and item is None)):
            dtype = user
        elif item is not None and (f.name in ITEM_COLUMNS or (f.name == ID and user is None)):
            dtype = item
        fields.append(StructField(f.name, dtype, f.nullable))
    return StructType(fields)


# --- tables the pipeline writes ------------------------------------------------
REJECTED = StructType(
    [
        StructField("line", StringType(), True),
        StructField("reason", StringType(), True),
    ]
)
RATINGS = StructType(
    [
        StructField(USER_ID, IntegerType(), False),
        StructField(ITEM_ID, IntegerType(), False),
        StructField(RATING, DoubleType(), False),
        StructField(TIMESTAMP, LongType(), True),
    ]
)
INTERACTIONS = StructType(
    [
        StructField(USER_ID, IntegerType(), False),
        StructField(ITEM_ID, IntegerType(), False),
        StructField(RATING, DoubleType(), False),
        StructField(CONFIDENCE, DoubleType(), False),
    ]
)
ITEMS = StructType(
    [
        StructField(ITEM_ID, IntegerType(), False),
        StructField(TITLE, StringType(), True),
    ]
)
DATASET_SUMMARY = StructType(
    [
        StructField("total_users", LongType(), False),
        StructField("total_items", LongType(), False),
        StructField("avg_ratings_per_user", DoubleType(), False),
        StructField("avg_ratings_per_item", DoubleType(), False),
        StructField("max_ratings_per_user", LongType(), False),
        StructField("max_ratings_per_item", LongType(), False),
        StructField("min_ratings_per_user", LongType(), False),
        StructField("min_ratings_per_item", LongType(), False),
    ]
)
FACTORS = StructType(
    [
        StructField(ID, IntegerType(), False),
        StructField(FEATURES, ArrayType(FloatType()), False),
    ]
)
RECOMMENDATIONS = StructType(
    [
        StructField(USER_ID, IntegerType(), False),
        StructField(RANK, IntegerType(), False),
        StructField(ITEM_ID, IntegerType(), False),
        StructField(SCORE, FloatType(), False),
        StructField(SOURCE, StringType(), False),  # als, fold_in or popularity
    ]
)
EXPLANATIONS = StructType(
    [
        StructField(USER_ID, IntegerType(), False),
        StructField(RANK, IntegerType(), False),
        StructField(ITEM_ID, IntegerType(), False),
        StructField(BECAUSE_ITEM_ID, IntegerType(), False),
        StructField(CONTRIBUTION, FloatType(), False),
        StructField(SHARE, FloatType(), False),
    ]
)
SIMILAR_ITEMS = StructType(
    [
        StructField(ITEM_ID, IntegerType(), False),
        StructField(RANK, IntegerType(), False),
        StructField(SIMILAR_ITEM_ID, IntegerType(), False),
        StructField(SIMILARITY, FloatType(), False),
    ]
)
SIMILAR_USERS = StructType(
    [
        StructField(USER_ID, IntegerType(), False),
        StructField(RANK, IntegerType(), False),
        StructField(SIMILAR_USER_ID, IntegerType(), False),
        StructField(SIMILARITY, FloatType(), False),
    ]
)
