"""Evaluation library: per-user splits, top-k ranking metrics (vs RankingEvaluator), baselines.

Every expected number is computed by hand in the comments next to it.
"""

from __future__ import annotations

import math

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import functions as F

from als_spark.analysis import baselines, metrics, splits
from als_spark.errors import ConfigError

RECS = "user_id int, rank int, item_id int, score float"
PAIRS = "user_id int, item_id int"
EXCLUDE = "user_id int, exclude array<int>"


def log2(x: float) -> float:
    return math.log2(x)


# --- metrics ------------------------------------------------------------------------

# k = 3. Recommendations (rank order) and test items:
#   u1: 10, 20, 30 (+ 40 at rank 4, beyond k)  test {10, 30, 40, 50}  more relevant items than k
#   u2: 11, 21, 31                             test {21}              fewer relevant items than k
#   u3: 12, 22, 32                             test {99}              no hit
#   u4: (none)                                 test {10, 11}          no recommendations: zeros
#   u5: 60, 61, 62                             (no test items)        ignored, also for coverage
METRIC_RECS = [
    (1, 1, 10, 0.9),
    (1, 2, 20, 0.8),
    (1, 3, 30, 0.7),
    (1, 4, 40, 0.6),
    (2, 1, 11, 0.9),
    (2, 2, 21, 0.8),
    (2, 3, 31, 0.7),
    (3, 1, 12, 0.9),
    (3, 2, 22, 0.8),
    (3, 3, 32, 0.7),
    (5, 1, 60, 0.9),
    (5, 2, 61, 0.8),
    (5, 3, 62, 0.7),
]
METRIC_TEST = [(1, 10), (1, 30), (1, 40), (1, 50), (2, 21), (3, 99), (4, 10), (4, 11)]

# u1: hits at ranks 1 and 3 (40 is at rank 4 > k). precision 2/3, recall 2/4,
#     DCG = 1/log2(2) + 1/log2(4) = 1.5, IDCG over min(3, 4) = 3 slots = 1 + 1/log2(3) + 1/log2(4),
#     AP = (1/1 + 2/3) / min(3, 4).
U1 = dict(precision=2 / 3, recall=0.5, ndcg=1.5 / (1 + 1 / log2(3) + 0.5), ap=(1 + 2 / 3) / 3)
# u2: one hit at rank 2. precision 1/3, recall 1/1, DCG = 1/log2(3), IDCG over min(3, 1) = 1 slot = 1,
#     AP = (1/2) / 1.
U2 = dict(precision=1 / 3, recall=1.0, ndcg=1 / log2(3), ap=0.5)
# u3 and u4: zeros. Averages over the 4 evaluated users (u5 has no test item).
EXPECTED_METRICS = {
    "precision": (U1["precision"] + U2["precision"]) / 4,  # = 0.25
    "recall": (U1["recall"] + U2["recall"]) / 4,  # = 0.375
    "ndcg": (U1["ndcg"] + U2["ndcg"]) / 4,  # = (0.70392 + 0.63093) / 4 = 0.33371
    "map": (U1["ap"] + U2["ap"]) / 4,  # = (0.55556 + 0.5) / 4 = 0.26389
    "hit_rate": 2 / 4,  # u1 and u2 have a hit
    # top-3 items of evaluated users: u1 {10,20,30}, u2 {11,21,31}, u3 {12,22,32} = 9 of 20
    "coverage": 9 / 20,
    "users": 4,
}


@pytest.fixture
def metric_data(spark):
    return spark.createDataFrame(METRIC_RECS, RECS), spark.createDataFrame(METRIC_TEST, PAIRS)


def test_ranking_metrics_hand_computed(metric_data):
    recs, test = metric_data
    got = metrics.ranking_metrics(recs, test, k=3, catalog_size=20)
    assert got == pytest.approx(EXPECTED_METRICS, rel=1e-12)
    assert isinstance(got["users"], int)


