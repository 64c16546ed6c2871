"""Every user served: ALS lists, the popularity fallback, candidate filters, and the tables they are read from."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality

from als_spark import recommend
from als_spark.config import RecommendConfig
from als_spark.errors import InputDataError
from als_spark.feedback import exclusions
from als_spark.ids import build
from als_spark.inputs import read_filters, read_id_table

FACTORS = "id int, features array<float>"
OUT = "user_id int, rank int, item_id int, score float, source string"
PAIRS = "user_id int, item_id int"


@pytest.fixture
def world(spark):
    """Users 1 and 2 have vectors, user 3 has none; items 10, 20, 30.

    Scores (u·v): user 1 -> 10: 1, 20: 0, 30: 0.5; user 2 -> 10: 0, 20: 1, 30: 0.5.
    Popularity (the model's interactions): item 20 three times, 10 twice, 30 once.
    """
    users = spark.createDataFrame([(1, [1.0, 0.0]), (2, [0.0, 1.0])], FACTORS)
    items = spark.createDataFrame([(10, [1.0, 0.0]), (20, [0.0, 1.0]), (30, [0.5, 0.5])], FACTORS)
    trained = spark.createDataFrame([(1, 20), (2, 20), (4, 20), (1, 10), (4, 10), (2, 30)], PAIRS)
    everyone = spark.createDataFrame([(1,), (2,), (3,)], "id int")
    rated = spark.createDataFrame([(1, 10), (3, 20)], PAIRS)  # user 1 rated 10, user 3 rated 20
    return everyone, users, items, recommend.popularity(trained), rated


def _serve(world, allow=None, deny=None, deny_pairs=None, top_n=2, source="als"):
    everyone, users, items, pop, rated = world
    got, n_cold = recommend.serve(
        everyone,
        users,
        recommend.candidates(items, allow=allow, deny=deny),
        recommend.candidates(pop, allow=allow, deny=deny),
        top_n=top_n,
        exclude=exclusions(rated, rated, "rated", deny=deny_pairs),
        source=source,
    )
    return got.orderBy("user_id", "rank"), n_cold


def test_popularity_counts_each_items_interactions(spark, world):
    want = spark.createDataFrame([(10, [2.0]), (20, [3.0]), (30, [1.0])], FACTORS)
    assert_df_equality(world[3].orderBy("id"), want, ignore_nullable=True)


def test_users_without_a_vector_get_the_popular_items_they_did_not_rate(spark, world):
    # User 1: 10 is rated, so 30 (0.5) then 20 (0). User 2: 20 (1), 30 (0.5).
    # User 3 (no vector): the most popular are 20, 10, 30; 20 is rated, so 10 (2), 30 (1).
    got, n_cold = _serve(world, source="fold_in")
    want = spark.createDataFrame(
        [
            (1, 1, 30, 0.5, "fold_in"),
            (1, 2, 20, 0.0, "fold_in"),
            (2, 1, 20, 1.0, "fold_in"),
            (2, 2, 30, 0.5, "fold_in"),
            (3, 1, 10, 2.0, "popularity"),
            (3, 2, 30, 1.0, "popularity"),
        ],
        OUT,
    )
    assert_df_equality(got, want, ignore_nullable=True)
    assert n_cold == 1


def test_allowed_items_and_denied_pairs_act_inside_the_top_k(spark, world):
    # Only 10 and 30 may be recommended, and never 30 to user 2. User 1 rated 10: 30 is all that is
    # left. User 2: 10 (0) only. User 3: 10 (2), 30 (1) by popularity.
    allow = spark.createDataFrame([(10,), (30,)], "id int")
    deny_pairs = spark.createDataFrame([(2, 30)], PAIRS)
    got, _ = _serve(world, allow=allow, deny_pairs=deny_pairs)
    want = spark.createDataFrame(
        [(1, 1, 30, 0.5, "als"), (2, 1, 10, 0.0, "als"), (3, 1, 10, 2.0, "popularity"), (3, 2, 30, 1.0, "popularity")],
        OUT,
    )
    assert_df_equality(got, want, ignore_nullable=True)


def test_a_denied_item_is_replaced_by_the_next_best(spark, world):
    # Item 30 denied for everyone: user 1 gets 20 (0) alone, user 2 gets 20 then 10, user 3 gets 10.
    got, _ = _serve(world, deny=spark.createDataFrame([(30,)], "id int"))
    want = spark.createDataFrame(
        [(1, 1, 20, 0.0, "als"), (2, 1, 20, 1.0, "als"), (2, 2, 10, 0.0, "als"), (3, 1, 10, 2.0, "popularity")],
        OUT,
    )
    assert_df_equality(got, want, ignore_nullable=True)


def test_serve_names_only_vector_sources(world):
    with pytest.raises(ValueError, match="source must be one of"):
        _serve(world, source="popularity")


def test_exclusions_merge_the_deny_pairs_with_the_mode(spark):
    rated = spark.createDataFrame([(1, 10), (1, 20)], PAIRS)
    liked = spark.createDataFrame([(1, 20)], PAIRS)
    deny = spark.createDataFrame([(1, 20), (1, 5), (2, 7)], PAIRS)
    got = exclusions(rated, liked, "liked", deny=deny).orderBy("user_id")
    assert [(r.user_id, r.exclude) for r in got.collect()] == [(1, [5, 20]), (2, [7])]
    got = exclusions(rated, liked, "none", deny=deny).orderBy("user_id")
    assert [(r.user_id, r.exclude) for r in got.collect()] == [(1, [5, 20]), (2, [7])]
    assert exclusions(rated, liked, "none") is None


def test_filter_tables_are_read_by_their_own_column_names_and_mapped_to_indexes(spark, tmp_path):
    # String ids numbered in ascending order: users a -> 0, b -> 1; items x -> 0, y -> 1, z -> 2.
    users = build(spark.createDataFrame([("a",), ("b",)], "user_id string"), "user_id")
    items = build(spark.createDataFrame([("x",), ("y",), ("z",)], "item_id string"), "item_id")
    (tmp_path / "stock.csv").write_text("sku,qty\nz,3\nunknown,1\nx,0\n")
    spark.createDataFrame([("b", "y"), ("nobody", "x")], "customer string, sku string").write.parquet(
        str(tmp_path / "blocked")
    )
    cfg = RecommendConfig(
        allow_items={"path": str(tmp_path / "stock.csv"), "columns": {"item": "sku"}},
        deny={"path": str(tmp_path / "blocked"), "columns": {"user": "customer", "item": "sku"}},
        deny_items=["y", "nothing"],
    )
    got = read_filters(spark, cfg, users, items)
    assert sorted(r.id for r in got.allow.collect()) == [0, 2]  # unknown ids are left out
    assert [r.id for r in got.deny_items.collect()] == [1]
    assert [(r.user_id, r.item_id) for r in got.deny_pairs.collect()] == [(1, 1)]
    empty = read_filters(spark, RecommendConfig(), users, items)
    assert (empty.allow, empty.deny_items, empty.deny_pairs) == (None, None, None)


def test_integer_ids_in_a_filter_table_of_text_are_cast(spark, tmp_path):
    items = build(spark.createDataFrame([(10,), (20,)], "item_id int"), "item_id")
    users = build(spark.createDataFrame([(1,)], "user_id int"), "user_id")
    (tmp_path / "allow.csv").write_text("item_id\n20\nnot-a-number\n99\n")
    got = read_filters(spark, RecommendConfig(allow_items=str(tmp_path / "allow.csv")), users, items)
    # 20 is a known item, 99 is an integer id the model does not know, and the text is no id at all.
    assert sorted(r.id for r in got.allow.collect()) == [20]


def test_a_filter_table_without_the_column_names_its_columns(spark, tmp_path):
    (tmp_path / "allow.csv").write_text("sku\n1\n")
    with pytest.raises(InputDataError, match=r"has no column 'item_id'.*columns: \{item: COLUMN\}.*are: sku"):
        read_id_table(spark, str(tmp_path / "allow.csv"), {"item": "item_id"})
