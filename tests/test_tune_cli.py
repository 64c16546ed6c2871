"""`als-spark tune` on the command line: a spec or --compare mistake exits 2 before Spark starts; a search runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from als_spark.cli import main
from als_spark.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# Three taste groups of 8 users, each liking the 8 items of its group (as tests/test_tune.py).
U_DATA = "".join(
    f"{u}\t{100 * (g + 1) + j}\t{5 if (u + j) % 3 else 4}\t{880000000 + 100 * u + j}\n"
    for g in range(3) for u in range(10 * g + 1, 10 * g + 9) for j in range(1, 9)
)


def test_bad_spec_and_bad_compare_exit_2_naming_the_problem(tmp_path, capsys):
    (tmp_path / "u.data").write_text(U_DATA)
    spec = tmp_path / "spec.yaml"
    spec.write_text("tune:\n  space:\n    als.rnak: [2]\n")
    args = ["tune", "--input", str(tmp_path / "u.data"), "--output", str(tmp_path / "o")]
    assert main([*args, "--spec", str(spec)]) == 2
    assert "unknown tune.space key 'als.rnak'. Did you mean 'als.rank'?" in capsys.readouterr().err
    spec.write_text("tune:\n  space:\n    als.rank: [2]\n")
    assert main([*args, "--spec", str(spec), "--compare", "conf/seed-notebook.yaml"]) == 2
    assert "--compare expects NAME=FILE" in capsys.readouterr().err
    assert main([*args, "--spec", str(tmp_path / "missing.yaml")]) == 2
    assert not (tmp_path / "o").exists()


def test_tune_writes_a_best_yaml_usable_with_config(tmp_path):
    (tmp_path / "u.data").write_text(U_DATA)
    spec = tmp_path / "spec.yaml"
    spec.write_text("tune:\n  space:\n    als.rank: [1, 4]\n    als.max_iter: 5\n")
    out = tmp_path / "o"
    assert main(["tune", "--input", str(tmp_path / "u.data"), "--spec", str(spec), "--output", str(out),
                 "--k", "2", "--no-test", "--set", "als.seed=1", "--log-level", "WARNING"]) == 0
    board = pd.read_parquet(out / "leaderboard").sort_values("position")
    assert board["als_rank"].tolist() == [4, 1]  # rank 4 separates the three groups, rank 1 cannot
    best = load_config(out / "best.yaml")
    assert (best.als.rank, best.als.max_iter, best.als.seed) == (4, 5, 1)
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "tune" and run["counts"]["trials"] == 2
    assert not (out / "test_metrics").exists()  # --no-test
