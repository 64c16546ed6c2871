"""Bring your own data: every source kind, the column mapping, events, aggregation and bad rows of tables."""

from __future__ import annotations

import json
import math
import re

import pytest
from chispa import assert_df_equality

from als_spark import feedback, ingest, titles
from als_spark.config import build_config
from als_spark.errors import ConfigError, InputDataError

#: What every source below holds: three users with string ids, SKUs, ratings and seconds.
ROWS = [("u-1", "SKU-1", 5.0, 100), ("u-1", "SKU-2", 3.0, 101), ("u-2", "SKU-1", 4.0, 102)]
ROW_SCHEMA = "uid string, sku string, score double, ts long"
MAPPING = [
    "ingest.columns.user=uid",
    "ingest.columns.item=sku",
    "ingest.columns.rating=score",
    "ingest.columns.timestamp=ts",
]
EXPECTED = "user_id string, item_id string, rating double, timestamp long"


def _ingest(*overrides):
    return build_config(None, [*MAPPING, *overrides]).ingest


def _sorted(df):
    return df.orderBy(*df.columns)


def _expected(spark, rows=ROWS):
    return spark.createDataFrame(rows, EXPECTED)


@pytest.mark.parametrize("fmt", ["parquet", "orc", "json"])
def test_a_folder_of_each_table_format_is_read_with_auto_detection_and_forced(spark, tmp_path, fmt):
    path = str(tmp_path / f"events.{fmt}")
    spark.createDataFrame(ROWS, ROW_SCHEMA).coalesce(1).write.format(fmt).save(path)
    for forced in ("auto", fmt):
        got = ingest.read_input(spark, path, _ingest(f"ingest.format={forced}"))
        assert got.fmt == fmt
        assert_df_equality(_sorted(got.df), _expected(spark), ignore_nullable=True)


def test_a_single_parquet_file_and_a_glob_are_read(spark, tmp_path):
    folder = tmp_path / "events"
    spark.createDataFrame(ROWS, ROW_SCHEMA).coalesce(1).write.parquet(str(folder))
    (part,) = folder.glob("part-*.parquet")
    for location in (str(part), str(folder / "*.parquet")):
        got = ingest.read_input(spark, location, _ingest())
        assert got.fmt == "parquet"
        assert_df_equality(_sorted(got.df), _expected(spark), ignore_nullable=True)


def test_a_delimited_file_with_its_own_delimiter_and_quote(spark, tmp_path):
    path = tmp_path / "events.txt"
    path.write_text("uid;sku;score;ts\n'u-1';'SKU;1';5;100\n'u-2';'SKU;1';4;102\n")
    cfg = _ingest("ingest.format=delimited", "ingest.options={delimiter: ';', quote: \"'\"}")
    got = ingest.read_input(spark, str(path), cfg)
    assert_df_equality(
        _sorted(got.df),
        _expected(spark, [("u-1", "SKU;1", 5.0, 100), ("u-2", "SKU;1", 4.0, 102)]),
        ignore_nullable=True,
    )


