"""Bring your own data, end to end: string ids in, the same ids out, and the same answers as int ids."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from als_spark import pipeline, synthetic
from als_spark.config import build_config

SMALL = ["als.rank=6", "als.max_iter=6", "als.num_blocks=2", "recommend.top_n=4", "similar.top_k=3"]
EVENTS = ["ingest.event_weights={view: 1, cart: 3, purchase: 5}", "ingest.format=parquet"]
TABLES = (
    "ratings",
    "interactions",
    "user_factors",
    "item_factors",
    "recommendations",
    "similar_items",
    "similar_users",
)


def _table(out, name) -> pd.DataFrame:
    df = pd.read_parquet(out / name)
    return df.sort_values([c for c in df.columns if c not in ("features",)][:3]).reset_index(drop=True)


@pytest.fixture(scope="module")
def string_run(spark, tmp_path_factory):
    """The pipeline on an event log with UUID users and SKU items, in Parquet."""
    base = tmp_path_factory.mktemp("byod")
    data = synthetic.generate_for_size(3000, seed=5)
    log = synthetic.interactions(data, ids="string", events=True, seed=5)
    synthetic.write_parquet(log.frame, base / "events.parquet")
    out = base / "string-out"
    pipeline.run_all(
        spark, pipeline.Source(path=str(base / "events.parquet")), build_config(None, [*SMALL, *EVENTS]), str(out)
    )
    return base, log, out


def test_published_tables_carry_the_string_ids(string_run):
    _, log, out = string_run
    users, items = set(log.users["user"]), set(log.items["item"])
    recs = _table(out, "recommendations")
    assert recs["user_id"].map(type).eq(str).all() and set(recs["user_id"]) <= users
    assert set(recs["item_id"]) <= items
    sims = _table(out, "similar_users")
    assert set(sims["similar_user_id"]) <= users
    index = _table(out, "user_index")
    # Numbered 0..n-1 in ascending order of id.
    assert list(index.sort_values("id")["index"]) == list(range(len(index)))
    assert set(index["id"]) == set(_table(out, "ratings")["user_id"])  # every rated user, with factors or not
    details = json.loads((out / "run.json").read_text())["input"]["ids"]
    assert details == {"user": {"type": "string", "indexed": True}, "item": {"type": "string", "indexed": True}}


def test_the_same_data_with_int_ids_gives_the_same_answers(spark, string_run):
    # The int-id version of the same events: each id replaced by the index the string run gave it.
    # The int ids are 32-bit, so they are their own indexes: ALS sees exactly the same input, and
    # every table must be the string run's, mapped through the published index, bit for bit.
    base, log, out = string_run
    users = dict(zip(_table(out, "user_index")["id"], _table(out, "user_index")["index"]))
    items = dict(zip(_table(out, "item_index")["id"], _table(out, "item_index")["index"]))
    frame = log.frame.copy()
    frame = frame[frame["user_id"].isin(users) & frame["item_id"].isin(items)]
    frame["user_id"] = frame["user_id"].map(users).astype("int32")
    frame["item_id"] = frame["item_id"].map(items).astype("int32")
    synthetic.write_parquet(frame, base / "int-events.parquet")
    int_out = base / "int-out"
    cfg = build_config(None, [*SMALL, *EVENTS])
    pipeline.run_all(spark, pipeline.Source(path=str(base / "int-events.parquet")), cfg, str(int_out))
    for name in TABLES:
        got = _table(out, name)
        for column in got.columns:
            if column in ("user_id", "similar_user_id") or (column == "id" and name == "user_factors"):
                got[column] = got[column].map(users).astype("int32")
            elif column in ("item_id", "similar_item_id") or (column == "id" and name == "item_factors"):
                got[column] = got[column].map(items).astype("int32")
        want = _table(int_out, name)
        got = got.sort_values([c for c in want.columns if c != "features"][:3]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)


def test_a_rerun_gives_the_same_index_and_tables(spark, string_run):
    base, _, out = string_run
    again = base / "string-again"
    cfg = build_config(None, [*SMALL, *EVENTS])
    pipeline.run_all(spark, pipeline.Source(path=str(base / "events.parquet")), cfg, str(again))
    for name in ("user_index", "item_index", "recommendations", "similar_items"):
        pd.testing.assert_frame_equal(_table(again, name), _table(out, name), check_exact=True, obj=name)


def test_the_stage_commands_read_the_published_index(spark, string_run):
    base, _, out = string_run
    staged = base / "staged"
    cfg = build_config(None, [*SMALL, *EVENTS])
    pipeline.stage_ingest(spark, pipeline.Source(path=str(base / "events.parquet")), cfg, str(staged))
    pipeline.stage_train(spark, cfg, str(staged))
    pipeline.stage_recommend(spark, cfg, str(staged))
    pipeline.stage_similar(spark, cfg, str(staged))
    for name in TABLES:
        pd.testing.assert_frame_equal(_table(staged, name), _table(out, name), check_exact=True, obj=name)


def test_show_answers_for_a_string_id(spark, string_run):
    _, _, out = string_run
    recs = _table(out, "recommendations")
    user = recs["user_id"].iloc[0]
    (title, shown), _ = pipeline.show(spark, str(out), user=user)
    assert title == f"recommendations for user {user}"
    want = recs[recs["user_id"] == user].sort_values("rank").drop(columns=["user_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(shown.reset_index(drop=True), want, check_exact=True)


def test_ingest_reads_a_catalog_table_and_titles_from_another(spark, tmp_path):
    from als_spark.cli import main

    events = spark.createDataFrame(
        [("ann", "lamp", "view"), ("ann", "lamp", "purchase"), ("bob", "desk", "cart"), ("bob", "lamp", "like")],
        "visitor string, sku string, action string",
    )
    titles = spark.createDataFrame([("lamp", "A lamp"), ("desk", "A desk")], "code string, name string")
    events.createOrReplaceTempView("byod_events")
    titles.createOrReplaceTempView("byod_titles")
    out = tmp_path / "out"
    settings = [
        "ingest.columns.user=visitor",
        "ingest.columns.item=sku",
        "ingest.columns.event=action",
        "ingest.event_weights={view: 1, cart: 3, purchase: 5}",
        "ingest.max_rejected_fraction=0.5",
        "items.columns.item=code",
        "items.columns.title=name",
    ]
    args = ["ingest", "--table", "byod_events", "--items-table", "byod_titles", "--output", str(out)]
    assert main([*args, *[x for s in settings for x in ("--set", s)], "--log-level", "WARNING"]) == 0
    ratings = _table(out, "ratings")
    assert [tuple(r) for r in ratings[["user_id", "item_id", "rating"]].itertuples(index=False)] == [
        ("ann", "lamp", 6.0),
        ("bob", "desk", 3.0),
    ]
    assert [tuple(r) for r in _table(out, "rejected").itertuples(index=False)] == [
        ('{"visitor":"bob","sku":"lamp","action":"like"}', "unknown event type")
    ]
    assert [tuple(r) for r in _table(out, "items").itertuples(index=False)] == [("desk", "A desk"), ("lamp", "A lamp")]
    assert [tuple(r) for r in _table(out, "item_index").itertuples(index=False)] == [("desk", 0), ("lamp", 1)]
    info = json.loads((out / "run.json").read_text())["input"]
    assert (info["table"], info["format"], info["items_path"]) == ("byod_events", "table", "byod_titles")
