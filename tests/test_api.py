"""The Python API (als_spark.fit / Recommender / load / run) on hand-made ratings, and the README's example."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality

import als_spark
from als_spark import model as model_module
from als_spark.config import build_config
from als_spark.errors import InputDataError

ROOT = Path(__file__).resolve().parents[1]

# Two planted taste groups. Group A: users 1-3 and items 10-13; group B: users 4-6 and items 20-23.
# Each user likes (5.0) three of its group's four items, a different one missing for each, and
# rated one item of the other group 2.0 (below min_rating 4: a rating, not an interaction).
MISSING = {1: 10, 2: 11, 3: 12, 4: 20, 5: 21, 6: 22}
DISLIKED = {1: 20, 2: 21, 3: 22, 4: 10, 5: 11, 6: 12}


def _group(user: int) -> list[int]:
    return [10, 11, 12, 13] if user <= 3 else [20, 21, 22, 23]


ROWS = [(u, i, 5.0, 100 + i) for u in MISSING for i in _group(u) if i != MISSING[u]]
ROWS += [(u, DISLIKED[u], 2.0, 200) for u in MISSING]
CFG = build_config(
    {
        "als": {"rank": 4, "max_iter": 10, "reg_param": 0.01, "alpha": 1.0, "seed": 3, "num_blocks": 2},
        "recommend": {"top_n": 1},
        "similar": {"top_k": 2},
    }
)


@pytest.fixture(scope="module")
def ratings(spark):
    return spark.createDataFrame(ROWS, "user_id int, item_id int, rating double, timestamp long")


@pytest.fixture(scope="module")
def fitted(ratings):
    recommender = als_spark.fit(ratings, CFG)
    yield recommender
    recommender.close()


def test_each_user_is_recommended_the_liked_item_of_its_group_it_has_not_seen(fitted, spark):
    # With exclude: rated, a user's candidates are its group's missing item and the other group's three
    # items it did not rate; the planted structure puts the missing in-group item first.
    got = fitted.recommend().select("user_id", "rank", "item_id")
    expected = spark.createDataFrame(
        [(u, 1, i) for u, i in sorted(MISSING.items())], "user_id int, rank int, item_id int"
    )
    assert_df_equality(got.orderBy("user_id"), expected, ignore_nullable=True)
    assert got.schema.names == ["user_id", "rank", "item_id"]
    assert fitted.recommend().schema.names == ["user_id", "rank", "item_id", "score", "source"]


def test_scores_are_the_dot_products_of_the_factors(fitted):
    users = {r["id"]: np.array(r["features"]) for r in fitted.user_factors.collect()}
    items = {r["id"]: np.array(r["features"]) for r in fitted.item_factors.collect()}
    for row in fitted.recommend(top_n=3).collect():
        assert row["score"] == pytest.approx(float(users[row["user_id"]] @ items[row["item_id"]]), rel=1e-5)


def test_a_subset_of_users_gets_its_rows_of_the_full_table(fitted):
    full = fitted.recommend(top_n=2)
    subset = fitted.recommend(users=[1, 5, 99], top_n=2)  # 99 is unknown: no rows
    # The same items in the same ranks; a score may differ in its last float32 bit, as BLAS sums a
    # block of two users in another order than a block of six.
    assert_approx_df_equality(
        subset.orderBy("user_id", "rank"), full.where("user_id in (1, 5)").orderBy("user_id", "rank"), precision=1e-6
    )


def test_similar_items_and_users_stay_within_the_planted_groups(fitted, spark):
    items = fitted.similar_items([10, 20]).select("item_id", "similar_item_id").collect()
    assert {(r[0], r[1]) for r in items} <= {(10, j) for j in (11, 12, 13)} | {(20, j) for j in (21, 22, 23)}
    assert len(items) == 4  # top_k 2 each (the configured default)
    users = fitted.similar_users(spark.createDataFrame([(4,)], "user_id int"), top_k=2).collect()
    assert sorted(r["similar_user_id"] for r in users) == [5, 6]
    assert [r["rank"] for r in users] == [1, 2]


def test_save_and_load_give_the_same_answers(fitted, tmp_path):
    path = str(tmp_path / "model")
    fitted.save(path)
    with als_spark.load(path) as again:
        assert again.config == CFG
        assert_df_equality(
            again.recommend(top_n=3).orderBy("user_id", "rank"), fitted.recommend(top_n=3).orderBy("user_id", "rank")
        )
        assert_df_equality(
            again.similar_users().orderBy("user_id", "rank"), fitted.similar_users().orderBy("user_id", "rank")
        )
    # saving again replaces the model: a new snapshot, the one before kept for a reader still loading it
    fitted.save(path)
    names = ["config.json", "exclude", "item_index", "model", "user_index"]
    assert sorted(os.listdir(path)) == sorted([*names, ".runs", "current"])
    assert sorted(os.listdir(os.path.join(path, "current"))) == names
    assert len(os.listdir(os.path.join(path, ".runs"))) == 2


def test_columns_map_a_notebooks_own_names(spark, ratings):
    # What fit() trains on: the same validated ratings as from the default names (the README's
    # example runs fit() itself with a mapping).
    from als_spark import ingest

    renamed = spark.createDataFrame(ROWS, "customer int, sku int, stars double, ts long")
    mapped = ingest.read_dataframe(
        renamed, columns={"user": "customer", "item": "sku", "rating": "stars", "timestamp": "ts"}
    )
    plain = ingest.read_dataframe(ratings)
    assert_df_equality(mapped.df.orderBy("user_id", "item_id"), plain.df.orderBy("user_id", "item_id"))
    assert mapped.df.columns == ["user_id", "item_id", "rating", "timestamp"]
    # without a timestamp column the timestamps are null
    untimed = ingest.read_dataframe(renamed.drop("ts"), columns={"user": "customer", "item": "sku", "rating": "stars"})
    assert untimed.df.where("timestamp is not null").count() == 0 and untimed.rows == len(ROWS)


def test_bad_frames_are_errors_naming_the_column(spark):
    with pytest.raises(
        InputDataError, match=r"no column 'uid' for the user: .* Its columns are: user_id, item_id, rating\."
    ):
        als_spark.fit(
            spark.createDataFrame([(1, 2, 5.0)], "user_id int, item_id int, rating double"),
            CFG,
            columns={"user": "uid"},
        )
    with pytest.raises(
        InputDataError, match=r"column 'item_id' \(the item\) is of type double; it must be a string or an integer type"
    ):
        als_spark.fit(spark.createDataFrame([(1, 0.5, 5.0)], "user_id int, item_id double, rating double"), CFG)
    # 1 of 2 rows has no rating: 50% rejected, over the 1% allowed
    with pytest.raises(InputDataError, match=r"1 of 2 rows of the DataFrame \(50.0%\) were rejected.*missing rating"):
        als_spark.fit(
            spark.createDataFrame([(1, 2, 5.0), (1, 3, None)], "user_id int, item_id int, rating double"), CFG
        )


def test_rejected_rows_are_rendered_and_explained(spark):
    from als_spark import ingest

    df = spark.createDataFrame(
        [(1, 2, 5.0), (None, 3, 4.0), (3, 4, float("nan")), (3, 5, 9.0)], "user_id bigint, item_id int, rating double"
    )
    got = ingest.read_dataframe(df, build_config(None, ["ingest.rating_min=0.5", "ingest.rating_max=5"]).ingest)
    rejected = sorted((r["line"], r["reason"]) for r in got.rejected.collect())
    assert rejected == [
        ('{"item_id":3,"rating":4.0}', "missing user_id"),
        ('{"user_id":3,"item_id":4,"rating":"NaN"}', "rating is not finite"),
        ('{"user_id":3,"item_id":5,"rating":9.0}', "rating outside [0.5, 5]"),
    ]
    assert (got.rows_read, got.rows_rejected, got.rows) == (4, 3, 1)


def test_close_releases_the_caches_and_the_temporary_checkpoint_directory(spark, ratings, monkeypatch):
    # The shared session may already have a checkpoint directory; present one without.
    sc = spark.sparkContext
    real_get, real_set, was_set = sc.getCheckpointDir, sc.setCheckpointDir, []
    monkeypatch.setattr(sc, "getCheckpointDir", lambda: real_get() if was_set else None)
    monkeypatch.setattr(sc, "setCheckpointDir", lambda d: (was_set.append(d), real_set(d)))
    recommender = als_spark.fit(ratings, CFG)
    directory = was_set[0]
    assert os.path.basename(directory).startswith(model_module.TEMPORARY_PREFIX) and os.path.isdir(directory)
    assert recommender.user_factors.is_cached
    recommender.close()
    assert not os.path.exists(directory)
    assert not recommender.user_factors.is_cached
    recommender.close()  # idempotent


def test_run_publishes_the_pipelines_tables_from_a_dataframe(spark, ratings, fitted, tmp_path):
    out = tmp_path / "out"
    result = als_spark.run(ratings, str(out), CFG)
    assert result["input"]["format"] == "dataframe"
    assert result["counts"]["ratings"] == len(ROWS) and result["counts"]["interactions"] == 18
    published = spark.read.parquet(str(out / "recommendations"))
    # the same configuration and seed fitted on the same data: the same table as the Recommender's
    assert_df_equality(published.orderBy("user_id"), fitted.recommend().orderBy("user_id"), ignore_nullable=True)
    assert json.loads((out / "run.json").read_text())["status"] == "succeeded"


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one example"
    return blocks[0]


def test_the_readme_example_runs(spark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_example(), "README.md (Python API)", "exec"), {"__name__": "readme"})
    shown = capsys.readouterr().out
    assert "user_id|rank|item_id" in shown.replace(" ", "")
    assert (tmp_path / "my-model" / "model").is_dir()
    assert (tmp_path / "out-api" / "recommendations").is_dir()


@pytest.mark.parametrize("kind", ["string", "long"])
def test_string_and_64_bit_ids_go_in_and_come_out(spark, tmp_path, kind):
    # The planted groups with string ids, or integers beyond 32 bits: the answers are the int test's, by name.
    def user(u):
        return f"user-{u}" if kind == "string" else 2**40 + u

    def item(i):
        return f"sku-{i}" if kind == "string" else 2**40 + i

    rows = [(user(u), item(i), r, t) for u, i, r, t in ROWS]
    id_type = "string" if kind == "string" else "bigint"
    named = spark.createDataFrame(rows, f"customer {id_type}, product {id_type}, stars double, ts long")
    columns = {"user": "customer", "item": "product", "rating": "stars", "timestamp": "ts"}
    with als_spark.fit(named, CFG, columns=columns) as recommender:
        got = recommender.recommend(users=[user(1), user(4), user(99)]).select("user_id", "rank", "item_id")
        expected = spark.createDataFrame(
            [(user(1), 1, item(10)), (user(4), 1, item(20))], f"user_id {id_type}, rank int, item_id {id_type}"
        )
        assert_df_equality(got.orderBy("user_id"), expected, ignore_nullable=True)
        neighbours = recommender.similar_items([item(10)], top_k=3).select("similar_item_id").collect()
        assert {r[0] for r in neighbours} == {item(11), item(12), item(13)}
        assert recommender.user_factors.schema["id"].dataType.simpleString() == id_type
        recommender.save(str(tmp_path / "named"))
    loaded = als_spark.load(str(tmp_path / "named"))
    again = loaded.recommend(users=[user(1), user(4)]).select("user_id", "rank", "item_id")
    assert_df_equality(again.orderBy("user_id"), expected, ignore_nullable=True)
    loaded.close()