def test_a_comma_file_with_a_header_of_names_is_detected_as_delimited(spark, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("uid,sku,score,ts\nu-1,SKU-1,5,100\nu-1,SKU-2,3,101\nu-2,SKU-1,4,102\n")
    got = ingest.read_input(spark, str(path), _ingest())
    assert got.fmt == "delimited"
    assert_df_equality(_sorted(got.df), _expected(spark), ignore_nullable=True)


def test_a_catalog_table_created_in_the_session_is_read_by_name(spark, tmp_path):
    spark.sql(f"CREATE DATABASE IF NOT EXISTS byod LOCATION '{tmp_path / 'warehouse'}'")
    try:
        spark.createDataFrame(ROWS, ROW_SCHEMA).write.mode("overwrite").saveAsTable("byod.events")
        got = ingest.read_input(spark, "byod.events", _ingest(), table=True)
        assert got.fmt == "table"
        assert_df_equality(_sorted(got.df), _expected(spark), ignore_nullable=True)
        with pytest.raises(InputDataError, match="no table or view named 'byod.nothing'"):
            ingest.read_input(spark, "byod.nothing", _ingest(), table=True)
    finally:
        spark.sql("DROP DATABASE IF EXISTS byod CASCADE")


def test_ids_keep_their_integer_type(spark):
    df = spark.createDataFrame([(2**40, 7, 5.0)], "user_id long, item_id short, rating double")
    got = ingest.read_dataframe(df)
    assert [f.dataType.simpleString() for f in got.df.schema.fields[:2]] == ["bigint", "smallint"]
    assert got.df.first()[0] == 2**40


EVENTS = [
    ("a", "x", "view", 1),
    ("a", "x", "view", 2),
    ("a", "x", "purchase", 3),
    ("a", "y", "cart", 4),
    ("b", "x", "view", 5),
]
EVENT_SCHEMA = "user_id string, item_id string, event string, timestamp long"
WEIGHTS = "ingest.event_weights={view: 1, cart: 3, purchase: 5}"


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        # auto is sum for events: view + view + purchase = 7; the latest event's time is kept.
        ("auto", [("a", "x", 7.0, 3), ("a", "y", 3.0, 4), ("b", "x", 1.0, 5)]),
        ("sum", [("a", "x", 7.0, 3), ("a", "y", 3.0, 4), ("b", "x", 1.0, 5)]),
        ("max", [("a", "x", 5.0, 3), ("a", "y", 3.0, 4), ("b", "x", 1.0, 5)]),
        ("count", [("a", "x", 3.0, 3), ("a", "y", 1.0, 4), ("b", "x", 1.0, 5)]),
        # latest: the purchase at time 3 wins.
        ("latest", [("a", "x", 5.0, 3), ("a", "y", 3.0, 4), ("b", "x", 1.0, 5)]),
    ],
)
def test_event_weights_and_each_aggregate(spark, aggregate, expected):
    cfg = build_config(None, [WEIGHTS, f"ingest.aggregate={aggregate}"]).ingest
    got = ingest.read_dataframe(spark.createDataFrame(EVENTS, EVENT_SCHEMA), cfg)
    assert_df_equality(_sorted(got.df), _expected(spark, expected), ignore_nullable=True)
    assert (got.rows_read, got.rows_rejected, got.duplicates_dropped, got.rows) == (5, 0, 2, 3)


def test_without_a_rating_every_row_weighs_one_and_min_rating_does_not_apply(spark):
    cfg = build_config(None, ["ingest.columns.rating=null", "ingest.columns.event=null"]).ingest
    plays = spark.createDataFrame(
        [("a", "x", 1), ("a", "x", 2), ("a", "y", 3)], "user_id string, item_id string, timestamp long"
    )
    got = ingest.read_dataframe(plays, cfg)
    assert_df_equality(
        _sorted(got.df), _expected(spark, [("a", "x", 2.0, 2), ("a", "y", 1.0, 3)]), ignore_nullable=True
    )
    # The MovieLens default min_rating (4) would drop everything; weights are kept by min_weight (every positive one).
    kept = feedback.to_interactions(got.df, cfg)
    assert_df_equality(
        _sorted(kept),
        spark.createDataFrame(
            [("a", "x", 2.0, 2.0), ("a", "y", 1.0, 1.0)],
            "user_id string, item_id string, rating double, confidence double",
        ),
        ignore_nullable=True,
    )
    at_least_two = build_config(None, ["ingest.columns.rating=null", "ingest.min_weight=2"]).ingest
    assert [tuple(r) for r in feedback.to_interactions(got.df, at_least_two).collect()] == [("a", "x", 2.0, 2.0)]


def test_a_zero_weight_never_counts(spark):
    cfg = build_config(None, ["ingest.event_weights={impression: 0, click: 2}"]).ingest
    df = spark.createDataFrame([("a", "x", "impression", 1), ("a", "y", "click", 2)], EVENT_SCHEMA)
    got = ingest.read_dataframe(df, cfg)
    assert [tuple(r)[:2] for r in feedback.to_interactions(got.df, cfg).collect()] == [("a", "y")]


