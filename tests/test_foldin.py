"""Fold-in: a user's vector solved from the item factors as Spark's implicit ALS solves it, and its explanations."""

from __future__ import annotations

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from als_spark import foldin, model
from als_spark.config import ALSConfig
from als_spark.recommend import recommend

FACTORS = "id int, features array<float>"
INTERACTIONS = "user_id int, item_id int, confidence double"
# Items 0, 1, 2 at (1, 0), (0, 1), (1, 1): YᵀY = [[2, 1], [1, 2]].
ITEMS = [(0, [1.0, 0.0]), (1, [0.0, 1.0]), (2, [1.0, 1.0])]


def test_gram_sums_over_every_item_factor(spark):
    got = foldin.gram(spark.createDataFrame(ITEMS, FACTORS).repartition(2))
    np.testing.assert_array_equal(got, [[2.0, 1.0], [1.0, 2.0]])


def test_fold_in_solves_the_implicit_als_normal_equations(spark):
    # alpha = 1, reg_param = 0.5.
    # User 7, item 0 with confidence 1: c = 1, A = YᵀY + 1·y0y0ᵀ + 0.5·1·I = [[3.5, 1], [1, 2.5]],
    #   b = (1 + 1)·y0 = (2, 0), x = A⁻¹b = (2.5·2, -1·2) / 7.75 = (5/7.75, -2/7.75).
    # User 10, items 0 (confidence 1) and 2 (confidence 2): A = YᵀY + y0y0ᵀ + 2·y2y2ᵀ + 0.5·2·I
    #   = [[6, 3], [3, 5]], b = 2·y0 + 3·y2 = (5, 3), x = [[5, -3], [-3, 6]]·(5, 3) / 21 = (16/21, 3/21).
    # User 8 knows only item 5, which has no factors, and user 9 only a weight of 0: no rows.
    rows = [(7, 0, 1.0), (10, 0, 1.0), (10, 2, 2.0), (8, 5, 3.0), (9, 1, 0.0)]
    got = foldin.fold_in(
        spark.createDataFrame(rows, INTERACTIONS), spark.createDataFrame(ITEMS, FACTORS), alpha=1.0, reg_param=0.5
    )
    want = spark.createDataFrame([(7, [5 / 7.75, -2 / 7.75]), (10, [16 / 21, 3 / 21])], FACTORS)
    assert_approx_df_equality(got.orderBy("id"), want, precision=1e-6)


def test_explain_decomposes_the_score_over_the_liked_items(spark):
    # User 10 as above (A = [[6, 3], [3, 5]]), recommended item 1 (rank 1) and item 2 (rank 2).
    # Item 1, y = (0, 1): A⁻¹y = (-3, 6)/21; item 0 adds 2·(1, 0)·A⁻¹y = -6/21, item 2 adds
    #   3·(1, 1)·A⁻¹y = 9/21; the score y1·x = 3/21, so the shares are 3 and -2.
    # Item 2, y = (1, 1): A⁻¹y = (2, 3)/21; item 0 adds 2·2/21 = 4/21, item 2 adds 3·5/21 = 15/21;
    #   the score y2·x = 19/21, shares 15/19 and 4/19.
    inter = spark.createDataFrame([(10, 0, 1.0), (10, 2, 2.0)], INTERACTIONS)
    recs = spark.createDataFrame([(10, 1, 1), (10, 2, 2)], "user_id int, rank int, item_id int")
    items = spark.createDataFrame(ITEMS, FACTORS)
    got = foldin.explain(inter, recs, items, alpha=1.0, reg_param=0.5, top=2)
    want = spark.createDataFrame(
        [
            (10, 1, 1, 2, 9 / 21, 3.0),
            (10, 1, 1, 0, -6 / 21, -2.0),
            (10, 2, 2, 2, 15 / 21, 15 / 19),
            (10, 2, 2, 0, 4 / 21, 4 / 19),
        ],
        "user_id int, rank int, item_id int, because_item_id int, contribution float, share float",
    )
    ordered = got.orderBy("rank", F.col("contribution").desc())
    assert_approx_df_equality(ordered, want, precision=1e-6, ignore_nullable=True)
    # top=1 keeps the largest contribution of each recommendation.
    one = foldin.explain(inter, recs, items, alpha=1.0, reg_param=0.5, top=1).orderBy("rank")
    assert [(r.rank, r.because_item_id) for r in one.collect()] == [(1, 2), (2, 2)]
    with pytest.raises(ValueError, match="top must be >= 1"):
        foldin.explain(inter, recs, items, alpha=1.0, reg_param=0.5, top=0)


def test_folding_in_training_users_gives_back_their_fitted_vectors_and_recommendations(spark):
    # Spark's last step of each iteration solves every user from the final item factors, so the
    # fold-in of a training user's own interactions is their fitted vector, to float rounding.
    rng = np.random.default_rng(5)
    rows = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, 40, 400), rng.integers(0, 30, 400))})
    data = spark.createDataFrame(
        [(u, i, float(1 + (u * i) % 5), float(1 + (u * i) % 5)) for u, i in rows],
        "user_id int, item_id int, rating double, confidence double",
    ).cache()
    cfg = ALSConfig(rank=5, max_iter=8, reg_param=0.3, alpha=2.0, seed=1)
    with model.checkpoint_dir(spark):
        users, items = model.factors(model.fit(data, cfg, num_blocks=2))
        fitted = {r.id: np.array(r.features) for r in users.collect()}
        folded_df = foldin.fold_in(data, items, alpha=cfg.alpha, reg_param=cfg.reg_param).cache()
        folded = {r.id: np.array(r.features) for r in folded_df.collect()}
        assert sorted(folded) == sorted(fitted)
        worst = max(np.linalg.norm(folded[u] - fitted[u]) / np.linalg.norm(fitted[u]) for u in fitted)
        assert worst < 1e-4
        want = recommend(users, items, top_n=5).select("user_id", "rank", "item_id").orderBy("user_id", "rank")
        got = recommend(folded_df, items, top_n=5).select("user_id", "rank", "item_id").orderBy("user_id", "rank")
        assert got.collect() == want.collect()
