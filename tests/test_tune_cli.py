"""`als-spark tune` on the command line: a spec or --compare mistake exits 2 before Spark starts; what a search gets and writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from als_spark.analysis import metrics, trials, tune, tune_spec
from als_spark.cli import main
from als_spark.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# Three taste groups of 8 users, each liking the 8 items of its group (as tests/test_tune.py).
U_DATA = "".join(
    f"{u}\t{100 * (g + 1) + j}\t{5 if (u + j) % 3 else 4}\t{880000000 + 100 * u + j}\n"
    for g in range(3)
    for u in range(10 * g + 1, 10 * g + 9)
    for j in range(1, 9)
)


@pytest.mark.unit
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


def test_tune_hands_the_spec_and_settings_to_the_search_and_writes_its_best(spark, tmp_path, monkeypatch):
    # The search is stubbed (tests/test_tune.py runs a real one on the same planted groups): this
    # checks what the command hands to it and what it writes from its trials.
    seen = {}

    def search(spark_, train, base, spec, *, k, validation_fraction, validation_seed, **kw):
        planned = tune_spec.trials(spec)
        seen.update(
            trials=planned,
            seed=base.als.seed,
            k=k,
            validation=(validation_fraction, validation_seed),
            train_rows=train.count(),
        )
        # scripted validation objectives: rank 4 first
        return [
            trials.Trial(
                n,
                params,
                tune_spec.trial_config(base, params),
                trials.STATUS_OK,
                objective,
                None,
                {**{m: objective for m in metrics.METRIC_NAMES}, "users": 24},
                5,
                1.0,
            )
            for n, (params, objective) in enumerate(zip(planned, [0.25, 0.75]), start=1)
        ]

    monkeypatch.setattr(tune, "search", search)
    (tmp_path / "u.data").write_text(U_DATA)
    spec = tmp_path / "spec.yaml"
    spec.write_text("tune:\n  space:\n    als.rank: [1, 4]\n    als.max_iter: 5\n")
    out = tmp_path / "o"
    assert (
        main(
            [
                "tune",
                "--input",
                str(tmp_path / "u.data"),
                "--spec",
                str(spec),
                "--output",
                str(out),
                "--k",
                "2",
                "--no-test",
                "--set",
                "als.seed=1",
                "--log-level",
                "WARNING",
            ]
        )
        == 0
    )
    # 24 users x 8 liked items; the test split holds out round(0.25 * 8) = 2 per user: 24 x 6 reach the search,
    # which cuts its validation split with the test split's fraction and seed 42 + 1.
    assert seen == {
        "trials": [{"als.rank": 1, "als.max_iter": 5}, {"als.rank": 4, "als.max_iter": 5}],
        "seed": 1,
        "k": 2,
        "validation": (0.25, 43),
        "train_rows": 24 * 6,
    }
    board = pd.read_parquet(out / "leaderboard").sort_values("position")
    assert board[["position", "trial", "als_rank", "objective"]].values.tolist() == [[1, 2, 4, 0.75], [2, 1, 1, 0.25]]
    best = load_config(out / "best.yaml")
    assert (best.als.rank, best.als.max_iter, best.als.seed) == (4, 5, 1)
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "tune" and run["counts"]["trials"] == 2
    assert not (out / "test_metrics").exists()  # --no-test