def _rejected(got):
    """(row as a dict, reason) of each rejected row, by reason, then row."""
    rows = [(json.loads(r["line"]), r["reason"]) for r in got.rejected.collect()]
    return sorted(rows, key=lambda pair: (pair[1], json.dumps(pair[0], sort_keys=True)))


def test_bad_rows_of_a_table_are_rejected_with_their_reason(spark):
    df = spark.createDataFrame(
        [
            ("a", "x", 1.0),
            (None, "x", 1.0),
            ("", "x", 1.0),
            ("   ", "x", 1.0),
            ("b", None, 1.0),
            ("c", "\t", 1.0),
            ("d", "x", None),
            ("e", "x", float("nan")),
            ("f", "x", float("inf")),
            ("g", "x", -1.0),
        ],
        "user_id string, item_id string, rating double",
    )
    got = ingest.read_dataframe(df)
    assert (got.rows_read, got.rows_rejected, got.rows) == (10, 9, 1)
    reasons = {(row.get("user_id"), row.get("item_id")): reason for row, reason in _rejected(got)}
    assert reasons == {
        (None, "x"): "missing user_id",
        ("", "x"): "blank user_id",
        ("   ", "x"): "blank user_id",
        ("b", None): "missing item_id",
        ("c", "\t"): "blank item_id",
        ("d", "x"): "missing rating",
        ("e", "x"): "rating is not finite",
        ("f", "x"): "rating is not finite",
        ("g", "x"): "rating is negative",
    }


def test_unknown_and_missing_event_types_are_rejected(spark):
    cfg = build_config(None, [WEIGHTS]).ingest
    df = spark.createDataFrame([("a", "x", "view", 1), ("a", "x", "like", 2), ("a", "x", None, 3)], EVENT_SCHEMA)
    got = ingest.read_dataframe(df, cfg)
    assert [(row.get("event"), reason) for row, reason in _rejected(got)] == [
        (None, "missing event"),
        ("like", "unknown event type"),
    ]


def test_text_ratings_and_times_of_a_delimited_file_are_checked(spark, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,rating,timestamp\na,x,5,100\nb,x,lots,101\nc,x,4,2026-12-01T10:00:00\nd,x,4,soon\n"
    )
    got = ingest.read_input(spark, str(path), build_config().ingest)
    assert _rejected(got) == [
        ({"user_id": "b", "item_id": "x", "rating": "lots", "timestamp": "101"}, "rating is not a number"),
        ({"user_id": "d", "item_id": "x", "rating": "4", "timestamp": "soon"}, "timestamp is not a time"),
    ]
    stamp = 1796119200  # 2026-12-01T10:00:00 UTC (the test session's time zone)
    assert_df_equality(
        _sorted(got.df), _expected(spark, [("a", "x", 5.0, 100), ("c", "x", 4.0, stamp)]), ignore_nullable=True
    )


def test_a_missing_column_names_it_and_lists_the_columns(spark):
    df = spark.createDataFrame([("a", "x", 1.0)], "uid string, item_id string, rating double")
    with pytest.raises(InputDataError) as err:
        ingest.read_dataframe(df)
    text = str(err.value)
    assert "no column 'user_id' for the user" in text and "Its columns are: uid, item_id, rating." in text
    with pytest.raises(InputDataError, match="no column 'stars' for the rating.*ingest.columns.rating to null"):
        ingest.read_dataframe(df, columns={"user": "uid", "rating": "stars"})
    # The timestamp is optional under its default name, but a named one must exist.
    assert ingest.read_dataframe(df, columns={"user": "uid"}).rows == 1
    with pytest.raises(InputDataError, match="no column 'when' for the timestamp"):
        ingest.read_dataframe(df, columns={"user": "uid", "timestamp": "when"})
    with pytest.raises(InputDataError, match="no column 'event' for the event"):
        ingest.read_dataframe(df, build_config(None, [WEIGHTS]).ingest, columns={"user": "uid"})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("user_id double, item_id string, rating double", "'user_id' \\(the user\\) is of type double"),
        ("user_id string, item_id boolean, rating double", "'item_id' \\(the item\\) is of type boolean"),
        ("user_id string, item_id string, rating boolean", "'rating' \\(the rating\\) is of type boolean"),
        (
            "user_id string, item_id string, rating double, timestamp boolean",
            "'timestamp' \\(the timestamp\\) is of type boolean",
        ),
    ],
)
def test_a_column_of_the_wrong_type_is_a_clear_error(spark, schema, message):
    row = tuple(None for _ in schema.split(","))
    with pytest.raises(InputDataError, match=message):
        ingest.read_dataframe(spark.createDataFrame([row], schema))


