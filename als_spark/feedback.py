"""Explicit ratings to implicit feedback, and the tables that describe it.

All functions are ``DataFrame -> DataFrame`` transforms, chainable with
``df.transform(fn, ...)``.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import schema as S
from als_spark.config import IngestConfig


def filter_min_rating(ratings: DataFrame, min_rating: float) -> DataFrame:
    """Keep rows whose rating is at least ``min_rating``."""
    return ratings.where(F.col(S.RATING) >= F.lit(float(min_rating)))


def with_confidence(ratings: DataFrame, mode: str) -> DataFrame:
    """Add the ALS confidence: the rating itself (``rating``) or 1.0 (``binary``)."""
    if mode == "rating":
        value = F.col(S.RATING).cast("double")
    elif mode == "binary":
        value = F.lit(1.0)
    else:
        raise ValueError(f"confidence mode must be 'rating' or 'binary', got {mode!r}")
    return ratings.withColumn(S.CONFIDENCE, value)


def filter_min_weight(ratings: DataFrame, min_weight: float) -> DataFrame:
    """Keep rows whose weight (in ``rating``) is positive and at least ``min_weight``."""
    weight = F.col(S.RATING)
    return ratings.where((weight > F.lit(0.0)) & (weight >= F.lit(float(min_weight))))


def to_interactions(ratings: DataFrame, cfg: IngestConfig) -> DataFrame:
    """``user_id, item_id, rating, confidence``: exactly what ALS trains on.

    A rating column is filtered by ``ingest.min_rating``; weights (events, or 1 per row of a
    source without ratings) by ``ingest.min_weight``, and a weight of 0 never counts.
    """
    if cfg.kind == "rating":
        kept = ratings.transform(filter_min_rating, cfg.min_rating)
    else:
        kept = ratings.transform(filter_min_weight, cfg.min_weight)
    return kept.transform(with_confidence, cfg.confidence).select(S.USER_ID, S.ITEM_ID, S.RATING, S.CONFIDENCE)


def dataset_summary(interactions: DataFrame) -> DataFrame:
    """One row describing the interactions, as in the reference notebook.

    Columns: total_users, total_items, avg/max/min ratings per user and per item.
    Averages are exact (interactions / users), not rounded.
    """
    per_user = interactions.groupBy(S.USER_ID).count()
    per_item = interactions.groupBy(S.ITEM_ID).count()
    users = per_user.agg(
        F.count(F.lit(1)).alias("total_users"),
        F.sum("count").alias("_n"),
        F.max("count").alias("max_ratings_per_user"),
        F.min("count").alias("min_ratings_per_user"),
    )
    items = per_item.agg(
        F.count(F.lit(1)).alias("total_items"),
        F.max("count").alias("max_ratings_per_item"),
        F.min("count").alias("min_ratings_per_item"),
    )
    return users.crossJoin(items).select(
        F.col("total_users").cast("long"),
        F.col("total_items").cast("long"),
        (F.col("_n") / F.col("total_users")).alias("avg_ratings_per_user"),
        (F.col("_n") / F.col("total_items")).alias("avg_ratings_per_item"),
        F.col("max_ratings_per_user").cast("long"),
        F.col("max_ratings_per_item").cast("long"),
        F.col("min_ratings_per_user").cast("long"),
        F.col("min_ratings_per_item").cast("long"),
    )


def exclusions(
    ratings: DataFrame, interactions: DataFrame, mode: str, *, deny: DataFrame | None = None
) -> DataFrame | None:
    """``user_id, exclude``: the item ids never to recommend to each user.

    ``rated``: every item the user rated (any rating); ``liked``: only the items in
    ``interactions`` (rated at least ``ingest.min_rating``); ``none``: nothing. The
    ``user_id, item_id`` pairs of ``deny`` are excluded too. ``None`` when nothing is.
    """
    if mode not in ("rated", "liked", "none"):
        raise ValueError(f"exclude mode must be 'rated', 'liked' or 'none', got {mode!r}")
    source = {"rated": ratings, "liked": interactions}.get(mode)
    if deny is not None:
        pairs = deny.select(S.USER_ID, S.ITEM_ID)
        source = pairs if source is None else source.select(S.USER_ID, S.ITEM_ID).unionByName(pairs).distinct()
    return None if source is None else items_per_user(source)


def items_per_user(pairs: DataFrame) -> DataFrame:
    """``user_id, exclude``: the item ids of each user's rows in ``pairs``, sorted (the exclusion-list shape)."""
    return pairs.groupBy(S.USER_ID).agg(F.sort_array(F.collect_list(S.ITEM_ID)).alias("exclude"))
