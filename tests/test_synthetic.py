"""Tests for the synthetic MovieLens-shaped data generator (no Spark needed)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from als_spark.errors import ConfigError
from als_spark.synthetic import SyntheticData, generate, generate_for_size, write_movielens

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
