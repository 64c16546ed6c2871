"""`als-spark compare` and `als-spark converge` end to end: arguments, outputs, report, exit codes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from als_spark import synthetic
from als_spark.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def u_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    synthetic.write_movielens(synthetic.generate(n_users=60, n_items=50, n_ratings=1500, n_groups=3, seed=3), folder)
    return folder / "u.data"


TINY = ["als.max_iter=2", "als.num_blocks=2", "recommend.top_n=3"]


@pytest.fixture(autouse=True)
def no_calibration(monkeypatch):
    """Skip the timing fits (tested in test_compare.py): these tests check the command's wiring."""
    from als_spark.analysis import progress

    monkeypatch.setattr(progress, "calibrate", lambda *args, **kwargs: (None, []))


def test_compare_writes_the_report_tables_and_plot(spark, u_data, tmp_path, capsys):
    out = tmp_path / "cmp"
    # The rows in another order than by user and item, as a real log is, so the index orders differ.
    data = pd.read_csv(u_data, sep="\t", names=["user", "item", "rating", "timestamp"]).sample(frac=1, random_state=0)
    shuffled = tmp_path / "u.data"
    data.to_csv(shuffled, sep="\t", header=False, index=False)
    args = [
        "compare",
        "--input",
        str(shuffled),
        "--output",
        str(out),
        "--seeds",
        "2",
        "--no-holdout",
        "--k",
        "3",
        "--top-n",
        "3",
        "--user-index",
        "1",
        "--item-index",
        "0",
        "--name-a",
        "rank 2",
        "--log-level",
        "WARNING",
    ]
    for side, rank in (("a", 2), ("b", 3)):
        args += sum([[f"--set-{side}", kv] for kv in [*TINY, f"als.rank={rank}"]], [])
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "# rank 2 vs B: do the lists differ beyond seed noise?" in printed
    # indexes in input order: the notebook's pd.factorize of the rows rated >= 4 (the default min_rating)
    # (the first row, user 18's rating of 2, does not count)
    liked = data[data.rating >= 4]
    user, item = pd.factorize(liked.user)[1][1], pd.factorize(liked.item)[1][0]
    assert user != sorted(set(liked.user))[1] and item != sorted(set(liked.item))[0]  # the orders differ here
    assert f"## user index 1 (input order) (= user id {user} in the input file): similar users" in printed
    assert f"## item index 0 (input order) (= item id {item} in the input file): similar items" in printed
    agreement = pd.read_parquet(out / "agreement")
    assert list(agreement.columns) == [
        "table",
        "id",
        "jaccard_within_a",
        "jaccard_within_b",
        "jaccard_between",
        "rbo_within_a",
        "rbo_within_b",
        "rbo_between",
    ]
    assert set(agreement["table"]) == {"similar_users", "similar_items", "recommendations"}
    assert len(pd.read_parquet(out / "agreement_pairs")) == 6 * 3  # C(4, 2) pairs of fits, 3 tables
    summary = json.loads((out / "compare.json").read_text())
    assert summary["seeds"] == {"a": [42, 43], "b": [44, 45]}  # both configurations say 42: B moves on
    assert summary["differences"] == [["als.rank", 2, 3]]
    assert (out / "compare.md").read_text().startswith("# rank 2 vs B")
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "compare" and run["config"]["als"]["rank"] == 2
    assert run["input"]["compare"]["focus"] == [
        f"user index 1 (input order) = user id {user}",
        f"item index 0 (input order) = item id {item}",
    ]
    assert run["input"]["compare"]["config_b"]["als"]["rank"] == 3
    assert set(run["published"]) == {"agreement", "agreement_pairs", "compare.md", "compare.json", "compare.png"}


def test_converge_writes_steps_and_fits(spark, u_data, tmp_path, capsys):
    out = tmp_path / "conv"
    args = [
        "converge",
        "--input",
        str(u_data),
        "--output",
        str(out),
        "--iterations",
        "3,1",
        "--k",
        "3",
        "--top-n",
        "3",
        "--user-index",
        "4",
        "--index-order",
        "sorted",
        "--no-seed-reference",
        "--log-level",
        "WARNING",
    ]
    args += sum([["--set", kv] for kv in [*TINY, "als.rank=3"]], [])
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (
        "| 1 → 3 |" in printed
        and "## user index 4 (sorted order) (= user id 5 in the input file): similar users" in printed
    )
    steps = pd.read_parquet(out / "converge_steps")
    assert set(steps["kind"]) == {"step", "to_last"} and set(steps["table"]) == {
        "similar_users",
        "similar_items",
        "recommendations",
    }
    fits = pd.read_parquet(out / "converge_fits")
    assert fits[["iterations", "seed"]].values.tolist() == [[1, 42], [3, 42]]  # counts sorted
    assert fits["ndcg"].between(0, 1).all()  # scored on the holdout
    run = json.loads((out / "run.json").read_text())
    assert set(run["published"]) == {"converge_steps", "converge_fits", "converge.md", "converge.json", "converge.png"}
    assert run["input"]["converge"]["iterations"] == [1, 3]


def test_bad_arguments_exit_2(spark, u_data, tmp_path, capsys):
    base = ["--input", str(u_data), "--output", str(tmp_path / "x"), "--log-level", "WARNING"]
    assert main(["compare", *base, "--seeds", "1"]) == 2
    assert "--seeds must be an integer >= 2" in capsys.readouterr().err
    assert main(["compare", *base, "--user", "10"]) == 2  # --user-id or --user-index: say which
    assert "ambiguous option: --user could match --user-id, --user-index" in capsys.readouterr().err
    assert main(["compare", *base, "--set-b", "ingest.min_rating=3"]) == 2
    assert "ingest.min_rating differs" in capsys.readouterr().err
    assert main(["converge", *base, "--iterations", "5"]) == 2
    assert main(["converge", *base, "--iterations", "5,x"]) == 2
    assert (
        main(
            [
                "compare",
                *base,
                "--seeds",
                "2",
                "--no-holdout",
                "--user-index",
                "100000",
                "--set-a",
                "als.max_iter=1",
                "--set-b",
                "als.max_iter=1",
            ]
        )
        == 2
    )
    assert "out of range" in capsys.readouterr().err
