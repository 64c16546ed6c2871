"""The evaluate job: split, fit ALS on train, score it and the baselines on planted data.

Two disjoint taste groups, and a chronological split, so the train/test sets and the
popularity baseline are computed by hand below.
"""

from __future__ import annotations

import dataclasses

import pytest
from pyspark.sql import functions as F

from als_spark.analysis import baselines, evaluate, metrics
from als_spark.config import ALSConfig, Config
from als_spark.errors import ConfigError

INTERACTIONS = "user_id int, item_id int, rating double, confidence double, timestamp long"

# Group A: users 1..6 each interact with all of items 101..108; group B: users 7..9 with 201..208.
# Timestamps put each user's two latest items (the test items at 0.25 * 8 = 2) at:
LATEST = {
    1: (101, 102),
    2: (103, 104),
    3: (105, 106),
    4: (107, 108),
    5: (101, 102),
    6: (103, 104),
    7: (201, 202),
    8: (203, 204),
    9: (205, 206),
}
# Train popularity (users minus those holding the item out):
#   101..104: 6 - 2 = 4, 105..108: 6 - 1 = 5; 201..206: 3 - 1 = 2, 207..208: 3.
# Every A item (>= 4) is more popular than every B item (<= 3). With k = 2:
#   A users: unseen = their 2 test items (A) + all B items -> popularity returns exactly the test items:
#            precision = recall = ndcg = AP = 1, hit.
#   B users: unseen = all 8 A items + their 2 test items -> popularity returns 105, 106 (5, smallest ids): 0.
# Over 9 users: precision = recall = ndcg = map = hit_rate = 6/9.
# Coverage: A lists cover 101..108 (users 1-4), B lists {105, 106}: 8 of the 16 train items.
POPULARITY = {
    "precision": 6 / 9,
    "recall": 6 / 9,
    "ndcg": 6 / 9,
    "map": 6 / 9,
    "hit_rate": 6 / 9,
    "coverage": 8 / 16,
    "users": 9,
}


def _rows():
    rows = []
    for user, latest in LATEST.items():
        items = range(101, 109) if user <= 6 else range(201, 209)
        older = [i for i in items if i not in latest]
        for t, item in enumerate(older + list(latest)):
            rows.append((user, item, 5.0, 5.0, 1000 * user + t))
    return rows


@pytest.fixture
def interactions(spark):
    return spark.createDataFrame(_rows(), INTERACTIONS)


CFG = Config(als=ALSConfig(rank=4, max_iter=10, reg_param=0.01, alpha=1.0, seed=1, num_blocks=2))


def test_run_evaluate_chronological_planted_groups(spark, interactions):
    metrics_table, rows = evaluate.run_evaluate(
        spark, interactions, CFG, k=2, test_fraction=0.25, split="chronological", seed=3
    )
    assert metrics_table.schema == metrics.METRICS
    # The table and the returned rows, each against the numbers computed by hand.
    for got in ([r.asDict() for r in metrics_table.collect()], rows):
        assert [r["model"] for r in got] == ["als", "popularity", "random"]
        by_model = {r["model"]: r for r in got}
        for r in got:
            assert (r["k"], r["users"], r["split"], r["test_fraction"]) == (2, 9, "chronological", 0.25)
            assert all(0.0 <= r[m] <= 1.0 for m in metrics.METRIC_NAMES), r
        # The popularity row, computed by hand above.
        pop = {key: by_model["popularity"][key] for key in POPULARITY}
        assert pop == pytest.approx(POPULARITY)
        # ALS recovers the two groups: a user's only unseen in-group items are its 2 test items, so its
        # top 2 are exactly those: all metrics 1; coverage = the 14 test items (101..108, 201..206) of 16.
        als = {key: by_model["als"][key] for key in POPULARITY}
        assert als == pytest.approx({**{m: 1.0 for m in metrics.METRIC_NAMES}, "coverage": 14 / 16, "users": 9})


def test_run_evaluate_scores_als_with_the_configured_popularity_prior(spark, interactions):
    # A prior of 100 * ln(train count) outweighs every dot product: train counts are 4 or 5 for A
    # items (prior >= 138.6) and 2 or 3 for B items (<= 109.9). So A users get their 2 test items
    # (the only unseen A items) and B users two of 105..108 (count 5): the popularity row computed
    # by hand above, where the same ALS without the prior scores 1 everywhere.
    cfg = Config(als=CFG.als, recommend=dataclasses.replace(CFG.recommend, popularity_weight=100.0))
    _, rows = evaluate.run_evaluate(
        spark, interactions, cfg, k=2, test_fraction=0.25, split="chronological", seed=3, baselines=()
    )
    assert [r["model"] for r in rows] == ["als"]
    assert {key: rows[0][key] for key in POPULARITY} == pytest.approx(POPULARITY)


