"""Ids to ALS indexes and back: the identity for 32-bit integers, ascending numbering otherwise."""

from __future__ import annotations

from chispa import assert_df_equality

from als_spark import ids

INDEX_OF_STRINGS = "id string, index int"
INDEX_OF_LONGS = "id long, index int"


def _sorted(df):
    return df.orderBy(*df.columns)


def test_string_ids_are_numbered_in_ascending_order(spark):
    df = spark.createDataFrame([("b",), ("a",), ("c",), ("a",), ("B",)], "user_id string")
    got = ids.build(df, "user_id")
    # UTF-8 byte order: upper case before lower case.
    expected = spark.createDataFrame([("B", 0), ("a", 1), ("b", 2), ("c", 3)], INDEX_OF_STRINGS)
    assert not got.identity
    assert_df_equality(_sorted(got.table), expected, ignore_nullable=True)


def test_integers_within_32_bits_are_their_own_index(spark):
    df = spark.createDataFrame([(7,), (-2,), (2**31 - 1,), (7,)], "user_id long")
    got = ids.build(df, "user_id")
    expected = spark.createDataFrame([(-2, -2), (7, 7), (2**31 - 1, 2**31 - 1)], INDEX_OF_LONGS)
    assert got.identity
    assert_df_equality(_sorted(got.table), expected, ignore_nullable=True)


def test_one_integer_beyond_32_bits_numbers_them_all(spark):
    df = spark.createDataFrame([(5,), (2**40,), (-3,)], "item_id long")
    got = ids.build(df, "item_id")
    expected = spark.createDataFrame([(-3, 0), (5, 1), (2**40, 2)], INDEX_OF_LONGS)
    assert not got.identity
    assert_df_equality(_sorted(got.table), expected, ignore_nullable=True)


def test_numbering_is_dense_across_many_partitions(spark):
    # The sort spreads the ids over several partitions; each partition's offset must follow the
    # previous one's count, so the indexes are exactly each id's rank in ascending order.
    names = [f"id-{n:04d}" for n in range(500)]
    df = spark.createDataFrame([(name,) for name in reversed(names)], "user_id string").repartition(5)
    keys = ("spark.sql.adaptive.enabled", "spark.sql.shuffle.partitions")
    saved = {key: spark.conf.get(key) for key in keys}
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    spark.conf.set("spark.sql.shuffle.partitions", "7")
    try:
        got = ids.build(df, "user_id").table.collect()
    finally:
        for key, value in saved.items():
            spark.conf.set(key, value)
    assert sorted((r["id"], r["index"]) for r in got) == [(name, i) for i, name in enumerate(names)]


def test_to_index_and_back_restores_the_ids_and_drops_unknown_ones(spark):
    known = spark.createDataFrame([("u2",), ("u1",)], "user_id string")
    id_map = ids.build(known, "user_id")
    rows = spark.createDataFrame([("u1", 1.0), ("u2", 2.0), ("stranger", 3.0)], "user_id string, score double")
    indexed = id_map.to_index(rows, "user_id")
    assert_df_equality(
        _sorted(indexed),
        spark.createDataFrame([(0, 1.0), (1, 2.0)], "user_id int, score double"),
        ignore_nullable=True,
    )
    back = id_map.to_ids(indexed, "user_id")
    assert_df_equality(
        _sorted(back),
        spark.createDataFrame([("u1", 1.0), ("u2", 2.0)], "user_id string, score double"),
        ignore_nullable=True,
    )


def test_identity_casts_to_int_and_back_to_the_ids_type(spark):
    id_map = ids.build(spark.createDataFrame([(3,), (1,)], "item_id long"), "item_id")
    rows = spark.createDataFrame([(3, "x")], "item_id long, tag string")
    indexed = id_map.to_index(rows, "item_id")
    assert indexed.schema["item_id"].dataType.simpleString() == "int"
    assert_df_equality(id_map.to_ids(indexed, "item_id"), rows, ignore_nullable=True)


def test_ids_frame_maps_a_list_of_ids(spark):
    id_map = ids.build(spark.createDataFrame([("b",), ("a",)], "user_id string"), "user_id")
    got = id_map.ids_frame(spark, ["b", "nobody"])
    assert_df_equality(got, spark.createDataFrame([(1,)], "id int"), ignore_nullable=True)


def test_a_published_table_is_read_back_as_the_same_map(spark):
    strings = ids.from_table(spark.createDataFrame([("a", 0), ("b", 1)], INDEX_OF_STRINGS))
    assert not strings.identity
    own = ids.from_table(spark.createDataFrame([(1, 1), (9, 9)], "id int, index int"))
    assert own.identity
    numbered = ids.from_table(spark.createDataFrame([(1, 0), (9, 1)], "id int, index int"))
    assert not numbered.identity
    rows = spark.createDataFrame([(1,)], "item_id int")
    assert_df_equality(numbered.to_ids(rows, "item_id"), spark.createDataFrame([(9,)], "item_id int"))