def test_per_user_metrics_table(spark, metric_data):
    recs, test = metric_data
    got = metrics.per_user_metrics(recs, test, k=3)
    expected = spark.createDataFrame(
        [
            (1, 4, 2, U1["precision"], U1["recall"], U1["ndcg"], U1["ap"], 1.0),
            (2, 1, 1, U2["precision"], U2["recall"], U2["ndcg"], U2["ap"], 1.0),
            (3, 1, 0, 0.0, 0.0, 0.0, 0.0, 0.0),
            (4, 2, 0, 0.0, 0.0, 0.0, 0.0, 0.0),
        ],
        "user_id int, relevant long, hits long, precision double, recall double, ndcg double, ap double, hit double",
    )
    assert_approx_df_equality(got, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_ranking_metrics_k_cuts_the_lists(metric_data):
    recs, test = metric_data
    # k = 1: only the first item counts. u1 hits (10), u2 (11), u3 (12) miss; u4 has none.
    # precision = recall@1 of u1 = 1/4; ndcg u1 = 1 (IDCG over 1 slot); AP u1 = 1/min(1, 4) = 1.
    # coverage: {10, 11, 12} of 20.
    got = metrics.ranking_metrics(recs, test, k=1, catalog_size=20)
    assert got == pytest.approx(
        {
            "precision": 1 / 4,
            "recall": (1 / 4) / 4,
            "ndcg": 1 / 4,
            "map": 1 / 4,
            "hit_rate": 1 / 4,
            "coverage": 3 / 20,
            "users": 4,
        }
    )


def test_ranking_metrics_without_test_users_is_nan(spark, metric_data):
    recs, _ = metric_data
    got = metrics.ranking_metrics(recs, spark.createDataFrame([], PAIRS), k=3, catalog_size=20)
    assert got["users"] == 0
    assert all(math.isnan(got[m]) for m in metrics.METRIC_NAMES)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_ranking_metrics_rejects_bad_k(metric_data, bad):
    recs, test = metric_data
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        metrics.ranking_metrics(recs, test, k=bad, catalog_size=20)


def _evaluator_input(recs, test, users):
    """One row per user: predicted ids by rank and relevant ids, as doubles (RankingEvaluator's input)."""
    preds = recs.groupBy("user_id").agg(
        F.transform(
            F.sort_array(F.collect_list(F.struct("rank", "item_id"))), lambda s: s["item_id"].cast("double")
        ).alias("prediction")
    )
    labels = test.groupBy("user_id").agg(F.collect_set(F.col("item_id").cast("double")).alias("label"))
    return (
        users.join(preds, "user_id", "left")
        .join(labels, "user_id", "left")
        .select(
            F.coalesce("prediction", F.array().cast("array<double>")).alias("prediction"),
            F.coalesce("label", F.array().cast("array<double>")).alias("label"),
        )
    )


@pytest.mark.parametrize("k", [1, 3, 5])  # 5: longer than every list
def test_matches_spark_ranking_evaluator_on_evaluated_users(spark, metric_data, k):
    recs, test = metric_data
    ours = metrics.ranking_metrics(recs, test, k=k, catalog_size=20)
    # Rows for the evaluated users u1..u4 only (u4 with an empty prediction array).
    evaluated = spark.createDataFrame([(1,), (2,), (3,), (4,)], "user_id int")
    data = _evaluator_input(recs, test, evaluated)
    for ours_name, spark_name in [
        ("precision", "precisionAtK"),
        ("recall", "recallAtK"),
        ("ndcg", "ndcgAtK"),
        ("map", "meanAveragePrecisionAtK"),
    ]:
        theirs = RankingEvaluator(metricName=spark_name, k=k).evaluate(data)
        assert ours[ours_name] == pytest.approx(theirs, rel=1e-9), ours_name


def test_ranking_evaluator_counts_users_without_test_items_as_zero(spark, metric_data):
    # The documented difference: with u5 (recommendations, no test item) as a row, RankingEvaluator
    # averages over 5 rows: precision@3 = (2/3 + 1/3) / 5 = 0.2, where ours ignores u5 and gives 0.25.
    recs, test = metric_data
    everyone = spark.createDataFrame([(1,), (2,), (3,), (4,), (5,)], "user_id int")
    theirs = RankingEvaluator(metricName="precisionAtK", k=3).evaluate(_evaluator_input(recs, test, everyone))
    assert theirs == pytest.approx(0.2)
    assert metrics.ranking_metrics(recs, test, k=3, catalog_size=20)["precision"] == pytest.approx(0.25)


# --- splits --------------------------------------------------------------------------

# User u has N[u] rows. test_fraction 0.25, rule min(round_half_up(0.25 n), n - 1):
# 1 -> min(0, 0) = 0, 2 -> min(round(0.5) = 1, 1) = 1, 3 -> round(0.75) = 1, 4 -> 1,
# 6 -> round(1.5) = 2, 10 -> round(2.5) = 3.
N = {1: 1, 2: 2, 3: 3, 4: 4, 6: 6, 10: 10}
EXPECTED_TEST_COUNTS = {1: 0, 2: 1, 3: 1, 4: 1, 6: 2, 10: 3}
RATINGS = "user_id int, item_id int, rating double, timestamp long"


@pytest.fixture
def ratings(spark):
    rows = [(u, 100 + i, float(1 + (u + i) % 5), 1000 * u + i) for u, n in N.items() for i in range(n)]
    return spark.createDataFrame(rows, RATINGS)


def _counts(df):
    return {r["user_id"]: r["count"] for r in df.groupBy("user_id").count().collect()}


def test_random_split_exact_per_user_counts_and_partition_of_rows(ratings):
    train, test = splits.split_per_user_random(ratings, test_fraction=0.25, seed=7)
    got = _counts(test)
    assert {u: got.get(u, 0) for u in N} == EXPECTED_TEST_COUNTS
    assert _counts(train) == {u: N[u] - EXPECTED_TEST_COUNTS[u] for u in N}
    # Every row lands in exactly one side, with all its columns, in the input's column order.
    assert train.columns == ratings.columns == test.columns
    assert_df_equality(train.unionByName(test), ratings, ignore_row_order=True, ignore_nullable=True)


def test_split_keeps_one_train_row_per_user_even_with_a_large_fraction(ratings):
    # 0.9: n=1 -> min(1, 0) = 0; n=2 -> min(2, 1) = 1; n=10 -> min(9, 9) = 9.
    _, test = splits.split_per_user_random(ratings, test_fraction=0.9, seed=7)
    got = _counts(test)
    assert got.get(1, 0) == 0 and got[2] == 1 and got[10] == 9


@pytest.fixture
def many(spark):
    # 8 users x 12 items: 3 test rows each at 0.25.
    rows = [(u, i, 4.0, u * 100 + i) for u in range(1, 9) for i in range(1, 13)]
    return spark.createDataFrame(rows, RATINGS)


def _pairs(df):
    return sorted((r["user_id"], r["item_id"]) for r in df.select("user_id", "item_id").collect())


def test_random_split_is_deterministic_and_independent_of_partitioning(many):
    _, first = splits.split_per_user_random(many, seed=42)
    _, again = splits.split_per_user_random(many, seed=42)
    _, shuffled = splits.split_per_user_random(many.repartition(5, "item_id").orderBy(F.rand(3)), seed=42)
    assert len(_pairs(first)) == 8 * 3
    assert _pairs(first) == _pairs(again) == _pairs(shuffled)
    # Other columns do not influence which rows are held out.
    _, other_values = splits.split_per_user_random(many.withColumn("rating", F.lit(1.0)), seed=42)
    assert _pairs(other_values) == _pairs(first)


def test_random_split_changes_with_the_seed(many):
    _, a = splits.split_per_user_random(many, seed=42)
    _, b = splits.split_per_user_random(many, seed=43)
    assert _counts(a) == _counts(b) == {u: 3 for u in range(1, 9)}
    assert _pairs(a) != _pairs(b)


def test_random_split_holds_out_the_smallest_hashes(many):
    # The documented order, recomputed independently in SQL for user 1.
    _, test = splits.split_per_user_random(many, seed=42)
    order = (
        many.where("user_id = 1")
        .select(
            "item_id",
            F.expr("xxhash64('split', CAST(42 AS BIGINT), CAST(user_id AS BIGINT), CAST(item_id AS BIGINT))").alias(
                "h"
            ),
        )
        .orderBy("h", "item_id")
        .collect()
    )
    assert sorted(r["item_id"] for r in order[:3]) == sorted(i for u, i in _pairs(test) if u == 1)


def test_chronological_split_holds_out_the_latest(spark):
    rows = [
        # u1, 4 rows -> 1 test: the latest (t=40, item 13)
        (1, 10, 5.0, 10),
        (1, 11, 4.0, 30),
        (1, 12, 4.0, 20),
        (1, 13, 5.0, 40),
        # u2, 6 rows -> 2 test: t=50 is tied between items 25 and 21: the larger id counts as later,
        # so test = {25 (t=50), 21 (t=50)} and 24 (t=45) stays; the null timestamp is the earliest.
        (2, 20, 4.0, None),
        (2, 21, 4.0, 50),
        (2, 22, 4.0, 5),
        (2, 23, 4.0, 6),
        (2, 24, 4.0, 45),
        (2, 25, 4.0, 50),
        # u3, 1 row -> stays in train
        (3, 30, 4.0, 99),
    ]
    df = spark.createDataFrame(rows, RATINGS)
    train, test = splits.split_per_user_chronological(df, test_fraction=0.25)
    expected_test = spark.createDataFrame([(1, 13, 5.0, 40), (2, 21, 4.0, 50), (2, 25, 4.0, 50)], RATINGS)
    assert_df_equality(test, expected_test, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(train.unionByName(test), df, ignore_row_order=True, ignore_nullable=True)


def test_chronological_split_with_ties_takes_larger_item_ids(spark):
    # 4 rows at the same time -> 1 test row: the largest item id.
    df = spark.createDataFrame([(1, i, 4.0, 7) for i in (3, 9, 1, 5)], RATINGS)
    _, test = splits.split_per_user_chronological(df, test_fraction=0.25)
    assert _pairs(test) == [(1, 9)]


def test_chronological_split_needs_a_timestamp(spark):
    df = spark.createDataFrame([(1, 2, 4.0)], "user_id int, item_id int, rating double")
    with pytest.raises(ConfigError, match="timestamp"):
        splits.split_per_user_chronological(df)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_split_rejects_bad_fraction(many, fraction):
    with pytest.raises(ConfigError, match="test_fraction"):
        splits.split_per_user_random(many, test_fraction=fraction)


# --- baselines ---------------------------------------------------------------------------

# Train interactions per item: 1 -> 3 users, 2 -> 3, 3 -> 2, 4 -> 1, 5 -> 1.
# Popularity order (count desc, then item id): 1 (3), 2 (3), 3 (2), 4 (1), 5 (1).
POP_TRAIN = [(10, 1), (11, 1), (12, 1), (10, 2), (11, 2), (13, 2), (12, 3), (13, 3), (14, 4), (10, 5)]


@pytest.fixture
def pop_train(spark):
    return spark.createDataFrame(POP_TRAIN, PAIRS)


def test_most_popular_with_exclusions_and_ties(spark, pop_train):
    users = spark.createDataFrame([(1,), (2,), (2,), (3,), (4,)], "user_id int")  # user 2 listed twice
    exclude = spark.createDataFrame(
        [(1, [1]), (3, [1, 2, 3, 4]), (4, [2, 9]), (99, [5])],  # user 2 has no entry; 99 is not asked for
        EXCLUDE,
    )
    got = baselines.most_popular(pop_train, users, k=2, exclude=exclude)
    expected = spark.createDataFrame(
        [
            (1, 1, 2, 3.0),
            (1, 2, 3, 2.0),  # 1 excluded: next are 2 (3) and 3 (2)
            (2, 1, 1, 3.0),
            (2, 2, 2, 3.0),  # nothing excluded; 1 and 2 tie at 3: smaller id first
            (3, 1, 5, 1.0),  # only item 5 unseen: fewer than k
            (4, 1, 1, 3.0),
            (4, 2, 3, 2.0),  # 2 excluded (9 is not in the catalogue)
        ],
        RECS,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_most_popular_without_exclusions(spark, pop_train):
    users = spark.createDataFrame([(7,)], "user_id int")
    got = baselines.most_popular(pop_train, users, k=4)
    # 1 and 2 tie (3), then 3 (2), then 4 and 5 tie (1): 4 first.
    expected = spark.createDataFrame([(7, 1, 1, 3.0), (7, 2, 2, 3.0), (7, 3, 3, 2.0), (7, 4, 4, 1.0)], RECS)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_most_popular_needs_more_candidates_than_k_when_the_top_is_excluded(spark, pop_train):
    # k = 1 and user 1 excludes the 3 most popular: the candidate list must reach item 4.
    users = spark.createDataFrame([(1,), (2,)], "user_id int")
    exclude = spark.createDataFrame([(1, [1, 2, 3])], EXCLUDE)
    got = baselines.most_popular(pop_train, users, k=1, exclude=exclude)
    expected = spark.createDataFrame([(1, 1, 4, 1.0), (2, 1, 1, 3.0)], RECS)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.fixture
def catalogue(spark):
    # 20 items 1..20, each interacted with by some user.
    return spark.createDataFrame([(100 + i % 3, i) for i in range(1, 21)], PAIRS)


def _lists(df):
    out: dict[int, list[int]] = {}
    for r in df.orderBy("user_id", "rank").collect():
        out.setdefault(r["user_id"], []).append(r["item_id"])
    return out


def test_random_items_exact_sizes_and_exclusions(spark, catalogue):
    users = spark.createDataFrame([(1,), (2,), (3,)], "user_id int")
    exclude = spark.createDataFrame([(1, list(range(1, 16))), (2, list(range(1, 19))), (3, [2, 4, 6])], EXCLUDE)
    got = baselines.random_items(catalogue, users, k=5, seed=1, exclude=exclude)
    lists = _lists(got)
    # u1 excludes 1..15: exactly the 5 unseen items 16..20 remain, all returned.
    assert sorted(lists[1]) == [16, 17, 18, 19, 20]
    # u2 excludes 1..18: only 19 and 20 exist.
    assert sorted(lists[2]) == [19, 20]
    # u3: 5 distinct items, none excluded.
    assert len(set(lists[3])) == 5 and not set(lists[3]) & {2, 4, 6}
    # Ranks 1..n, scores in [0, 1) and non-increasing with rank.
    for r in got.groupBy("user_id").agg(F.sort_array(F.collect_list(F.struct("rank", "score"))).alias("s")).collect():
        ranks, scores = [x["rank"] for x in r["s"]], [x["score"] for x in r["s"]]
        assert ranks == list(range(1, len(ranks) + 1))
        assert all(0.0 <= s < 1.0 for s in scores) and scores == sorted(scores, reverse=True)


def test_random_items_deterministic_by_seed(spark, catalogue):
    users = spark.createDataFrame([(u,) for u in range(1, 6)], "user_id int")
    a = _lists(baselines.random_items(catalogue, users, k=5, seed=1))
    b = _lists(baselines.random_items(catalogue.repartition(4).orderBy(F.rand(5)), users.repartition(3), k=5, seed=1))
    c = _lists(baselines.random_items(catalogue, users, k=5, seed=2))
    assert a == b
    assert a != c
    # Different users get different lists (the user id is part of the hash).
    assert len({tuple(v) for v in a.values()}) == 5


def test_random_items_are_roughly_uniform(spark):
    # 400 users pick 1 of 10 items: each item expected 40 times. A biased draw (e.g. always the
    # smallest ids) puts 400 on one item; allow 20..60 (more than 3 standard deviations, sd = 6).
    train = spark.createDataFrame([(1, i) for i in range(10)], PAIRS)
    users = spark.createDataFrame([(u,) for u in range(400)], "user_id int")
    counts = {
        r["item_id"]: r["count"]
        for r in baselines.random_items(train, users, k=1, seed=3).groupBy("item_id").count().collect()
    }
    assert sorted(counts) == list(range(10))
    assert all(20 <= c <= 60 for c in counts.values()), counts


def test_random_items_are_independent_of_the_split_with_the_same_seed(spark):
    # 200 users each rated 20 of 40 items; the 0.25 split holds out 5 of them. Each user has
    # 25 unseen items (5 test + 20 never rated), so 5 uniform random picks hit 5 * 5/25 = 1 test
    # item on average: precision@5 = 0.2 (sd of the mean over 200 users ~ 0.012; allow 0.15..0.25).
    # Drawing by the split's own hash order would never (or always) pick a test item.
    rows = [(u, (u + 2 * j) % 40) for u in range(200) for j in range(20)]
    df = spark.createDataFrame(rows, PAIRS)
    train, test = splits.split_per_user_random(df, test_fraction=0.25, seed=42)
    exclude = train.groupBy("user_id").agg(F.collect_list("item_id").alias("exclude"))
    users = test.select("user_id").distinct()
    recs = baselines.random_items(df, users, k=5, seed=42, exclude=exclude)
    got = metrics.ranking_metrics(recs, test, k=5, catalog_size=40)
    assert got["users"] == 200
    assert 0.15 <= got["precision"] <= 0.25, got
