"""The whole pipeline on the built-in synthetic dataset, checked against an independent NumPy recomputation.

One run of ``als-spark run --dataset synthetic`` (module fixture); every test reads what it wrote.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from spark_services import expected_summary

from als_spark import synthetic
from als_spark.cli import main

pytestmark = pytest.mark.slow

TOL = 1e-5
#: The run adds ``POPULARITY_WEIGHT * ln(item's interaction count)`` to every recommendation score.
POPULARITY_WEIGHT = 0.02


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "out"
    code = main(
        [
            "run",
            "--dataset",
            "synthetic",
            "--output",
            str(out),
            "--set",
            "als.max_iter=10",
            "--set",
            f"recommend.popularity_weight={POPULARITY_WEIGHT}",
            "--log-level",
            "WARNING",
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def data():
    return synthetic.generate(seed=42)


def _read(out, name) -> pd.DataFrame:
    return pd.read_parquet(out / name)


def _factors(out, name) -> tuple[np.ndarray, np.ndarray]:
    df = _read(out, name).sort_values("id")
    return df["id"].to_numpy(), np.stack(df["features"].to_numpy()).astype(np.float64)


def _check_top_k(
    written: pd.DataFrame,
    key: str,
    other: str,
    value: str,
    ids: np.ndarray,
    other_ids: np.ndarray,
    scores: np.ndarray,
    k: int,
) -> int:
    """Compare written top-k lists with ``scores`` (rows: ids, columns: other_ids; -inf = excluded).

    Exact ties may be listed in either order only if our tie-break (smaller id first) holds; near-ties
    within TOL may swap. Returns the number of lists checked.
    """
    column = {v: j for j, v in enumerate(other_ids)}
    grouped = dict(tuple(written.sort_values([key, "rank"]).groupby(key)))
    for i, qid in enumerate(ids):
        row = scores[i]
        order = np.lexsort((other_ids, -row))
        expected = [j for j in order[:k] if np.isfinite(row[j])]
        got = grouped[qid]
        assert got["rank"].tolist() == list(range(1, len(expected) + 1)), qid
        got_cols = [column[v] for v in got[other]]
        # every written score is the true score of that pair, and is excluded nowhere
        np.testing.assert_allclose(got[value].to_numpy(), row[got_cols], atol=TOL)
        # the k-th best score matches position by position: same lists up to (near-)ties
        np.testing.assert_allclose(got[value].to_numpy(), row[expected], atol=TOL)
        differs = [a != b for a, b in zip(got_cols, expected)]
        assert all(abs(row[a] - row[b]) <= TOL for a, b, d in zip(got_cols, expected, differs) if d), qid
    return len(ids)


def test_recommendations_match_numpy_and_never_include_rated_items(run, data):
    users, u = _factors(run, "user_factors")
    items, v = _factors(run, "item_factors")
    liked = data.ratings[data.ratings["rating"] >= 4].groupby("item_id").size()
    scores = u @ v.T + POPULARITY_WEIGHT * np.log(liked.loc[items].to_numpy(dtype=np.float64))
    col = {item: j for j, item in enumerate(items)}
    row = {user: i for i, user in enumerate(users)}
    rated = data.ratings  # recommend.exclude = rated: every rated item, liked or not
    known = rated[rated["item_id"].isin(col) & rated["user_id"].isin(row)]
    scores[known["user_id"].map(row).to_numpy(), known["item_id"].map(col).to_numpy()] = -np.inf
    recs = _read(run, "recommendations")
    assert _check_top_k(recs, "user_id", "item_id", "score", users, items, scores, 10) == len(users)
    pairs = set(zip(rated["user_id"], rated["item_id"]))
    assert not any((uid, iid) in pairs for uid, iid in zip(recs["user_id"], recs["item_id"]))
    assert len(recs) == 10 * len(users)


@pytest.mark.parametrize(
    ("table", "factors", "key", "other"),
    [
        ("similar_items", "item_factors", "item_id", "similar_item_id"),
        ("similar_users", "user_factors", "user_id", "similar_user_id"),
    ],
)
def test_similarities_match_numpy_cosine(run, table, factors, key, other):
    ids, f = _factors(run, factors)
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)  # never its own neighbour
    written = _read(run, table)
    assert _check_top_k(written, key, other, "similarity", ids, ids, cos, 10) == len(ids)
    assert (written[key] != written[other]).all()


def test_summary_interactions_and_counts_match_pandas(run, data):
    liked = data.ratings[data.ratings["rating"] >= 4]
    summary = _read(run, "dataset_summary")
    expected = expected_summary(liked).astype({c: "int64" for c in summary.columns if not c.startswith("avg")})
    pd.testing.assert_frame_equal(summary, expected)

    interactions = _read(run, "interactions").sort_values(["user_id", "item_id"]).reset_index(drop=True)
    want = liked[["user_id", "item_id", "rating"]].astype({"rating": "float64"}).reset_index(drop=True)
    want["confidence"] = want["rating"]  # seed configuration: confidence = the rating value
    pd.testing.assert_frame_equal(interactions, want, check_dtype=False)

    info = json.loads((run / "run.json").read_text())
    assert {
        k: info["counts"][k] for k in ("rows_read", "rows_rejected", "duplicates_dropped", "ratings", "interactions")
    } == {
        "rows_read": 100_000,
        "rows_rejected": 0,
        "duplicates_dropped": 0,
        "ratings": 100_000,
        "interactions": len(liked),
    }
    rated_users, rated_items = data.ratings["user_id"].nunique(), data.ratings["item_id"].nunique()
    assert info["counts"]["users_without_interactions"] == rated_users - liked["user_id"].nunique()
    assert info["counts"]["items_without_interactions"] == rated_items - liked["item_id"].nunique()
    assert info["input"]["dataset"] == "synthetic"
    assert info["config"]["als"]["max_iter"] == 10
    assert info["config"]["recommend"]["popularity_weight"] == POPULARITY_WEIGHT
    assert set(info["timings_seconds"]) == {
        "ingest",
        "write_ingest",
        "fit",
        "write_model",
        "recommend",
        "similar_items",
        "similar_users",
        "publish",
    }
    assert info["versions"]["spark"].startswith("4.") and info["versions"]["java"]


def test_ids_are_the_input_ids_and_titles_are_carried(run, data):
    liked = data.ratings[data.ratings["rating"] >= 4]
    assert set(_read(run, "user_factors")["id"]) == set(liked["user_id"])
    assert set(_read(run, "item_factors")["id"]) == set(liked["item_id"])
    titles = dict(zip(data.items["item_id"], data.items["title"]))
    recs = _read(run, "recommendations")
    assert recs["title"].tolist() == [titles[i] for i in recs["item_id"]]
    sim = _read(run, "similar_items")
    assert sim["title"].tolist() == [titles[i] for i in sim["item_id"]]
    assert sim["similar_title"].tolist() == [titles[i] for i in sim["similar_item_id"]]


def test_planted_taste_groups_are_recovered(run, data):
    # The generator plants 8 taste groups; a working model's neighbours and
    # recommendations stay mostly inside a user's or item's own group.
    ugroup = dict(zip(data.user_groups["user_id"], data.user_groups["group"]))
    igroup = dict(zip(data.item_groups["item_id"], data.item_groups["group"]))
    users = _read(run, "similar_users")
    same_users = np.mean([ugroup[a] == ugroup[b] for a, b in zip(users["user_id"], users["similar_user_id"])])
    items = _read(run, "similar_items")
    same_items = np.mean([igroup[a] == igroup[b] for a, b in zip(items["item_id"], items["similar_item_id"])])
    recs = _read(run, "recommendations")
    in_group = np.mean([ugroup[u] == igroup[i] for u, i in zip(recs["user_id"], recs["item_id"])])
    assert same_users >= 0.9 and same_items >= 0.8 and in_group >= 0.8, (same_users, same_items, in_group)


def test_output_schemas_are_the_documented_contract(spark, run):
    expected = {
        "dataset_summary": "total_users bigint, total_items bigint, avg_ratings_per_user double, avg_ratings_per_item double, "
        "max_ratings_per_user bigint, max_ratings_per_item bigint, min_ratings_per_user bigint, min_ratings_per_item bigint",
        "ratings": "user_id int, item_id int, rating double, timestamp bigint",
        "interactions": "user_id int, item_id int, rating double, confidence double",
        "items": "item_id int, title string",
        "user_factors": "id int, features array<float>",
        "item_factors": "id int, features array<float>",
        "recommendations": "user_id int, rank int, item_id int, score float, source string, title string",
        "similar_items": "item_id int, rank int, similar_item_id int, similarity float, title string, similar_title string",
        "similar_users": "user_id int, rank int, similar_user_id int, similarity float",
    }
    got = {name: spark.read.parquet(str(run / name)).schema.simpleString() for name in expected}
    assert got == {name: f"struct<{s.replace(' ', ':').replace(',:', ',')}>" for name, s in expected.items()}
    assert (run / "model" / "metadata").is_dir()
