"""compare / converge: list agreement, the statistical test, the verdicts, focus entities, convergence.

List measures and tests are checked against numbers computed by hand (in the comments).
The end-to-end checks (marked slow) use the synthetic generator's planted taste groups.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from als_spark import schema as S
from als_spark import synthetic
from als_spark.analysis import agreement as A
from als_spark.analysis import compare, converge, fits, focus, lists, progress
from als_spark.config import build_config
from als_spark.errors import ConfigError

# --- Jaccard@k and rank-biased overlap, by hand --------------------------------------------------


def test_jaccard_at_k_hand_computed():
    assert A.jaccard_at_k([1, 2, 3], [1, 2, 3]) == 1.0
    assert A.jaccard_at_k([1, 2, 3], [3, 2, 1]) == 1.0  # order inside the top k does not matter
    assert A.jaccard_at_k([1, 2, 3], [4, 5, 6]) == 0.0
    assert A.jaccard_at_k([1, 2, 3, 4, 5], [1, 2, 6, 7, 8]) == pytest.approx(2 / 8)  # {1,2} of {1..8}
    assert A.jaccard_at_k([1, 2, 3], [1, 4, 2], k=2) == pytest.approx(1 / 3)  # {1,2} vs {1,4}
    assert A.jaccard_at_k([1, 2, 3], [1]) == pytest.approx(1 / 3)  # different lengths
    assert A.jaccard_at_k([], []) == 1.0 and A.jaccard_at_k([1], []) == 0.0


def test_rank_biased_overlap_hand_computed():
    p = 0.9
    assert A.rank_biased_overlap([1, 2, 3], [1, 2, 3], p) == pytest.approx(1.0)
    assert A.rank_biased_overlap([1, 2, 3], [4, 5, 6], p) == 0.0
    # [1,2,3] vs [1,3,2]: X1 = 1, X2 = 1, X3 = 3 (prefix overlaps)
    # (1-p)/p * (1*.9 + 1/2*.81 + 3/3*.729) + 3/3 * .729 = 0.2260 + 0.729 = 0.955
    assert A.rank_biased_overlap([1, 2, 3], [1, 3, 2], p) == pytest.approx(0.955, abs=1e-9)
    # a disagreement at the top costs more: [2,1,3]: X1 = 0, X2 = 2, X3 = 3
    # (1/9) * (0 + .81 + .729) + .729 = 0.171 + 0.729 = 0.900
    assert A.rank_biased_overlap([1, 2, 3], [2, 1, 3], p) == pytest.approx(0.900, abs=1e-9)
    # different lengths, s = 2 (short [1,5]), l = 4 (long [1,2,3,4]): X1..X4 = 1
    # term1 = .9 + .81/2 + .729/3 + .6561/4 = 1.712025; term2 = 1*1/(2*3)*.729 + 1*2/(2*4)*.6561 = 0.285525
    # (1/9) * (1.712025 + 0.285525) + ((1 - 1)/4 + 1/2) * .6561 = 0.22195 + 0.32805 = 0.55
    assert A.rank_biased_overlap([1, 2, 3, 4], [1, 5], p) == pytest.approx(0.55, abs=1e-12)
    assert A.rank_biased_overlap([1, 5], [1, 2, 3, 4], p) == pytest.approx(0.55, abs=1e-12)  # symmetric
    # a prefix of the other list: the extrapolation assumes it continues to agree
    assert A.rank_biased_overlap([1, 2, 3, 4], [1, 2], p) == pytest.approx(1.0)
    assert A.rank_biased_overlap([], []) == 1.0 and A.rank_biased_overlap([1, 2], []) == 0.0
    with pytest.raises(ValueError):
        A.rank_biased_overlap([1], [1], p=1.0)


def test_spark_expressions_equal_the_reference_functions(spark):
    rng = random.Random(7)
    cases = [([1, 2, 3], [1, 3, 2]), ([1, 2, 3, 4], [1, 5]), ([], []), ([1, 2], []), ([], [3]), ([1, 2, 3], [1, 2, 3])]
    for _ in range(60):
        pool = list(range(1, 12))
        cases.append((rng.sample(pool, rng.randint(0, 7)), rng.sample(pool, rng.randint(0, 7))))
    df = spark.createDataFrame([(i, a, b) for i, (a, b) in enumerate(cases)], "i int, a array<int>, b array<int>")
    got = df.select(
        "i", A.jaccard_col(F.col("a"), F.col("b")).alias("j"), A.rbo_col(F.col("a"), F.col("b"), 0.8).alias("r")
    ).collect()
    for row in got:
        a, b = cases[row["i"]]
        assert row["j"] == pytest.approx(A.jaccard_at_k(a, b), abs=1e-12), (a, b)
        assert row["r"] == pytest.approx(A.rank_biased_overlap(a, b, 0.8), abs=1e-12), (a, b)


def test_lists_follow_rank_not_row_order_or_score_ties(spark):
    # Two tables with the same ranks (ties in similarity already broken by id, as top_k does)
    # but rows in a different order: identical lists, agreement 1.
    rows = [(1, 1, 5, 0.9), (1, 2, 3, 0.9), (1, 3, 4, 0.5), (2, 1, 1, 0.7)]
    schema = "user_id int, rank int, similar_user_id int, similarity float"
    t1 = spark.createDataFrame(rows, schema)
    t2 = spark.createDataFrame(list(reversed(rows)), schema).repartition(3)
    l1 = lists.ranked_lists(t1, key=S.USER_ID, other=S.SIMILAR_USER_ID, score=S.SIMILARITY)
    l2 = lists.ranked_lists(t2, key=S.USER_ID, other=S.SIMILAR_USER_ID, score=S.SIMILARITY)
    assert {r["id"]: list(r["items"]) for r in l1.collect()} == {1: [5, 3, 4], 2: [1]}
    entity_lists = l1.select(F.lit("similar_users").alias("table"), F.lit(0).alias("run"), "id", "items").unionByName(
        l2.select(F.lit("similar_users").alias("table"), F.lit(1).alias("run"), "id", "items")
    )
    got = lists.pair_agreement(entity_lists, [(0, 1)]).collect()
    assert sorted((r["id"], r["jaccard"], r["rbo"], r["identical"]) for r in got) == [
        (1, 1.0, 1.0, 1.0),
        (2, 1.0, 1.0, 1.0),
    ]


# --- the statistical test ----------------------------------------------------------------------


def test_run_label_permutation_by_hand():
    # fits 0,1 (A) and 2,3 (B); the within pairs agree 0.9 and 0.8, every A-B pair 0.1.
    values = {(0, 1): 0.9, (2, 3): 0.8, (0, 2): 0.1, (0, 3): 0.1, (1, 2): 0.1, (1, 3): 0.1}
    t = A.run_label_permutation(values, [0, 1], [2, 3])
    # 6 splits: {0,1}|{2,3} and its mirror give min(0.9, 0.8) - 0.1 = 0.7; the other four put one
    # A-B pair (0.1) in each group and two within pairs among the 4 "between": min(.1,.1) - (.9+.8+.1+.1)/4 < 0
    assert (t.within_a, t.within_b, t.between, t.statistic) == pytest.approx((0.9, 0.8, 0.1, 0.7))
    assert t.labelings == 6 and t.p_value == pytest.approx(2 / 6) and t.smallest_p == pytest.approx(2 / 6)
    assert A.significant(t) and A.level(t) == pytest.approx(2 / 6)  # the most extreme split: p = smallest p
    # 3 + 3 fits that all agree alike: every split ties, p = 1
    flat = {(x, y): 0.5 for x in range(6) for y in range(6) if x < y}
    f = A.run_label_permutation(flat, [0, 1, 2], [3, 4, 5])
    assert f.labelings == 20 and f.smallest_p == pytest.approx(0.1) and f.p_value == 1.0 and f.statistic == 0.0
    assert not A.significant(f)
    # A stable (0.9), B as unstable as the A-B pairs (0.3): B's own seeds disagree as much as A and B do
    # -> statistic min(0.9, 0.3) - 0.3 = 0, not significant, whatever its p-value
    mixed = {(0, 1): 0.9, (0, 2): 0.9, (1, 2): 0.9, (3, 4): 0.3, (3, 5): 0.3, (4, 5): 0.3}
    mixed.update({(x, y): 0.3 for x in range(3) for y in range(3, 6)})
    m = A.run_label_permutation(mixed, [0, 1, 2], [3, 4, 5])
    assert m.statistic == pytest.approx(0.0) and not A.significant(m)
    # 4 + 4 fits, within 0.9, between 0.2: 70 splits, the observed and its mirror are the top two
    four = {(x, y): 0.9 if (x < 4) == (y < 4) else 0.2 for x in range(8) for y in range(8) if x < y}
    t4 = A.run_label_permutation(four, [0, 1, 2, 3], [4, 5, 6, 7])
    assert t4.p_value == pytest.approx(2 / 70) and A.level(t4) == 0.05 and A.significant(t4)
    with pytest.raises(ValueError, match="lacks"):
        A.run_label_permutation({(0, 1): 1.0}, [0, 1], [2, 3])


def test_dominance_by_hand():
    # within - between = +0.2, +0.1, 0, -0.1, nan (left out): (2 - 1) / 4
    assert A.dominance([0.9, 0.5, 0.4, 0.3, np.nan], [0.7, 0.4, 0.4, 0.4, 0.1]) == pytest.approx(0.25)
    assert A.dominance([1.0, 1.0], [0.0, 0.5]) == 1.0 and math.isnan(A.dominance([], []))


# --- focus entities and seeds ---------------------------------------------------------------------


def test_focus_by_id_and_by_zero_based_index_of_sorted_distinct_ids(spark):
    # users 12, 5, 3, 9 have interactions; 7 rated only below min_rating and is filtered out before.
    interactions = spark.createDataFrame(
        [(12, 100), (5, 100), (3, 101), (9, 102), (3, 100), (12, 103)], "user_id int, item_id int"
    )
    resolve = lambda **kw: focus.resolve_focus(interactions, focus.Focus(**kw, order="sorted"))  # noqa: E731
    assert [resolve(kind="user", index=i) for i in range(4)] == [3, 5, 9, 12]  # sorted, not file order
    assert resolve(kind="user", id=9) == 9
    assert resolve(kind="item", index=3) == 103
    with pytest.raises(ConfigError, match="user-id 7"):
        resolve(kind="user", id=7)
    with pytest.raises(ConfigError, match="out of range.*4 distinct users"):
        resolve(kind="user", index=4)
    with pytest.raises(ConfigError):
        focus.Focus("user", id=1, index=1)
    with pytest.raises(ConfigError):
        focus.Focus("user", index=-1)
    with pytest.raises(ConfigError, match="--index-order must be one of input, sorted"):
        focus.Focus("user", index=1, order="file")
    with pytest.raises(ConfigError, match="needs the input rows in their order"):
        focus.resolve_focus(interactions, focus.Focus("user", index=0))


def test_focus_index_in_input_order_is_the_notebooks_factorize_of_the_kept_rows(spark):
    # The input's rows in file order. The notebook keeps rating >= 4, then numbers ids as they first
    # appear (pd.factorize): rows 0 and 1 are below 4, and the pair (5, 104) ends on a rating of 1
    # (its latest), so it is no interaction even though row 8 alone would pass.
    rows = spark.createDataFrame(
        [
            (7, 100, 2.0),  # 0
            (9, 101, 1.0),  # 1
            (12, 103, 5.0),  # 2
            (5, 100, 4.0),  # 3
            (3, 101, 5.0),  # 4
            (9, 102, 4.0),  # 5
            (3, 100, 4.0),  # 6
            (12, 100, 5.0),  # 7
            (5, 104, 5.0),  # 8
            (5, 104, 1.0),  # 9
        ],
        "user_id int, item_id int, rating double",
    )
    interactions = spark.createDataFrame(
        [(12, 103), (5, 100), (3, 101), (9, 102), (3, 100), (12, 100)], "user_id int, item_id int"
    )
    ingest = build_config(overrides=["ingest.min_rating=4"]).ingest

    def resolve(kind: str, index: int, order: str = "input") -> int:
        return focus.resolve_focus(interactions, focus.Focus(kind, index=index, order=order), rows=rows, ingest=ingest)

    assert [resolve("user", i) for i in range(4)] == [12, 5, 3, 9]
    assert [resolve("item", i) for i in range(4)] == [103, 100, 101, 102]
    assert [resolve("item", i, "sorted") for i in range(4)] == [100, 101, 102, 103]
    with pytest.raises(ConfigError, match="out of range.*4 distinct items"):
        resolve("item", 4)  # 104 is no interaction
    # A POSITION column gives the order where the rows' own order is not the input's.
    shuffled = rows.withColumn(focus.POSITION, F.lit(100) - F.monotonically_increasing_id()).orderBy(focus.POSITION)
    reverse = [
        focus.resolve_focus(interactions, focus.Focus("user", index=i), rows=shuffled, ingest=ingest) for i in range(4)
    ]
    assert reverse == [12, 3, 9, 5]  # rows 7, 6, 5, 3 first, in the given positions
    assert focus.Focus("user", index=10).describe() == "user index 10 (input order)"
    assert focus.Focus("user", index=10).at(38).resolved == 38


def test_seed_lists_are_disjoint():
    cfg = build_config()
    assert fits.seed_lists(cfg, cfg, 3) == ([42, 43, 44], [45, 46, 47])  # both say seed 42: B moves on
    assert fits.seed_lists(cfg, build_config(overrides=["als.seed=7"]), 2) == ([42, 43], [7, 8])
    with pytest.raises(ConfigError, match="overlap"):
        fits.seed_lists(cfg, cfg, 3, seeds_a=[1, 2], seeds_b=[2, 3])
    with pytest.raises(ConfigError, match=">= 2"):
        fits.seed_lists(cfg, cfg, 1)


# --- progress ------------------------------------------------------------------------------------------


def test_fit_cost_and_progress_message():
    records = [progress.FitRecord("x", 1, 3.0, 7), progress.FitRecord("x", 3, 7.0, 11)]
    cost = progress.cost_from(records)
    assert cost == progress.FitCost(
        seconds_per_iteration=2.0, overhead_seconds=1.0, jobs_before=5.0, jobs_per_iteration=2.0
    )
    monitor = progress.FitMonitor.__new__(progress.FitMonitor)
    monitor.label, monitor.iterations, monitor.cost = "B seed 1", 20, cost
    # 15 jobs done -> (15 - 5) / 2 = 5 iterations in 11 - 1 s -> 2 s each -> 15 left -> 30 s
    assert monitor.progress_message(11.0, 15) == "B seed 1: 11 s elapsed, iteration ~5 of 20, ~30 s left"
    # 6 jobs: before the first iteration ends; the time estimate gives what is left
    assert monitor.progress_message(11.0, 6) == "B seed 1: 11 s elapsed, iteration ~0 of 20, ~30 s left"
    # no job count (Spark Connect): by time, (11 - 1) / 2 = 5 iterations, 1 + 20 * 2 - 11 = 30 s left
    assert monitor.progress_message(11.0, None) == "B seed 1: 11 s elapsed, iteration ~5 of 20 by time, ~30 s left"
    assert progress.format_seconds(200) == "3 min 20 s" and progress.format_seconds(7500) == "2 h 05 min"


def test_fit_monitor_counts_the_jobs_of_its_block_and_restores_the_job_group(spark, monkeypatch):
    clock = [100.0]  # the monitor's clock, moved by hand
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    sc = spark.sparkContext
    sc.setLocalProperty("spark.jobGroup.id", "outer")
    try:
        with progress.FitMonitor(spark, "two jobs", iterations=1, interval=0) as monitor:
            spark.range(10).collect()
            spark.range(5).collect()
            clock[0] = 102.5
        assert monitor.jobs == 2 and monitor.seconds == 2.5  # from entering the block to leaving it
        assert sc.getLocalProperty("spark.jobGroup.id") == "outer"  # the caller's job group is back
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)


# --- end to end on planted groups -------------------------------------------------------------------------
# 100 users and 80 items in two planted taste groups, 5 iterations. Measured: rank 2 and rank 20 both
# separate the groups, so they recommend the same popular in-group items, but they order the
# neighbours inside a group differently: rank 20's neighbour lists agree across its seeds at 0.90
# (Jaccard@5), rank 2's at 0.82-0.86, and the two ranks' at 0.69-0.74.


@pytest.fixture(scope="module")
def planted(spark):
    data = synthetic.generate(n_users=100, n_items=80, n_ratings=3000, n_groups=2, seed=42)
    ratings = spark.createDataFrame(data.ratings.astype({S.RATING: "float64"}), schema=S.RATINGS).cache()
    ratings.count()
    yield ratings
    ratings.unpersist()


def _cfg(*overrides):
    return build_config(overrides=["als.max_iter=5", "als.num_blocks=2", *overrides])


@pytest.fixture(scope="module")
def fitted(spark, planted):
    """Three seeds each of rank 2, rank 2 again (other seeds) and rank 20 (timed and scored on a holdout)."""
    runs = {
        "rank 2": fits.fit_runs(
            spark, planted, _cfg("als.rank=2"), [42, 43, 44], name="rank 2", calibration=(), progress_interval=0
        ),
        "rank 2 again": fits.fit_runs(
            spark, planted, _cfg("als.rank=2"), [7, 8, 9], name="rank 2 again", calibration=(), progress_interval=0
        ),
        "rank 20": fits.fit_runs(
            spark,
            planted,
            _cfg("als.rank=20"),
            [45, 46, 47],
            name="rank 20",
            calibration=(1, 2),
            warm_up=False,
            holdout=True,
            progress_interval=0,
        ),
    }
    yield runs
    for r in runs.values():
        r.release()


@pytest.mark.slow
def test_seed_only_difference_is_not_distinguishable(spark, fitted):
    result = compare.compare_runs(spark, fitted["rank 2"], fitted["rank 2 again"])
    assert result.verdicts == {t: compare.NOT_DISTINGUISHABLE for t in lists.TABLES}
    assert all(not A.significant(t.test) for t in result.tests)  # RBO agrees
    assert "The two configurations differ only in their seeds." in result.report
    with pytest.raises(ConfigError, match="overlap"):
        compare.compare_runs(spark, fitted["rank 2"], fitted["rank 2"])


@pytest.mark.slow
def test_rank_2_against_rank_20_on_planted_groups(spark, fitted):
    result = compare.compare_runs(
        spark,
        fitted["rank 2"],
        fitted["rank 20"],
        focus=[focus.Focus("user", index=10, order="sorted"), focus.Focus("item", id=3)],
    )
    # Neighbours: different beyond seed noise. Recommendations: both ranks recommend the same
    # popular items of the user's group (every pair of fits agrees at >= 0.98), so not.
    assert result.verdicts == {
        "similar_users": compare.DIFFERENT,
        "similar_items": compare.DIFFERENT,
        "recommendations": compare.NOT_DISTINGUISHABLE,
    }
    users = next(t for t in result.tests if (t.table, t.measure) == ("similar_users", "jaccard"))
    assert users.test.p_value == pytest.approx(0.1) and users.test.smallest_p == pytest.approx(
        0.1
    )  # the most extreme split
    assert users.test.statistic > 0.1 and users.dominance_a > 0.3 and users.dominance_b > 0.3
    agreement = result.agreement.toPandas()
    assert result.agreement.schema == compare.AGREEMENT
    sizes = agreement.groupby("table").size().to_dict()
    data = result.summary["data"]
    assert (sizes["similar_users"], sizes["similar_items"]) == (data["users"], data["items"]) == (100, 80)
    assert sizes["recommendations"] == 98  # two users rated all 80 items: nothing left to recommend
    values = agreement.drop(columns=["table", "id"]).to_numpy()
    assert np.nanmin(values) >= 0.0 and np.nanmax(values) <= 1.0
    assert result.pairs.count() == 15 * 3  # C(6, 2) pairs of fits per table
    # The per-pair means are the test's input: within A is the mean of its 3 pairs.
    pairs = result.pairs.toPandas()
    within_a = pairs[(pairs["table"] == "similar_users") & (pairs["kind"] == "within_a")]["jaccard"]
    assert len(within_a) == 3 and users.test.within_a == pytest.approx(within_a.mean())
    # The focus user's lists, recomputed with the reference functions, give its row of the table.
    focus_rows = result.summary["focus"]
    assert [(f["focus"], f["id"], f["table"]) for f in focus_rows] == [
        ("user index 10 (sorted order)", 11, "similar_users"),
        ("user index 10 (sorted order)", 11, "recommendations"),
        ("item id 3", 3, "similar_items"),
    ]  # ids 1..100 sorted: index 10 is id 11
    run_items = {int(run): [i for i, _ in entries] for run, entries in focus_rows[0]["lists"].items()}
    assert sorted(run_items) == list(range(6)) and all(len(v) == 5 and 11 not in v for v in run_items.values())
    row = agreement[(agreement["table"] == "similar_users") & (agreement["id"] == 11)].iloc[0]
    within = np.mean([A.jaccard_at_k(run_items[x], run_items[y]) for x, y in [(0, 1), (0, 2), (1, 2)]])
    between = np.mean([A.rank_biased_overlap(run_items[x], run_items[y]) for x in range(3) for y in range(3, 6)])
    assert row["jaccard_within_a"] == pytest.approx(within) and row["rbo_between"] == pytest.approx(between)
    assert "| rank | rank 2 seed 42 | rank 2 seed 43 | rank 2 seed 44 | rank 20 seed 45 |" in result.report
    assert "## user index 10 (sorted order) (= user id 11 in the input file): similar users" in result.report
    assert "## item id 3: similar items" in result.report
    # rank 20 was timed (fits of 1 and 2 iterations, then 5) and scored on a holdout
    cost = result.summary["costs"]["b"]
    assert [c["iterations"] for c in cost["calibration"]] == [1, 2]
    # its fits are 5 iterations, 3 more than the longest calibration fit: the fixed cost cancels in
    # (median 5-iteration fit - 2-iteration fit) / 3, from the seconds recorded
    assert cost["measured_as"] == "(median 5-iteration fit - 2-iteration fit) / 3"
    assert cost["seconds_per_iteration"] == pytest.approx(
        (np.median(cost["fit_seconds"]) - cost["calibration"][1]["seconds"]) / 3
    )
    # implicit ALS runs one YtY job per half-iteration: 2 more Spark jobs per iteration
    assert cost["calibration"][1]["jobs"] - cost["calibration"][0]["jobs"] == 2
    assert 0 < result.summary["holdout"]["b"]["ndcg"] <= 1 and "a" not in result.summary["holdout"]
    try:
        import matplotlib  # noqa: F401 - the optional `plot` extra
    except ImportError:
        assert result.png is None
    else:
        assert result.png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_fit_runs_recommend_with_the_configurations_popularity_weight(spark, planted):
    # A weight of 1000 makes the prior (1000 * ln(count), gaps >= 1000 * ln(n / (n - 1)) >= 4) outweigh
    # every dot product: each user's list is then the 10 most chosen items the user has not rated,
    # ties in count in any order. Checked against counts computed with pandas.
    runs = fits.fit_runs(
        spark,
        planted,
        _cfg("als.rank=2", "recommend.popularity_weight=1000"),
        [42],
        name="prior",
        calibration=(),
        progress_interval=0,
    )
    try:
        recs = lists.recommendations_of(runs.run_lists[0]).toPandas()
    finally:
        runs.release()
    ratings = planted.toPandas()
    count = ratings[ratings["rating"] >= 4].groupby("item_id").size()
    rated = ratings.groupby("user_id")["item_id"].apply(set)
    for user, got in recs.sort_values(["user_id", "rank"]).groupby("user_id"):
        unrated = count[~count.index.isin(rated[user])]
        expected_counts = sorted(unrated.to_numpy(), reverse=True)[:10]
        assert count.loc[got["item_id"]].tolist() == expected_counts, user
    # every user with factors got a list, unless the user rated every item (users 42 and 64 here)
    users = ratings.loc[ratings["rating"] >= 4, "user_id"].unique()
    assert sorted(recs["user_id"].unique()) == sorted(u for u in users if not set(count.index) <= rated[u])


@pytest.mark.slow
def test_converge_steps_are_exact(spark, planted):
    from als_spark import feedback, model
    from als_spark.analysis import splits
    from als_spark.similarity import similar_users

    cfg = _cfg("als.rank=20")
    result = converge.run_converge(
        spark,
        planted,
        cfg,
        iterations=[1, 4],
        k=5,
        top_n=10,
        focus=[focus.Focus("user", id=10)],
        calibration=(),
        progress_interval=0,
    )
    steps = result.steps.toPandas()
    assert result.steps.schema == converge.CONVERGE_STEPS
    users = steps[(steps["table"] == "similar_users")].set_index(["kind", "from_iter", "to_iter"])["jaccard"]
    # Recompute the 1 -> 4 step of similar users by hand: fit both counts on the same train side.
    train, _ = splits.split_per_user_random(feedback.to_interactions(planted, cfg.ingest), test_fraction=0.25, seed=42)
    train = train.cache()
    entity_lists = {}
    with model.checkpoint_dir(spark):
        for n in (1, 4):
            fitted = model.fit(train, dataclasses.replace(cfg.als, max_iter=n), num_blocks=2)
            table = similar_users(model.factors(fitted)[0], top_k=5).toPandas().sort_values(["user_id", "rank"])
            entity_lists[n] = table.groupby("user_id")["similar_user_id"].apply(list).to_dict()
    train.unpersist()
    expected = np.mean([A.jaccard_at_k(entity_lists[1][u], entity_lists[4][u]) for u in entity_lists[1]])
    assert users[("step", 1, 4)] == pytest.approx(expected)
    # The last step is also the step "to_last". From 1 to 4 iterations the lists move far more than a
    # new seed moves them at 4 (measured Jaccard: users 0.19 vs 0.70, recommendations 0.32 vs 0.94),
    # so no table has settled.
    assert users[("to_last", 1, 4)] == users[("step", 1, 4)]
    for table in lists.TABLES:
        by_kind = steps[steps["table"] == table].set_index("kind")["jaccard"]
        assert by_kind["seed"] > by_kind["step"] + 0.3
    assert result.summary["settled_at"] == {t: None for t in lists.TABLES}
    assert set(steps["kind"]) == {"step", "to_last", "seed"}
    fits = result.fits.toPandas()
    assert fits[["iterations", "seed"]].values.tolist() == [[1, 42], [4, 42], [4, 43]]
    assert ((fits["ndcg"] > 0) & (fits["ndcg"] <= 1)).all()
    assert "## From one count to the next" in result.report and "| 1 → 4 |" in result.report
    assert "## user id 10: similar users" in result.report
    # No calibration: the cost line goes through the 1- and 4-iteration fits of seed 42 (never below 1e-6 s/iteration).
    t1, t4 = fits[fits["seed"] == 42]["seconds"].tolist()
    assert result.summary["seconds_per_iteration"] == pytest.approx(max((t4 - t1) / 3, 1e-6))
    assert result.summary["overhead_seconds"] == pytest.approx(t1 - (t4 - t1) / 3)


@pytest.mark.slow
def test_converge_fit_cache_reuses_exactly_the_finished_fits(spark, planted, tmp_path, monkeypatch):
    from als_spark.analysis.fit_cache import fingerprint

    cache = str(tmp_path / "fits")
    cfg = _cfg("als.rank=2")
    common = {"k": 3, "top_n": 5, "calibration": (), "progress_interval": 0, "fit_cache": cache}
    first = converge.run_converge(spark, planted, cfg, iterations=[1, 2], seed_reference=False, **common)
    assert len([d for d in os.listdir(cache) if not d.startswith(".")]) == 2
    os.makedirs(os.path.join(cache, ".partial-left-by-a-killed-run", "lists"))  # never taken for a fit

    fitted = []
    real = converge.fit_lists

    def counted(data, als, *args, **kwargs):
        fitted.append((als.max_iter, als.seed))
        return real(data, als, *args, **kwargs)

    monkeypatch.setattr(converge, "fit_lists", counted)
    second = converge.run_converge(spark, planted, cfg, iterations=[1, 2], **common)
    # 1 and 2 iterations come from the cache; only the seed reference is fitted (and kept).
    assert fitted == [(2, 43)]
    assert [(f["iterations"], f["seed"], f["reused"]) for f in second.summary["fits"]] == [
        (1, 42, True),
        (2, 42, True),
        (2, 43, False),
    ]
    for got, kept in zip(second.summary["fits"], first.summary["fits"]):
        assert (got["seconds"], got["ndcg"]) == (kept["seconds"], kept["ndcg"])
    step = "kind = 'step' AND from_iter = 1 AND to_iter = 2"
    assert_approx_df_equality(second.steps.where(step), first.steps.where(step), 1e-12, ignore_row_order=True)
    assert len([d for d in os.listdir(cache) if not d.startswith(".")]) == 3

    # The fingerprint of the training rows: the same in another order, another for one changed confidence.
    rows = spark.createDataFrame([(1, 2, 1.0), (3, 4, 2.0)], "user_id int, item_id int, confidence double")
    again = spark.createDataFrame([(3, 4, 2.0), (1, 2, 1.0)], "user_id int, item_id int, confidence double")
    changed = spark.createDataFrame([(3, 4, 2.5), (1, 2, 1.0)], "user_id int, item_id int, confidence double")
    assert fingerprint(rows) == fingerprint(again) != fingerprint(changed)
    assert fingerprint(rows)["rows"] == 2


def test_fit_cache_key_follows_what_the_fit_depends_on():
    from als_spark.analysis import fit_cache

    als = _cfg().als
    data = {"train": {"rows": 10, "hash": 123}}
    params = {"k": 5, "top_n": 10}

    def key(a=als, d=data, p=params, blocks=2):
        return fit_cache.key_of(fit_cache.key_inputs(a, blocks=blocks, data=d, lists=p))

    base = key()
    assert key(a=dataclasses.replace(als, checkpoint_dir="/elsewhere")) == base  # where checkpoints go: not the fit
    others = [
        key(a=dataclasses.replace(als, max_iter=als.max_iter + 1)),
        key(a=dataclasses.replace(als, seed=als.seed + 1)),
        key(a=dataclasses.replace(als, reg_param=0.5)),
        key(d={"train": {"rows": 10, "hash": 124}}),
        key(p={"k": 5, "top_n": 11}),
        key(blocks=3),
    ]
    assert base not in others and len(set(others)) == len(others)