def test_event_weights_on_a_movielens_file_is_a_configuration_error(spark, tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t5\t100\n")
    with pytest.raises(ConfigError, match="needs a table with an event column"):
        ingest.read_input(spark, str(path), build_config(None, [WEIGHTS]).ingest)


def test_a_path_that_is_not_of_the_forced_format_is_a_clear_error(spark, tmp_path):
    path = tmp_path / "events.txt"
    path.write_text("this is not parquet\n")
    with pytest.raises(InputDataError, match=f"cannot read {path} as parquet"):
        ingest.read_input(spark, str(path), build_config(None, ["ingest.format=parquet"]).ingest)
    with pytest.raises(InputDataError, match="input not found"):
        ingest.read_input(spark, str(tmp_path / "nothing"), build_config(None, ["ingest.format=orc"]).ingest)


def test_table_ratings_have_no_upper_bound_unless_configured(spark):
    df = spark.createDataFrame([("a", "x", 250.0), ("a", "y", 2.0)], "user_id string, item_id string, rating double")
    assert ingest.read_dataframe(df).rows == 2
    capped = build_config(None, ["ingest.rating_max=100"]).ingest
    assert _rejected(ingest.read_dataframe(df, capped)) == [
        ({"user_id": "a", "item_id": "x", "rating": 250.0}, "rating outside [0, 100]")
    ]
    assert build_config().ingest.rating_range("ml-100k") == (0.5, 5.0)
    assert build_config().ingest.rating_range("parquet") == (0.0, math.inf)


def test_item_titles_from_a_table_with_its_own_columns(spark, tmp_path):
    path = str(tmp_path / "catalog")
    spark.createDataFrame([("SKU-1", "Lamp"), ("SKU-2", "Desk")], "sku string, name string").write.parquet(path)
    cfg = build_config(None, ["items.columns.item=sku", "items.columns.title=name"]).items
    got = titles.read_items(spark, path, cfg=cfg)
    assert_df_equality(
        _sorted(got), spark.createDataFrame([("SKU-1", "Lamp"), ("SKU-2", "Desk")], "item_id string, title string")
    )


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("{view: -1}", "finite weight >= 0; 'view' has -1"),
        ("{view: .nan}", "finite weight >= 0; 'view' has nan"),
        ("{view: .inf}", "finite weight >= 0; 'view' has inf"),
        ("{view: null}", "finite weight >= 0; 'view' has None"),
        ("{}", "must be a mapping of event type: weight"),
        ("[view, cart]", "must be a mapping of event type: weight"),
    ],
)
def test_bad_event_weights_are_configuration_errors(weights, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(None, [f"ingest.event_weights={weights}"])


def test_column_roles_are_checked_and_merge_over_the_defaults():
    cfg = build_config({"ingest": {"columns": {"user": "visitor"}}}, ["ingest.columns.item=sku"]).ingest
    assert cfg.columns == {
        "user": "visitor",
        "item": "sku",
        "rating": "rating",
        "timestamp": "timestamp",
        "event": "event",
    }
    with pytest.raises(ConfigError, match="unknown role\\(s\\) usr"):
        build_config(None, ["ingest.columns.usr=visitor"])
    with pytest.raises(ConfigError, match="cannot map user to null"):
        build_config(None, ["ingest.columns.user=null"])
    assert build_config(None, ["ingest.columns.rating=null"]).ingest.kind == "unary"
    assert build_config(None, ["ingest.event_weights={view: 1}"]).ingest.aggregation() == "sum"
    assert build_config().ingest.aggregation() == "latest"
