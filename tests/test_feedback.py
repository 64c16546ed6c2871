"""Implicit feedback: min-rating filter, confidence modes, the summary table, exclusion lists."""

from __future__ import annotations

import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from als_spark import feedback
from als_spark.config import IngestConfig

RATINGS = "user_id int, item_id int, rating double, timestamp long"
# u1 rated 10 (5), 20 (4), 30 (2); u2 rated 10 (4), 30 (3.5); u3 rated 20 (1) only.
ROWS = [(1, 10, 5.0, 1), (1, 20, 4.0, 2), (1, 30, 2.0, 3), (2, 10, 4.0, 4), (2, 30, 3.5, 5), (3, 20, 1.0, 6)]


@pytest.fixture
def ratings(spark):
    return spark.createDataFrame(ROWS, RATINGS)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("rating", [(1, 10, 5.0, 5.0), (1, 20, 4.0, 4.0), (2, 10, 4.0, 4.0)]),
        ("binary", [(1, 10, 5.0, 1.0), (1, 20, 4.0, 1.0), (2, 10, 4.0, 1.0)]),
    ],
)
def test_interactions_keep_ratings_at_or_above_min_with_confidence(spark, ratings, mode, expected):
    got = feedback.to_interactions(ratings, IngestConfig(min_rating=4.0, confidence=mode))
    want = spark.createDataFrame(expected, "user_id int, item_id int, rating double, confidence double")
    assert_df_equality(got.orderBy("user_id", "item_id"), want, ignore_nullable=True)


def test_min_rating_threshold_is_inclusive_and_handles_half_stars(spark, ratings):
    got = feedback.filter_min_rating(ratings, 3.5).select("user_id", "item_id").orderBy("user_id", "item_id")
    assert [tuple(r) for r in got.collect()] == [(1, 10), (1, 20), (2, 10), (2, 30)]


def test_dataset_summary_by_hand(spark):
    # users: 1 -> 3 interactions, 2 -> 1; items: 10 -> 2, 20 -> 1, 30 -> 1. 4 interactions in all.
    interactions = spark.createDataFrame(
        [(1, 10, 5.0, 5.0), (1, 20, 4.0, 4.0), (1, 30, 4.0, 4.0), (2, 10, 5.0, 5.0)],
        "user_id int, item_id int, rating double, confidence double",
    )
    expected = spark.createDataFrame(
        [(2, 3, 4 / 2, 4 / 3, 3, 2, 1, 1)],
        "total_users long, total_items long, avg_ratings_per_user double, avg_ratings_per_item double, "
        "max_ratings_per_user long, max_ratings_per_item long, min_ratings_per_user long, min_ratings_per_item long",
    )
    assert_approx_df_equality(feedback.dataset_summary(interactions), expected, 1e-12, ignore_nullable=True)


def _as_sets(df):
    return {r.user_id: sorted(r.exclude) for r in df.collect()}


def test_exclusions_rated_liked_and_none(ratings):
    interactions = feedback.to_interactions(ratings, IngestConfig())
    assert _as_sets(feedback.exclusions(ratings, interactions, "rated")) == {1: [10, 20, 30], 2: [10, 30], 3: [20]}
    assert _as_sets(feedback.exclusions(ratings, interactions, "liked")) == {1: [10, 20], 2: [10]}
    assert feedback.exclusions(ratings, interactions, "none") is None
