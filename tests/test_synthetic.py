"""Tests for the synthetic MovieLens-shaped data generator (no Spark needed)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from als_spark import synthetic
from als_spark.cli import main
from als_spark.cli import synthesize as synthesize_cli
from als_spark.errors import ConfigError
from als_spark.synthetic import (
    EVENT_WEIGHTS,
    SyntheticData,
    encode_item_ids,
    encode_user_ids,
    events_from_ratings,
    events_per_rating,
    expand_events,
    generate,
    generate_for_size,
    interactions,
    write_csv,
    write_movielens,
    write_parquet,
)

SMALL = {"n_users": 120, "n_items": 300, "n_ratings": 9_000, "n_groups": 5}


@pytest.fixture(scope="module")
def default_data() -> SyntheticData:
    return generate()


def _with_groups(data: SyntheticData) -> pd.DataFrame:
    """Ratings with the planted ``user_group`` and ``item_group`` columns."""
    users = data.user_groups.rename(columns={"group": "user_group"})
    items = data.item_groups.rename(columns={"group": "item_group"})
    return data.ratings.merge(users, on="user_id").merge(items, on="item_id")


def test_default_shape_is_movielens_100k(default_data: SyntheticData) -> None:
    ratings = default_data.ratings
    assert len(ratings) == 100_000
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert ratings.dtypes.to_dict() == {
        "user_id": np.dtype("int32"),
        "item_id": np.dtype("int32"),
        "rating": np.dtype("int32"),
        "timestamp": np.dtype("int64"),
    }
    np.testing.assert_array_equal(np.unique(ratings["user_id"]), np.arange(1, 944))
    assert ratings["item_id"].between(1, 1682).all()
    np.testing.assert_array_equal(default_data.items["item_id"], np.arange(1, 1683))
    np.testing.assert_array_equal(default_data.user_groups["user_id"], np.arange(1, 944))
    np.testing.assert_array_equal(default_data.item_groups["item_id"], np.arange(1, 1683))
    assert default_data.items["title"].str.fullmatch(r"Synthetic Group \d Film \d{4}").all()


def test_sorted_without_duplicate_pairs(default_data: SyntheticData) -> None:
    ratings = default_data.ratings
    assert not ratings.duplicated(["user_id", "item_id"]).any()
    pair = ratings["user_id"].to_numpy(np.int64) * 10_000 + ratings["item_id"].to_numpy()
    assert (np.diff(pair) > 0).all()  # strictly increasing: sorted by (user, item)
    assert isinstance(ratings.index, pd.RangeIndex)


def test_ratings_timestamps_and_activity(default_data: SyntheticData) -> None:
    ratings = default_data.ratings
    assert set(ratings["rating"].unique()) == {1, 2, 3, 4, 5}
    start = datetime(1997, 9, 1, tzinfo=timezone.utc).timestamp()
    end = datetime(1998, 5, 1, tzinfo=timezone.utc).timestamp()
    assert ratings["timestamp"].between(start, end).all()
    per_user = ratings.groupby("user_id").size()
    assert per_user.min() >= 20
    assert per_user.max() > 4 * per_user.median()  # long-tailed activity
    per_item = ratings.groupby("item_id").size()
    top_decile = per_item.nlargest(len(per_item) // 10).sum()
    assert top_decile > 0.2 * len(ratings)  # long-tailed popularity


@pytest.mark.parametrize(
    "params",
    [
        {"n_users": 50, "n_items": 40, "n_ratings": 1_000},  # everyone has exactly 20
        {"n_users": 30, "n_items": 25, "n_ratings": 750},  # complete matrix
        {"n_users": 60, "n_items": 40, "n_ratings": 2_000, "n_groups": 4},  # heavy users
        {"n_users": 7, "n_items": 500, "n_ratings": 3_000, "n_groups": 1},
        {"n_users": 100, "n_items": 200, "n_ratings": 6_000, "in_group_share": 1.0},
    ],
)
def test_exact_counts_at_the_edges(params: dict[str, int]) -> None:
    data = generate(**params)
    ratings = data.ratings
    assert len(ratings) == params["n_ratings"]
    assert not ratings.duplicated(["user_id", "item_id"]).any()
    per_user = ratings.groupby("user_id").size()
    np.testing.assert_array_equal(per_user.index, np.arange(1, params["n_users"] + 1))
    assert per_user.min() >= 20
    assert per_user.max() <= params["n_items"]
    assert ratings["item_id"].between(1, params["n_items"]).all()
    assert ratings["rating"].between(1, 5).all()


def test_exactly_twenty_ratings_each_at_the_minimum() -> None:
    per_user = generate(n_users=50, n_items=40, n_ratings=1_000).ratings.groupby("user_id").size()
    assert (per_user == 20).all()


def test_same_seed_same_data() -> None:
    first, second = generate(**SMALL, seed=7), generate(**SMALL, seed=7)
    for field in dataclasses.fields(SyntheticData):
        pd.testing.assert_frame_equal(getattr(first, field.name), getattr(second, field.name))


def test_different_seed_different_data() -> None:
    first, second = generate(**SMALL, seed=7), generate(**SMALL, seed=8)
    assert len(first.ratings) == len(second.ratings)
    pairs = ["user_id", "item_id"]
    assert not first.ratings[pairs].equals(second.ratings[pairs])
    assert not first.ratings["timestamp"].equals(second.ratings["timestamp"])
    assert not first.user_groups.equals(second.user_groups)


def test_planted_groups_dominate_high_ratings(default_data: SyntheticData) -> None:
    rated = _with_groups(default_data)
    in_group = rated["user_group"] == rated["item_group"]
    assert in_group[rated["rating"] >= 4].mean() > 0.85
    assert in_group[rated["rating"] <= 2].mean() < 0.3
    assert rated.loc[in_group, "rating"].mean() > 4.0
    assert rated.loc[~in_group, "rating"].mean() < 3.0
    # Groups are balanced: 943 users and 1682 items over 8 groups.
    assert default_data.user_groups["group"].value_counts().max() == 118
    assert default_data.item_groups["group"].value_counts().max() == 211


def test_in_group_share_controls_the_mix() -> None:
    params = {"n_users": 200, "n_items": 2_000, "n_ratings": 8_000, "n_groups": 4}
    shares = {}
    for share in (0.0, 0.5, 1.0):
        rated = _with_groups(generate(**params, in_group_share=share))
        shares[share] = (rated["user_group"] == rated["item_group"]).mean()
    assert shares[0.0] == pytest.approx(0.25, abs=0.05)  # a quarter of the catalogue
    assert shares[0.5] == pytest.approx(0.5 + 0.5 * 0.25, abs=0.05)
    assert shares[1.0] == 1.0


def test_write_movielens_round_trip(tmp_path) -> None:
    data = generate(**{**SMALL, "n_groups": 21})  # groups 19 and 20 wrap to flags 0 and 1
    target = tmp_path / "nested" / "ml"
    assert write_movielens(data, target) == target

    names = ["user_id", "item_id", "rating", "timestamp"]
    back = pd.read_csv(target / "u.data", sep="\t", header=None, names=names)
    pd.testing.assert_frame_equal(back.astype(data.ratings.dtypes.to_dict()), data.ratings)
    raw = (target / "u.data").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")

    items = pd.read_csv(target / "u.item", sep="|", encoding="latin-1", header=None)
    assert items.shape == (300, 24)
    pd.testing.assert_frame_equal(
        items[[0, 1]].set_axis(["item_id", "title"], axis=1),
        data.items.astype({"item_id": "int64"}),
    )
    flags = np.zeros((300, 19), dtype=np.int64)
    flags[np.arange(300), data.item_groups["group"].to_numpy() % 19] = 1
    np.testing.assert_array_equal(items.loc[:, 5:].to_numpy(), flags)
    assert pd.to_datetime(items[2], format="%d-%b-%Y").notna().all()
    lines = (target / "u.item").read_text(encoding="latin-1").split("\n")
    assert lines[-1] == ""
    assert all(line.count("|") == 23 for line in lines[:-1])


def test_write_movielens_encodes_latin1(tmp_path) -> None:
    data = generate(**SMALL)
    items = data.items.copy()
    items.loc[0, "title"] = "Amélie à Paris"
    write_movielens(dataclasses.replace(data, items=items), tmp_path)
    assert (tmp_path / "u.item").read_bytes().startswith(b"1|Am\xe9lie \xe0 Paris|")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_users": 2.5}, "n_users"),
        ({"n_users": True}, "n_users"),
        ({"n_items": 19}, "n_items"),
        ({"n_ratings": 943 * 20 - 1}, "n_ratings"),
        ({"n_users": 10, "n_items": 30, "n_ratings": 301}, "n_ratings"),
        ({"n_ratings": "100000"}, "n_ratings"),
        ({"n_groups": 0}, "n_groups"),
        ({"n_items": 30, "n_users": 10, "n_ratings": 200, "n_groups": 31}, "n_groups"),
        ({"in_group_share": 1.5}, "in_group_share"),
        ({"in_group_share": float("nan")}, "in_group_share"),
        ({"seed": -1}, "seed"),
    ],
)
def test_impossible_parameters_raise_config_error(params: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name} must"):
        generate(**params)


def test_generate_for_size_uses_movielens_shapes(default_data: SyntheticData) -> None:
    small = generate_for_size(100_000)
    pd.testing.assert_frame_equal(small.ratings, default_data.ratings)
    one_m = generate_for_size(1_000_000, seed=3)
    assert len(one_m.ratings) == 1_000_000
    assert one_m.ratings["user_id"].nunique() == 6_040
    assert len(one_m.items) == 3_706


def test_generate_for_size_scales_other_sizes() -> None:
    data = generate_for_size(50_000, seed=1)
    assert len(data.ratings) == 50_000
    assert len(data.user_groups) == round(943 / 2)
    assert len(data.items) == 1_682 // 2
    tiny = generate_for_size(25)
    assert len(tiny.ratings) == 25 and len(tiny.user_groups) == 1
    with pytest.raises(ConfigError, match="^n_ratings"):
        generate_for_size(19)


# --- id modes, event logs and the table writers ---------------------------------------------------

UUID_V4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
SKU = r"SKU-[0-9A-F]{8}"


@pytest.fixture(scope="module")
def small_data() -> SyntheticData:
    return generate(**SMALL)


def _tiny() -> SyntheticData:
    """Three hand-made ratings: user 1 rates item 10 a 1 and item 20 a 4, user 2 rates item 10 a 5.

    Items 10, 20, 30 are not contiguous ids, users 1 and 2 are.
    """
    ratings = pd.DataFrame(
        {
            "user_id": np.array([1, 1, 2], np.int32),
            "item_id": np.array([10, 20, 10], np.int32),
            "rating": np.array([1, 4, 5], np.int32),
            "timestamp": np.array([1_000, 2_000, 3_000], np.int64),
        }
    )
    item_ids = np.array([10, 20, 30], np.int32)
    return SyntheticData(
        ratings=ratings,
        items=pd.DataFrame({"item_id": item_ids, "title": ["a", "b", "c"]}),
        user_groups=pd.DataFrame({"user_id": np.array([1, 2], np.int32), "group": np.array([0, 1], np.int32)}),
        item_groups=pd.DataFrame({"item_id": item_ids, "group": np.array([0, 1, 0], np.int32)}),
    )


#: The events of _tiny() with extra views [1, 0, 1] and gaps [7 | 10, 20, 30, 40 | 5, 6, 7, 8], by hand:
#: rating 1 -> 1 view (its extra flag is ignored); rating 4 -> 3 views + 0 extra + a cart = 4 rows;
#: rating 5 -> 1 view + 1 extra + a cart + a purchase = 4 rows. Each pair's last row is at the rating's
#: timestamp and each earlier row its gap before the next: 2000 - 30 = 1970, 1970 - 20 = 1950,
#: 1950 - 10 = 1940; 3000 - 7 = 2993, 2993 - 6 = 2987, 2987 - 5 = 2982 (the gaps 7, 40, 8 are last rows').
TINY_EXTRA = np.array([1, 0, 1])
TINY_GAPS = np.array([7, 10, 20, 30, 40, 5, 6, 7, 8])
TINY_EVENTS = pd.DataFrame(
    {
        "user_id": np.array([1, 1, 1, 1, 1, 2, 2, 2, 2], np.int32),
        "item_id": np.array([10, 20, 20, 20, 20, 10, 10, 10, 10], np.int32),
        "event": ["view", "view", "view", "view", "cart", "view", "view", "cart", "purchase"],
        "timestamp": np.array([1_000, 1_940, 1_950, 1_970, 2_000, 2_982, 2_987, 2_993, 3_000], np.int64),
    }
)


def _aggregates(events: pd.DataFrame) -> pd.DataFrame:
    """Per pair, with EVENT_WEIGHTS: sum, max, count and latest (the weight of the row with the last timestamp)."""
    weighted = events.assign(weight=events["event"].map(EVENT_WEIGHTS))
    last = weighted.sort_values("timestamp", kind="stable").groupby(["user_id", "item_id"])["weight"].last()
    grouped = weighted.groupby(["user_id", "item_id"])["weight"]
    return pd.DataFrame(
        {"sum": grouped.sum(), "max": grouped.max(), "count": grouped.size(), "latest": last}
    ).reset_index()


def test_string_ids_are_unique_uuids_and_skus() -> None:
    ids = np.arange(1, 50_001, dtype=np.int32)
    users, items = encode_user_ids(ids, ids="string"), encode_item_ids(ids, ids="string")
    assert users.dtype == object and items.dtype == object
    assert pd.Series(users).str.fullmatch(UUID_V4).all()
    assert pd.Series(items).str.fullmatch(SKU).all()
    assert len(set(users)) == ids.size and len(set(items)) == ids.size
    parsed = [uuid.UUID(u) for u in users[:100]]
    assert [str(p) for p in parsed] == list(users[:100]) and {p.version for p in parsed} == {4}


def test_long_ids_do_not_fit_in_32_bits_and_are_unique() -> None:
    ids = np.concatenate([np.arange(0, 20_000), [2**31 - 1, 2**32 - 1]])  # the ends of the id range too
    for encode in (encode_user_ids, encode_item_ids):
        longs = encode(ids, ids="long")
        assert longs.dtype == np.int64
        assert (longs > 2**32).all()  # above 2**31 and 2**32: no int column holds them
        assert np.unique(longs).size == ids.size


def test_id_bijection_is_pinned_per_seed_and_differs_between_seeds_and_kinds() -> None:
    # Pinned for seed 42 (not hand-computable: a keyed hash), so that stored expectations stay valid.
    one = np.array([1, 2], np.int32)
    assert list(encode_user_ids(one, ids="string")) == [
        "d12e5a6a-6005-4006-8b99-00f958c4a8ff",
        "a0633328-69ff-443f-b71e-45001d93ec8b",
    ]
    assert list(encode_item_ids(one, ids="string")) == ["SKU-3DD660E0", "SKU-639C9601"]
    assert list(encode_user_ids(one, ids="long")) == [7536542208573614335, 5778568662618467467]
    assert list(encode_item_ids(one, ids="long")) == [857039864298103008, 1455357499646187009]
    assert list(encode_user_ids(one, ids="string", seed=42)) == list(encode_user_ids(one, ids="string"))
    assert encode_user_ids(one, ids="string", seed=7)[0] == "edca8887-8c4a-46a9-ad85-b094f0fa082b"
    # users and items have their own keys: the same int id gets different longs
    assert not set(encode_user_ids(one, ids="long")) & set(encode_item_ids(one, ids="long"))
    int_ids = encode_user_ids(one, ids="int")
    np.testing.assert_array_equal(int_ids, one)
    assert int_ids is not one and int_ids.dtype == np.int32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ids": "uuid"}, "^ids must be one of int, long, string"),
        ({"ids": "long", "seed": -1}, "^seed must"),
        ({"ids": "long", "values": np.array([2**32])}, r"^user_id must be in \[0, 2\*\*32\)"),
        ({"ids": "long", "values": np.array([-1])}, "^user_id must be in"),
        ({"ids": "long", "values": np.array([1.0])}, "^user_id must be a one-dimensional array of integers"),
    ],
)
def test_bad_id_arguments_raise_config_error(kwargs: dict[str, object], message: str) -> None:
    values = kwargs.pop("values", np.array([1]))
    with pytest.raises(ConfigError, match=message):
        encode_user_ids(values, **kwargs)


def test_default_interactions_are_the_ratings_copied(small_data: SyntheticData) -> None:
    result = interactions(small_data)
    pd.testing.assert_frame_equal(result.frame, small_data.ratings)
    assert (result.ids, result.events) == ("int", False)
    result.frame.loc[0, "rating"] = 0
    assert small_data.ratings.loc[0, "rating"] != 0  # a copy, not a view of the generator's data


@pytest.mark.parametrize(("ids", "pattern"), [("long", None), ("string", UUID_V4)])
def test_id_modes_map_back_to_the_ratings(small_data: SyntheticData, ids: str, pattern: str | None) -> None:
    result = interactions(small_data, ids=ids)
    frame = result.frame
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    # the maps list every user and item once, in the generator's order
    pd.testing.assert_series_equal(result.users["user_id"], small_data.user_groups["user_id"])
    pd.testing.assert_series_equal(result.items["item_id"], small_data.items["item_id"])
    assert result.users["user"].is_unique and result.items["item"].is_unique
    if pattern is None:
        assert frame["user_id"].dtype == np.int64 and (frame["user_id"] > 2**32).all()
    else:
        assert frame["user_id"].str.fullmatch(pattern).all() and frame["item_id"].str.fullmatch(SKU).all()
    pd.testing.assert_frame_equal(frame.drop(columns=["user_id", "item_id"]), small_data.ratings.iloc[:, 2:])
    pd.testing.assert_frame_equal(result.to_int_ids(), small_data.ratings)
    # joining the maps by hand gives the same
    joined = frame.rename(columns={"user_id": "user", "item_id": "item"}).merge(result.users).merge(result.items)
    pd.testing.assert_frame_equal(
        joined[small_data.ratings.columns].sort_values(["user_id", "item_id"], ignore_index=True),
        small_data.ratings,
    )


def test_tiny_interactions_with_string_ids_use_the_maps() -> None:
    tiny = _tiny()
    result = interactions(tiny, ids="string", seed=3)
    users = dict(zip(result.users["user_id"], result.users["user"]))
    items = dict(zip(result.items["item_id"], result.items["item"]))
    assert list(result.frame["user_id"]) == [users[1], users[1], users[2]]
    assert list(result.frame["item_id"]) == [items[10], items[20], items[10]]
    assert list(result.items["item"]) == list(encode_item_ids(np.array([10, 20, 30]), ids="string", seed=3))
    pd.testing.assert_frame_equal(result.to_int_ids(), tiny.ratings)


def test_ratings_of_unlisted_users_raise_config_error() -> None:
    tiny = _tiny()
    ratings = tiny.ratings.copy()
    ratings.loc[2, "user_id"] = 9
    with pytest.raises(ConfigError, match="user table does not list, e.g. 9"):
        interactions(dataclasses.replace(tiny, ratings=ratings), ids="string")
    items = tiny.items.iloc[:1]  # item 20 is rated but no longer listed (a non-contiguous table)
    with pytest.raises(ConfigError, match="item table does not list, e.g. 20"):
        interactions(dataclasses.replace(tiny, items=items), ids="long", events=True)
    with pytest.raises(ConfigError, match="^ids must be one of"):
        interactions(tiny, ids="uuid")


@pytest.mark.parametrize("block", [1, 2, 1 << 21])
def test_event_rule_on_three_hand_made_ratings(block: int) -> None:
    ratings = _tiny().ratings
    assert list(events_per_rating(ratings["rating"].to_numpy(), TINY_EXTRA)) == [1, 4, 4]
    pd.testing.assert_frame_equal(expand_events(ratings, TINY_EXTRA, TINY_GAPS, block=block), TINY_EVENTS)


def test_aggregates_of_the_three_hand_made_ratings() -> None:
    # view 1, cart 3, purchase 5: [1] -> sum 1; [1, 1, 1, 3] -> 6; [1, 1, 3, 5] -> 10;
    # the max and the latest row are the funnel's last step: 1, 3, 5; counts 1, 4, 4.
    expected = pd.DataFrame(
        {
            "user_id": np.array([1, 1, 2], np.int32),
            "item_id": np.array([10, 20, 10], np.int32),
            "sum": [1.0, 6.0, 10.0],
            "max": [1.0, 3.0, 5.0],
            "count": [1, 4, 4],
            "latest": [1.0, 3.0, 5.0],
        }
    )
    pd.testing.assert_frame_equal(_aggregates(TINY_EVENTS), expected, check_dtype=False)


def test_events_per_rating_follow_the_documented_rule() -> None:
    rating = np.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    extra = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    # 1: one view; 2: two views; 3: 1-2 views + cart; 4: 3-4 views + cart; 5: 1-2 views + cart + purchase
    assert list(events_per_rating(rating, extra)) == [1, 1, 2, 2, 2, 3, 4, 5, 3, 4]
    with pytest.raises(ConfigError, match="integer ratings 1..5"):
        events_per_rating(np.array([0, 3]), np.array([0, 0]))


def test_generated_events_follow_the_rule(small_data: SyntheticData) -> None:
    ratings = small_data.ratings
    events = interactions(small_data, events=True).frame
    assert list(events.columns) == ["user_id", "item_id", "event", "timestamp"]
    assert isinstance(events.index, pd.RangeIndex)
    # sorted like the ratings, then by time, strictly increasing within a pair
    pair = events["user_id"].to_numpy(np.int64) * 1_000 + events["item_id"].to_numpy()
    same = np.diff(pair) == 0
    assert (np.diff(pair) >= 0).all()
    gaps = np.diff(events["timestamp"].to_numpy())[same]
    assert gaps.min() == 1 and gaps.max() <= synthetic.MAX_GAP_SECONDS and gaps.max() > 3_000
    last = events.groupby(["user_id", "item_id"], sort=False).tail(1)  # the last row of each pair
    pd.testing.assert_frame_equal(
        last[["user_id", "item_id", "timestamp"]].reset_index(drop=True), ratings[["user_id", "item_id", "timestamp"]]
    )
    # funnel order: within a pair the event's rank (view 0, cart 1, purchase 2) never goes down
    rank = events["event"].map({"view": 0, "cart": 1, "purchase": 2}).to_numpy()
    assert (np.diff(rank)[same] >= 0).all()
    assert set(events["event"]) == {"view", "cart", "purchase"}


def test_aggregates_rank_pairs_as_the_ratings(small_data: SyntheticData) -> None:
    events = events_from_ratings(small_data.ratings, seed=5)
    agg = _aggregates(events).merge(small_data.ratings[["user_id", "item_id", "rating"]])
    assert len(agg) == len(small_data.ratings)
    values = {
        column: {r: sorted(set(agg.loc[agg["rating"] == r, column])) for r in range(1, 6)}
        for column in ("sum", "max", "count", "latest")
    }
    # The rule's table: both values of the extra-view coin occur among 9,000 ratings.
    assert values["sum"] == {1: [1], 2: [2], 3: [4, 5], 4: [6, 7], 5: [9, 10]}
    assert values["max"] == {1: [1], 2: [1], 3: [3], 4: [3], 5: [5]}
    assert values["latest"] == values["max"]
    assert values["count"] == {1: [1], 2: [2], 3: [2, 3], 4: [4, 5], 5: [3, 4]}
    # So ordering the pairs by sum orders their ratings, and by max too (up to its ties).
    assert agg.sort_values("sum", kind="stable")["rating"].is_monotonic_increasing
    assert {m: sorted(set(r)) for m, r in agg.groupby("max")["rating"]} == {1: [1, 2], 3: [3, 4], 5: [5]}


def test_events_are_deterministic_for_a_seed_and_independent_of_the_block(small_data: SyntheticData) -> None:
    first = interactions(small_data, ids="string", events=True, seed=11)
    again = interactions(small_data, ids="string", events=True, seed=11)
    other = interactions(small_data, ids="string", events=True, seed=12)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    assert not first.frame["timestamp"].equals(other.frame["timestamp"])
    assert not set(first.users["user"]) & set(other.users["user"])
    # the events do not depend on the id mode: mapped back, they are the int-id events
    pd.testing.assert_frame_equal(first.to_int_ids(), events_from_ratings(small_data.ratings, seed=11))
    pd.testing.assert_frame_equal(
        interactions(small_data, ids="long", events=True, seed=11).to_int_ids(), first.to_int_ids()
    )
    rng = np.random.default_rng(0)
    extra = rng.integers(0, 2, len(small_data.ratings))
    gaps = rng.integers(1, 100, int(events_per_rating(small_data.ratings["rating"].to_numpy(), extra).sum()))
    pd.testing.assert_frame_equal(
        expand_events(small_data.ratings, extra, gaps, block=7), expand_events(small_data.ratings, extra, gaps)
    )


def test_bad_event_inputs_raise_config_error() -> None:
    ratings = _tiny().ratings
    with pytest.raises(ConfigError, match=r"^extra_views must hold one 0 or 1 per rating \(3\)"):
        expand_events(ratings, np.array([0, 2, 0]), TINY_GAPS)
    with pytest.raises(ConfigError, match=r"^gaps must hold one positive integer per event \(9\)"):
        expand_events(ratings, TINY_EXTRA, TINY_GAPS[:-1])
    with pytest.raises(ConfigError, match="^gaps must hold one positive integer"):
        expand_events(ratings, TINY_EXTRA, np.where(TINY_GAPS == 20, 0, TINY_GAPS))
    with pytest.raises(ConfigError, match="integer ratings 1..5"):
        events_from_ratings(ratings.assign(rating=[1.0, 3.5, 5.0]))


def test_write_parquet_round_trip_in_several_files(tmp_path) -> None:
    frame = interactions(_tiny(), ids="string", events=True).frame
    target = tmp_path / "events"
    target.mkdir()
    (target / "part-00007.parquet").write_bytes(b"stale")  # from an earlier, larger write
    assert write_parquet(frame, target, rows_per_file=4) == target
    files = sorted(p.name for p in target.iterdir())
    assert files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]  # 9 rows: 4 + 4 + 1
    assert [pq.read_metadata(target / f).num_rows for f in files] == [4, 4, 1]
    table = pq.read_table(target)
    assert [str(t) for t in table.schema.types] == ["string", "string", "string", "int64"]
    pd.testing.assert_frame_equal(table.to_pandas(), frame)
    ints = interactions(_tiny()).frame
    write_parquet(ints, tmp_path / "ratings")
    assert [str(t) for t in pq.read_schema(tmp_path / "ratings" / "part-00000.parquet").types] == [
        "int32",
        "int32",
        "int32",
        "int64",
    ]
    pd.testing.assert_frame_equal(pq.read_table(tmp_path / "ratings").to_pandas(), ints)


def test_write_parquet_of_an_empty_frame_keeps_string_columns(tmp_path) -> None:
    empty = interactions(_tiny(), ids="string", events=True).frame.iloc[:0]
    write_parquet(empty, tmp_path)
    table = pq.read_table(tmp_path / "part-00000.parquet")
    assert table.num_rows == 0 and [str(t) for t in table.schema.types] == ["string", "string", "string", "int64"]


def test_write_csv_round_trip(tmp_path) -> None:
    frame = interactions(_tiny(), ids="long", events=True).frame
    path = write_csv(frame, tmp_path / "nested" / "events.csv", chunk_rows=4)
    assert path == tmp_path / "nested" / "events.csv"
    text = path.read_text()
    lines = text.split("\n")
    assert lines[0] == "user_id,item_id,event,timestamp" and lines[-1] == ""
    assert len(lines) == 1 + 9 + 1 and "\r" not in text  # one header although written in 3 chunks
    pd.testing.assert_frame_equal(pacsv.read_csv(path).to_pandas(), frame.astype({"timestamp": "int64"}))
    strings = interactions(_tiny(), ids="string").frame
    write_csv(strings, path)  # overwrites
    pd.testing.assert_frame_equal(pacsv.read_csv(path).to_pandas(), strings.astype({"rating": "int64"}))


def test_cli_choices_match_the_library() -> None:
    assert synthesize_cli.ID_CHOICES == synthetic.ID_MODES
    assert synthesize_cli.FORMAT_CHOICES[0] == "movielens"
    assert synthesize_cli.FORMAT_CHOICES[1:] == synthetic.TABLE_FORMATS


def test_cli_writes_string_id_events_as_parquet(tmp_path, capsys) -> None:
    out = tmp_path / "syn"
    args = ["synthesize", "--output", str(out), "--ratings", "2000", "--seed", "4"]
    assert main([*args, "--ids", "string", "--events", "--format", "parquet"]) == 0
    expected = interactions(generate_for_size(2_000, seed=4), ids="string", events=True, seed=4)
    pd.testing.assert_frame_equal(pq.read_table(out / "interactions").to_pandas(), expected.frame)
    pd.testing.assert_frame_equal(pq.read_table(out / "users").to_pandas(), expected.users)
    pd.testing.assert_frame_equal(pq.read_table(out / "items").to_pandas(), expected.items)
    assert f"wrote {len(expected.frame):,} events with string ids to {out / 'interactions'}" in capsys.readouterr().out


def test_cli_writes_long_id_ratings_as_csv(tmp_path) -> None:
    out = tmp_path / "syn"
    assert main(["synthesize", "--output", str(out), "--ratings", "2000", "--ids", "long", "--format", "csv"]) == 0
    expected = interactions(generate_for_size(2_000), ids="long")
    back = pacsv.read_csv(out / "interactions.csv").to_pandas()
    pd.testing.assert_frame_equal(back, expected.frame.astype({"rating": "int64"}))
    users = pacsv.read_csv(out / "users.csv").to_pandas()
    pd.testing.assert_frame_equal(users, expected.users.astype({"user_id": "int64"}))
    assert sorted(p.name for p in out.iterdir()) == ["interactions.csv", "items.csv", "users.csv"]


def test_cli_default_still_writes_movielens_files(tmp_path) -> None:
    assert main(["synthesize", "--output", str(tmp_path / "cli"), "--ratings", "2000"]) == 0
    write_movielens(generate_for_size(2_000), tmp_path / "lib")
    for name in ("u.data", "u.item"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["u.data", "u.item"]


@pytest.mark.parametrize(
    ("extra", "given"),
    [
        (["--ids", "string"], "--ids string"),
        (["--events", "--format", "movielens"], "--events"),
        (["--ids", "long", "--events"], "--ids long and --events"),
    ],
)
def test_cli_refuses_movielens_for_other_ids_or_events(tmp_path, capsys, extra: list[str], given: str) -> None:
    out = tmp_path / "syn"
    assert main(["synthesize", "--output", str(out), "--ratings", "2000", *extra]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {given}." in err and "Pass --format parquet or --format csv." in err
    assert not out.exists()  # refused before generating anything