def test_run_evaluate_random_split_only_popularity(spark, interactions):
    metrics, rows = evaluate.run_evaluate(
        spark, interactions.drop("timestamp"), CFG, k=3, split="random", seed=5, baselines=("popularity",)
    )
    assert [r["model"] for r in rows] == ["als", "popularity"]
    # 2 test items per user (round(0.25 * 8)); every user is evaluated.
    assert metrics.select("users", "split", "k").distinct().collect() == [(9, "random", 3)]
    assert metrics.where(F.col("precision").isNull() | F.isnan("precision")).count() == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "by_time"}, "split must be one of"),
        ({"baselines": ("popularity", "oracle")}, "unknown baseline"),
        ({"k": 0}, "k must be"),
        ({"test_fraction": 1.0}, "test_fraction"),
    ],
)
def test_run_evaluate_rejects_bad_arguments(spark, interactions, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        evaluate.run_evaluate(spark, interactions, CFG, **kwargs)


def test_run_evaluate_chronological_needs_timestamps(spark, interactions):
    with pytest.raises(ConfigError, match="timestamp"):
        evaluate.run_evaluate(spark, interactions.drop("timestamp"), CFG, split="chronological")


# --- exclude="rated": leave out what the user rated at any value, as recommend.exclude: rated ---

RATED = "user_id int, item_id int, rating double, timestamp long"


def _sorted(df):
    return sorted((r["user_id"], list(r["exclude"])) for r in df.collect())


def test_rated_exclusions_random_split_all_ratings_but_the_test_items(spark):
    train = spark.createDataFrame([(1, 1), (1, 2), (2, 6)], "user_id int, item_id int")
    test = spark.createDataFrame([(1, 3)], "user_id int, item_id int")
    rated = spark.createDataFrame(
        [
            (1, 1, 5.0, 1),
            (1, 2, 4.0, 2),
            (1, 3, 5.0, 3),
            (1, 4, 2.0, 4),
            (1, 5, 1.0, 5),
            (2, 6, 4.0, 1),
            (2, 7, 3.0, 2),
            (3, 8, 2.0, 1),
        ],
        RATED,
    )
    got = baselines.rated_exclusions(train, test, rated, split="random")
    # user 1: train 1, 2 plus the low-rated 4, 5 (test item 3 never); user 2: 6 and 7; user 3: only low ratings.
    assert _sorted(got) == [(1, [1, 2, 4, 5]), (2, [6, 7]), (3, [8])]


def test_rated_exclusions_chronological_split_only_ratings_before_the_first_test_item(spark):
    train = spark.createDataFrame([(1, 1), (1, 2), (2, 6)], "user_id int, item_id int")
    test = spark.createDataFrame([(1, 3, 30)], "user_id int, item_id int, timestamp long")
    rated = spark.createDataFrame(
        [
            (1, 1, 5.0, 10),
            (1, 4, 2.0, 15),
            (1, 2, 4.0, 20),
            (1, 3, 5.0, 30),
            (1, 9, 2.0, 30),
            (1, 5, 1.0, 40),
            (2, 6, 4.0, 5),
            (2, 7, 3.0, 50),
        ],
        RATED,
    )
    got = baselines.rated_exclusions(train, test, rated, split="chronological")
    # user 1: 4 (t=15) is known; 9 (t=30, same time as the first test item) and 5 (t=40) are not yet;
    # user 2 has no test item, so everything it rated is known.
    assert _sorted(got) == [(1, [1, 2, 4]), (2, [6, 7])]


def test_run_evaluate_exclude_rated_hides_low_rated_items_from_every_model(spark, interactions):
    # B users 7 and 8 rated every A item low before their test items; user 9 rated 105 and 106 low
    # only after its test items (unknown at list time under the chronological split).
    low = [(u, i, 1.0, 1000 * u - 1) for u in (7, 8) for i in range(101, 109)]
    low += [(9, i, 1.0, 1000 * 9 + 50) for i in (105, 106)]
    rated = interactions.select("user_id", "item_id", "rating", "timestamp").unionByName(
        spark.createDataFrame(low, RATED)
    )
    metrics_table, rows = evaluate.run_evaluate(
        spark,
        interactions,
        CFG,
        k=2,
        test_fraction=0.25,
        split="chronological",
        seed=3,
        baselines=("popularity",),
        exclude="rated",
        rated=rated,
    )
    pop = {key: rows[1][key] for key in POPULARITY}
    # Popularity (train counts above): A users as before (all 1). Users 7, 8: the A items are
    # excluded, so their unseen items are their 2 test items (201/202, 203/204): all 1. User 9 still
    # gets 105, 106 (5 > 2): 0. Coverage: 101..108 + 201..204 = 12 of 16.
    assert rows[1]["model"] == "popularity"
    assert pop == pytest.approx({**{m: 8 / 9 for m in metrics.METRIC_NAMES}, "coverage": 12 / 16, "users": 9})


def test_run_evaluate_exclude_rated_needs_the_ratings(spark, interactions):
    with pytest.raises(ConfigError, match="exclude='rated' needs the ratings"):
        evaluate.run_evaluate(spark, interactions, CFG, exclude="rated")
    with pytest.raises(ConfigError, match="exclude must be one of train, rated"):
        evaluate.run_evaluate(spark, interactions, CFG, exclude="liked")
