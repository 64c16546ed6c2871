"""Every user of a run or of new events is answered: ALS, fold-in without refitting, or the popular items."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from als_spark.cli import main

SMALL = ["--set", "als.rank=4", "--set", "als.max_iter=6", "--set", "als.num_blocks=2", "--set", "recommend.top_n=3"]
QUIET = ["--log-level", "WARNING"]


def _rows() -> list[tuple[int, int, int]]:
    """Users 1-24 each like 5 of items 1-12 (rating 5) and rated one more badly (rating 2); item 12 is liked by
    users 1-12 as well, so it is the most popular. User 99 rated items 12 and 3 badly: no interaction is kept."""
    rows = []
    for u in range(1, 25):
        liked = {1 + (u + k) % 11 for k in range(5)}
        if u <= 12:
            liked.add(12)
        rows += [(u, i, 5) for i in sorted(liked)]
        rows.append((u, 1 + (u + 7) % 11, 2))
    return rows + [(99, 12, 2), (99, 3, 1)]


def _parquet(path, rows) -> str:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).astype(
        {"user_id": "int32", "item_id": "int32"}
    )
    frame.astype({"rating": "float64"}).to_parquet(path, index=False)
    return str(path)


def _table(path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    return df.sort_values([c for c in ("user_id", "id", "rank", "contribution") if c in df]).reset_index(drop=True)


def _popular(rows, user, top_n) -> list[int]:
    """The items most often rated >= 4 (ties: the smaller id), without those ``user`` rated at all."""
    liked = pd.DataFrame([(u, i) for u, i, r in rows if r >= 4], columns=["u", "i"])
    counts = liked.groupby("i").size().reset_index(name="n").sort_values(["n", "i"], ascending=[False, True])
    rated = {i for u, i, _ in rows if u == user}
    return [i for i in counts["i"] if i not in rated][:top_n]


@pytest.fixture(scope="module")
def fitted(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("new-users")
    data = _parquet(base / "ratings.parquet", _rows())
    model = base / "model"
    explain = ["--set", "recommend.explain=20"]
    assert main(["run", "--input", data, "--output", str(model), *SMALL, *explain, *QUIET]) == 0
    return base, model


def test_a_user_without_interactions_gets_the_popular_items(fitted):
    _, model = fitted
    recs = _table(model / "recommendations")
    mine = recs[recs.user_id == 99]
    assert mine["item_id"].tolist() == _popular(_rows(), 99, 3)
    assert set(mine["source"]) == {"popularity"} and set(recs[recs.user_id != 99]["source"]) == {"als"}
    # The popularity score is the item's number of interactions.
    counts = pd.Series([i for _, i, r in _rows() if r >= 4]).value_counts()
    assert mine["score"].tolist() == [float(counts[i]) for i in mine["item_id"]]
    by_source = json.loads((model / "run.json").read_text())["counts"]["recommendations_by_source"]
    assert by_source == {"als": {"users": 24, "rows": 72}, "popularity": {"users": 1, "rows": 3}}


def test_explanations_add_up_to_each_als_score(fitted):
    # recommend.explain=20 covers every liked item (at most 6), so the contributions sum to u·v.
    _, model = fitted
    recs = _table(model / "recommendations")
    why = _table(model / "explanations")
    assert list(why.columns) == ["user_id", "rank", "item_id", "because_item_id", "contribution", "share"]
    total = why.groupby(["user_id", "rank", "item_id"])["contribution"].sum().reset_index()
    joined = recs[recs.source == "als"].merge(total, on=["user_id", "rank", "item_id"], how="left")
    assert joined["contribution"].notna().all()  # every ALS recommendation is explained, popularity ones are not
    np.testing.assert_allclose(joined["contribution"], joined["score"], rtol=1e-4, atol=1e-6)
    assert 99 not in set(why["user_id"])
    liked = {(u, i) for u, i, r in _rows() if r >= 4}
    assert all((u, j) in liked for u, j in zip(why["user_id"], why["because_item_id"]))
    shares = why.groupby(["user_id", "rank"])["share"].sum()
    np.testing.assert_allclose(shares, 1.0, rtol=1e-4)


def test_fold_in_answers_training_users_as_the_fit_and_new_users_without_a_refit(fitted, tmp_path):
    base, model = fitted
    trained = [r for r in _rows() if r[0] in (3, 7)]
    # User 500 likes items the model knows; user 501 only an item it has never seen (999);
    # user 502 rated badly only; user 503 likes item 2 and the unknown 999.
    new = [(500, 12, 5), (500, 1, 5), (500, 2, 4), (501, 999, 5), (502, 4, 1), (503, 2, 5), (503, 999, 5)]
    events = _parquet(tmp_path / "events.parquet", trained + new)
    out = tmp_path / "served"
    assert main(["recommend", "--model", str(model), "--input", events, "--output", str(out), *QUIET]) == 0

    recs, before = _table(out / "recommendations"), _table(model / "recommendations")
    for user in (3, 7):
        got, want = recs[recs.user_id == user], before[before.user_id == user]
        assert got["item_id"].tolist() == want["item_id"].tolist()
        assert set(got["source"]) == {"fold_in"}
    vectors, fitted_vectors = _table(out / "user_factors"), _table(model / "user_factors")
    for user in (3, 7):
        x = np.array(vectors[vectors.id == user]["features"].iloc[0])
        y = np.array(fitted_vectors[fitted_vectors.id == user]["features"].iloc[0])
        assert np.linalg.norm(x - y) / np.linalg.norm(y) < 1e-4
    sources = recs.groupby("user_id")["source"].first().to_dict()
    assert sources == {3: "fold_in", 7: "fold_in", 500: "fold_in", 501: "popularity", 502: "popularity", 503: "fold_in"}
    assert recs[recs.user_id == 501]["item_id"].tolist() == _popular(_rows(), 501, 3)
    assert not set(recs[recs.user_id == 500]["item_id"]) & {12, 1, 2}  # rated items are never recommended
    assert recs.groupby("user_id").size().eq(3).all()
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert {
        k: counts[k] for k in ("ratings", "ratings_of_items_without_factors", "users", "users_new_to_the_model")
    } == {
        "ratings": len(trained) + len(new),
        "ratings_of_items_without_factors": 2,
        "users": 6,
        "users_new_to_the_model": 4,
    }
    assert counts["users_folded_in"] == 4


def test_recommend_filters_apply_to_both_sources(fitted, tmp_path):
    base, model = fitted
    (tmp_path / "stock.csv").write_text("item_id\n5\n6\n7\n8\n9\n")
    (tmp_path / "blocked.csv").write_text("user_id,item_id\n99,5\n")
    out = tmp_path / "filtered"
    filters = [
        "--set",
        f"recommend.allow_items={tmp_path / 'stock.csv'}",
        "--set",
        f"recommend.deny={tmp_path / 'blocked.csv'}",
        "--set",
        "recommend.deny_items=[9]",
    ]
    data = str(base / "ratings.parquet")
    assert main(["run", "--input", data, "--output", str(out), *SMALL, *filters, *QUIET]) == 0
    recs = _table(out / "recommendations")
    assert set(recs["item_id"]) <= {5, 6, 7, 8}
    # User 99 gets the popular items among 5-8 without 5 (denied to them); 3 remain, so 3 rows.
    allowed = [i for i in _popular(_rows(), 99, 12) if i in (6, 7, 8)]
    assert recs[recs.user_id == 99]["item_id"].tolist() == allowed[:3]
    # Every user keeps top_n = 3 items while 3 allowed items they did not rate remain.
    rated = pd.DataFrame(_rows(), columns=["u", "i", "r"]).groupby("u")["i"].apply(set)
    left = {u: len({5, 6, 7, 8} - items - ({5} if u == 99 else set())) for u, items in rated.items()}
    assert recs.groupby("user_id").size().to_dict() == {u: min(3, n) for u, n in left.items() if n}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--input", "EVENTS"], 2, "--input, --table and --dataset need --model DIR"),
        (["--model", "MODEL"], 2, "needs the users' events"),
        (["--model", "MODEL", "--input", "EVENTS", "--set", "als.alpha=9"], 2, "als.alpha=9.0 (the model's: 4.0)"),
        (["--model", "NOWHERE", "--input", "EVENTS"], 3, "run.json is missing or records no configuration"),
    ],
)
def test_recommend_refuses_what_it_cannot_fold_in(fitted, tmp_path, capsys, args, code, message):
    _, model = fitted
    events = _parquet(tmp_path / "events.parquet", [(1, 1, 5)])
    swap = {"MODEL": str(model), "EVENTS": events, "NOWHERE": str(tmp_path / "nothing")}
    argv = ["recommend", "--output", str(tmp_path / "out"), *[swap.get(a, a) for a in args], *QUIET]
    assert main(argv) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "recommendations").exists()
