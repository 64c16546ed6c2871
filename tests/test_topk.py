"""Blocked top-k: recommendations (dot product, exclusions) and neighbours (cosine, no self).

Hand-made 2-D factors so every score is computed by hand in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from chispa import assert_approx_df_equality

from als_spark import topk
from als_spark.feedback import exclusions
from als_spark.recommend import popularity_prior, recommend
from als_spark.similarity import similar_items, similar_users

FACTORS = "id int, features array<float>"
RECS = "user_id int, rank int, item_id int, score float"

# u1 = [1, 0] scores an item by its first coordinate, u2 = [0, 1] by its second.
USERS = [(1, [1.0, 0.0]), (2, [0.0, 1.0])]
ITEMS = [(10, [3.0, 0.0]), (20, [2.0, 1.0]), (30, [1.0, 2.0]), (40, [0.0, 3.0]), (50, [2.0, 5.0])]
# u1: 10 -> 3, 20 -> 2, 50 -> 2 (tie with 20: smaller id first), 30 -> 1, 40 -> 0
# u2: 50 -> 5, 40 -> 3, 30 -> 2, 20 -> 1, 10 -> 0


@pytest.fixture(params=["one block", "many blocks"])
def blocks(request, monkeypatch):
    """Run each test with everything in one block, and with blocks of 1-2 vectors (merge path)."""
    if request.param == "many blocks":
        monkeypatch.setattr(topk, "QUERY_BLOCK_SIZE", 1)
        monkeypatch.setattr(topk, "CANDIDATE_BLOCK_SIZE", 2)
    return request.param


def _recs(spark, rows):
    return spark.createDataFrame(rows, RECS)


def test_top_k_rows_orders_by_score_then_column_and_skips_excluded():
    scores = np.array(
        [
            [1.0, 3.0, 3.0, 2.0],  # tie between columns 1 and 2 at the top: column 1 first
            [-np.inf, 0.5, -np.inf, -np.inf],  # only one finite score left
            [2.0, 2.0, 2.0, 2.0],  # all tied: the first k columns
        ],
        dtype=np.float32,
    )
    rows, cols, position = topk.top_k_rows(scores, 2)
    assert rows.tolist() == [0, 0, 1, 2, 2]
    assert cols.tolist() == [1, 2, 1, 0, 1]
    assert position.tolist() == [0, 1, 0, 0, 1]


def test_recommend_without_exclusion_breaks_ties_by_item_id(spark, blocks):
    users, items = spark.createDataFrame(USERS, FACTORS), spark.createDataFrame(ITEMS, FACTORS)
    got = recommend(users, items, top_n=3)
    expected = _recs(
        spark, [(1, 1, 10, 3.0), (1, 2, 20, 2.0), (1, 3, 50, 2.0), (2, 1, 50, 5.0), (2, 2, 40, 3.0), (2, 3, 30, 2.0)]
    )
    assert_approx_df_equality(got, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)


# u1 rated 10 (5 stars, liked) and 20 (2 stars, not liked); u2 rated 50 (4, liked) and 40 (1, not liked).
RATINGS = [(1, 10, 5.0, 1), (1, 20, 2.0, 2), (2, 50, 4.0, 3), (2, 40, 1.0, 4)]
EXPECTED_BY_MODE = {
    # every rated item excluded: u1 loses 10 and 20, u2 loses 50 and 40
    "rated": [(1, 1, 50, 2.0), (1, 2, 30, 1.0), (1, 3, 40, 0.0), (2, 1, 30, 2.0), (2, 2, 20, 1.0), (2, 3, 10, 0.0)],
    # only liked items (>= 4) excluded: u1 loses 10, u2 loses 50
    "liked": [(1, 1, 20, 2.0), (1, 2, 50, 2.0), (1, 3, 30, 1.0), (2, 1, 40, 3.0), (2, 2, 30, 2.0), (2, 3, 20, 1.0)],
    "none": [(1, 1, 10, 3.0), (1, 2, 20, 2.0), (1, 3, 50, 2.0), (2, 1, 50, 5.0), (2, 2, 40, 3.0), (2, 3, 30, 2.0)],
}


@pytest.mark.parametrize("mode", ["rated", "liked", "none"])
def test_recommend_excludes_seen_items_by_mode(spark, blocks, mode):
    users, items = spark.createDataFrame(USERS, FACTORS), spark.createDataFrame(ITEMS, FACTORS)
    ratings = spark.createDataFrame(RATINGS, "user_id int, item_id int, rating double, timestamp long")
    interactions = ratings.where("rating >= 4")
    got = recommend(users, items, top_n=3, exclude=exclusions(ratings, interactions, mode))
    assert_approx_df_equality(
        got, _recs(spark, EXPECTED_BY_MODE[mode]), 1e-6, ignore_row_order=True, ignore_nullable=True
    )


def test_recommend_returns_fewer_rows_when_catalogue_is_exhausted(spark, blocks):
    users, items = spark.createDataFrame(USERS, FACTORS), spark.createDataFrame(ITEMS, FACTORS)
    exclude = spark.createDataFrame([(1, [10, 20, 30, 40])], "user_id int, exclude array<int>")
    got = recommend(users, items, top_n=3, exclude=exclude)
    # u1 has only item 50 left; u2 has no exclusions (missing from the table) and gets 3.
    expected = _recs(spark, [(1, 1, 50, 2.0), (2, 1, 50, 5.0), (2, 2, 40, 3.0), (2, 3, 30, 2.0)])
    assert_approx_df_equality(got, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)


def test_recommend_ignores_excluded_ids_that_are_not_items(spark, blocks):
    users, items = spark.createDataFrame(USERS, FACTORS), spark.createDataFrame(ITEMS, FACTORS)
    exclude = spark.createDataFrame([(1, [999, 10]), (3, [20])], "user_id int, exclude array<int>")
    got = recommend(users, items, top_n=2, exclude=exclude)
    expected = _recs(spark, [(1, 1, 20, 2.0), (1, 2, 50, 2.0), (2, 1, 50, 5.0), (2, 2, 40, 3.0)])
    assert_approx_df_equality(got, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)


# --- a popularity prior: score = u·v + weight * ln(the item's interaction count) ---------------

# Item 10 has 1 interaction, 20 has 2, 30 has 4, 40 has 8; 50 has none (no prior: 0).
COUNTS = {10: 1, 20: 2, 30: 4, 40: 8}
LN2 = math.log(2)


def _interactions(spark):
    rows = [(user, item) for item, n in COUNTS.items() for user in range(1, n + 1)]
    return spark.createDataFrame(rows, "user_id int, item_id int")


def test_popularity_prior_is_the_weight_times_the_log_of_the_count(spark):
    got = popularity_prior(_interactions(spark), 1.5)
    expected = spark.createDataFrame(
        [(10, 0.0), (20, 1.5 * LN2), (30, 3.0 * LN2), (40, 4.5 * LN2)], "id int, prior double"
    )
    assert_approx_df_equality(got, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)
    assert popularity_prior(_interactions(spark), 0.0) is None  # weight 0: plain ALS scores


def test_recommend_adds_the_item_prior_to_every_score(spark, blocks):
    users, items = spark.createDataFrame(USERS, FACTORS), spark.createDataFrame(ITEMS, FACTORS)
    prior = popularity_prior(_interactions(spark), 1.5)  # 10: 0, 20: 1.0397, 30: 2.0794, 40: 3.1192, 50: none
    exclude = spark.createDataFrame([(1, [40])], "user_id int, exclude array<int>")
    got = recommend(users, items, top_n=3, exclude=exclude, item_prior=prior)
    expected = _recs(
        spark,
        [
            # u1 = [1, 0]: 10 -> 3 + 0, 20 -> 2 + 1.0397, 30 -> 1 + 2.0794, 40 -> 0 + 3.1192 (excluded), 50 -> 2 + 0:
            # the prior reverses u1's plain order (10, 20, 50, 30)
            (1, 1, 30, 1 + 3.0 * LN2),
            (1, 2, 20, 2 + 1.5 * LN2),
            (1, 3, 10, 3.0),
            # u2 = [0, 1]: 40 -> 3 + 3.1192 overtakes 50 -> 5 + 0; 30 -> 2 + 2.0794; 20 -> 1 + 1.0397; 10 -> 0
            (2, 1, 40, 3 + 4.5 * LN2),
            (2, 2, 50, 5.0),
            (2, 3, 30, 2 + 3.0 * LN2),
        ],
    )
    assert_approx_df_equality(got, expected, 1e-5, ignore_row_order=True, ignore_nullable=True)


R = 1 / math.sqrt(2)  # cos 45 degrees
# a=[1,0]  b=[1,1]  c=[0,2]  d=[-1,0]  e=[0,0] (zero vector: cosine 0 with everything)
VECTORS = [(1, [1.0, 0.0]), (2, [1.0, 1.0]), (3, [0.0, 2.0]), (4, [-1.0, 0.0]), (5, [0.0, 0.0])]
# cos(a,b)=R cos(a,c)=0 cos(a,d)=-1 cos(b,c)=R cos(b,d)=-R cos(c,d)=0; e: 0 with all.
EXPECTED_NEIGHBOURS = [
    (1, 1, 2, R),
    (1, 2, 3, 0.0),  # a: b, then c and e tie at 0 -> c (smaller id)
    (2, 1, 1, R),
    (2, 2, 3, R),  # b: a and c tie at R -> a first; b itself never listed
    (3, 1, 2, R),
    (3, 2, 1, 0.0),  # c: b, then a, d, e tie at 0 -> a
    (4, 1, 3, 0.0),
    (4, 2, 5, 0.0),  # d: c and e at 0 beat b (-R) and a (-1)
    (5, 1, 1, 0.0),
    (5, 2, 2, 0.0),  # e: all 0 -> the two smallest ids
]


def test_similar_items_cosine_values_order_and_self_exclusion(spark, blocks):
    got = similar_items(spark.createDataFrame(VECTORS, FACTORS), top_k=2)
    expected = spark.createDataFrame(
        EXPECTED_NEIGHBOURS, "item_id int, rank int, similar_item_id int, similarity float"
    )
    assert_approx_df_equality(got, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)


def test_similar_users_same_rules_with_user_columns(spark, blocks):
    got = similar_users(spark.createDataFrame(VECTORS, FACTORS), top_k=2)
    expected = spark.createDataFrame(
        EXPECTED_NEIGHBOURS, "user_id int, rank int, similar_user_id int, similarity float"
    )
    assert_approx_df_equality(got, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)


def test_similarity_of_parallel_vectors_is_clipped_to_one(spark):
    # [3,4] and [6,8] point the same way: cosine exactly 1, never 1.0000001 from rounding.
    got = similar_items(spark.createDataFrame([(1, [3.0, 4.0]), (2, [6.0, 8.0])], FACTORS), top_k=5)
    assert sorted(tuple(r) for r in got.collect()) == [(1, 1, 2, 1.0), (2, 1, 1, 1.0)]


def test_top_k_rejects_non_positive_k(spark):
    items = spark.createDataFrame(ITEMS, FACTORS)
    with pytest.raises(ValueError, match="k must be >= 1"):
        topk.top_k(items, items, 0)


def test_top_k_rows_on_wide_rows_matches_a_full_sort():
    # Wide enough for the grouped threshold search; integer scores make many ties.
    rng = np.random.default_rng(3)
    scores = rng.integers(-20, 20, size=(40, 3000)).astype(np.float32)
    scores[0, :] = -np.inf  # a row with nothing left
    scores[1, 5:] = -np.inf  # a row with 5 entries left
    scores[2, :] = 7.0  # all tied
    rows, cols, position = topk.top_k_rows(scores, 10)
    for r in range(scores.shape[0]):
        finite = np.flatnonzero(np.isfinite(scores[r]))
        expected = finite[np.lexsort((finite, -scores[r, finite]))][:10]
        assert cols[rows == r].tolist() == expected.tolist()
        assert position[rows == r].tolist() == list(range(len(expected)))


def test_exclusions_of_a_block_that_is_not_first_in_its_arrow_batch():
    # When several (query block, candidate block) rows share an Arrow batch, the second row's
    # exclusion lists start at a non-zero offset of the batch's child arrays. Found at 20M
    # ratings, where it raised IndexError (and could silently mask another user's items).
    import pyarrow as pa

    from als_spark import schema as S

    def block(ids, feats, excl=None):
        cols = {S.ID: pa.array(ids, pa.int32()), S.FEATURES: pa.array(feats, pa.list_(pa.float32()))}
        if excl is not None:
            cols[topk.EXCLUDE] = pa.array(excl, pa.list_(pa.int32()))
        return pa.StructArray.from_arrays(list(cols.values()), names=list(cols))

    first = block([1, 2], [[1, 0], [0, 1]], [[10], []])
    second = block([3, 4], [[1, 0], [0, 1]], [[10, 11], [11]])
    items = block([10, 11, 12], [[3, 0], [0, 3], [1, 1]])
    queries = pa.ListArray.from_arrays(pa.array([0, 2, 4], pa.int32()), pa.concat_arrays([first, second]))
    candidates = pa.ListArray.from_arrays(pa.array([0, 3, 6], pa.int32()), pa.concat_arrays([items, items]))
    batch = pa.RecordBatch.from_arrays([queries, candidates], names=[topk._QROWS, topk._CROWS])
    got = [out.to_pydict() for out in topk._score_pairs(iter([batch]), 2, False, False)]
    # u1 = [1, 0]: 10 -> 3 (excluded), 12 -> 1, 11 -> 0;  u2 = [0, 1]: 11 -> 3, 12 -> 1
    # u3 = [1, 0] minus {10, 11}: only 12 -> 1;            u4 = [0, 1] minus {11}: 12 -> 1, 10 -> 0
    assert got == [
        {"query": [1, 1, 2, 2], "candidate": [12, 11, 11, 12], "score": [1.0, 0.0, 3.0, 1.0], "rank": [1, 2, 1, 2]},
        {"query": [3, 4, 4], "candidate": [12, 12, 10], "score": [1.0, 1.0, 0.0], "rank": [1, 1, 2]},
    ]
