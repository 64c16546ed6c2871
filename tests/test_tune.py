"""Tuning: trial enumeration, spec errors, early stopping, and one whole run on planted data.

The planted data: three taste groups of 8 users; every user likes (rating 4 or 5) the
8 items of its group, nothing else. Per user 8 interactions -> 2 test (round(0.25 * 8)),
6 train -> 2 validation (round_half_up(0.25 * 6) = 2), 4 fit.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import sys

import pytest
import yaml

from als_spark import feedback, model
from als_spark.analysis import evaluate, metrics, splits, trials, tune, tune_report, tune_spec
from als_spark.config import ALSConfig, Config, build_config, load_config
from als_spark.errors import ConfigError

RATINGS = "user_id int, item_id int, rating double, timestamp long"
GROUPS = {0: range(1, 9), 1: range(11, 19), 2: range(21, 29)}  # users of each group
ITEMS = {0: range(101, 109), 1: range(201, 209), 2: range(301, 309)}  # items of each group
BASE = Config(als=ALSConfig(rank=4, max_iter=5, reg_param=0.01, alpha=1.0, seed=1, num_blocks=2))


def _ratings():
    rows = []
    for g, users in GROUPS.items():
        for u in users:
            for j, i in enumerate(ITEMS[g]):
                rows.append((u, i, 5.0 if (u + j) % 3 else 4.0, 1000 * u + j))
    return rows


# --- the spec and the trials (no Spark) -------------------------------------------------


def test_grid_enumerates_exactly_the_product_in_key_order():
    spec = tune_spec.parse_spec(
        {
            "tune": {
                "method": "grid",
                "space": {
                    "als.rank": [8, 16, 32],
                    "als.reg_param": [0.1, 1],
                    "ingest.confidence": ["rating", "binary"],
                    "recommend.popularity_weight": [0, 0.1],
                },
            }
        }
    )
    expected = [
        {"als.rank": r, "als.reg_param": p, "ingest.confidence": c, "recommend.popularity_weight": w}
        for r, p, c, w in itertools.product([8, 16, 32], [0.1, 1.0], ["rating", "binary"], [0.0, 0.1])
    ]
    assert tune_spec.trials(spec) == expected  # 24 = 3 * 2 * 2 * 2, the last key varying fastest
    # YAML's int 1 (or 0) for a float key is stored as the configuration stores it.
    assert all(isinstance(t["als.reg_param"], float) for t in tune_spec.trials(spec))
    assert all(isinstance(t["recommend.popularity_weight"], float) for t in tune_spec.trials(spec))


def test_random_search_is_deterministic_by_seed_and_stays_in_the_space():
    space = {
        "als.rank": [16, 32, 64, 128],
        "als.reg_param": [0.01, 0.1, 1, 10],
        "als.alpha": [1, 5, 10, 40],
        "als.max_iter": [10, 15, 20],
        "ingest.confidence": ["rating", "binary"],
    }
    spec = tune_spec.parse_spec({"method": "random", "n_trials": 25, "seed": 7, "space": space})
    first = tune_spec.trials(spec)
    assert first == tune_spec.trials(
        tune_spec.parse_spec({"method": "random", "n_trials": 25, "seed": 7, "space": space})
    )
    assert first != tune_spec.trials(
        tune_spec.parse_spec({"method": "random", "n_trials": 25, "seed": 8, "space": space})
    )
    assert len(first) == 25
    assert len({tuple(t.values()) for t in first}) == 25  # lists only: distinct points
    for t in first:
        assert all(t[key] in space[key] for key in space)
    # Asking for more trials than the product has gives the whole product, once.
    small = tune_spec.parse_spec(
        {"method": "random", "n_trials": 50, "space": {"als.rank": [4, 8], "als.alpha": [1, 2, 3]}}
    )
    drawn = tune_spec.trials(small)
    assert sorted(tuple(t.values()) for t in drawn) == sorted(itertools.product([4, 8], [1.0, 2.0, 3.0]))


#: A random search over two ranges and a list (parsed twice below: parse_spec must not keep state).
RANGES = {
    "method": "random",
    "n_trials": 40,
    "seed": 3,
    "space": {
        "als.reg_param": {"low": 0.1, "high": 100, "log": True},
        "als.rank": {"low": 8, "high": 64},
        "ingest.confidence": ["rating", "binary"],
    },
}


def test_random_search_with_ranges():
    spec = tune_spec.parse_spec(RANGES)
    drawn = tune_spec.trials(spec)
    assert len(drawn) == 40
    # deterministic by seed: the same draws from the spec parsed anew, other draws with another seed
    again = tune_spec.parse_spec(copy.deepcopy(RANGES))
    assert tune_spec.trials(again) == drawn
    assert tune_spec.trials(dataclasses.replace(again, seed=4)) != drawn
    for t in drawn:
        assert 0.1 <= t["als.reg_param"] <= 100
        assert isinstance(t["als.rank"], int) and 8 <= t["als.rank"] <= 64
        assert t["ingest.confidence"] in ("rating", "binary")
    # log-uniform over 0.1..100: about a third of the draws below 1 (a uniform draw: 0.9 %)
    assert 5 <= sum(t["als.reg_param"] < 1 for t in drawn) <= 25
    # every trial is a valid configuration
    assert all(tune_spec.trial_config(BASE, t).als.reg_param == t["als.reg_param"] for t in drawn)


def test_trial_config_sets_only_the_given_keys():
    cfg = tune_spec.trial_config(BASE, {"als.rank": 32, "als.reg_param": 5, "ingest.confidence": "binary"})
    # BASE with those three values, written out: every other key (als.seed 1, max_iter 5, ...) as in BASE
    assert cfg == Config(
        ingest=dataclasses.replace(BASE.ingest, confidence="binary"),
        als=ALSConfig(rank=32, max_iter=5, reg_param=5.0, alpha=1.0, seed=1, num_blocks=2),
        recommend=BASE.recommend,
        similar=BASE.similar,
    )
    assert isinstance(cfg.als.reg_param, float)  # YAML's 5 stored as the float the key is


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"space": {"als.rnak": [1]}}, r"unknown tune.space key 'als.rnak'\. Did you mean 'als.rank'\?"),
        ({"space": {"ingest.min_rating": [3, 4]}}, r"'ingest.min_rating' cannot be tuned"),
        (
            {"methd": "grid", "space": {"als.rank": [1]}},
            r"unknown tune key 'tune.methd'\. Did you mean 'tune.method'\?",
        ),
        ({"method": "bayes", "space": {"als.rank": [1]}}, r"tune.method must be one of grid, random, got 'bayes'"),
        ({"space": {"als.rank": [8, 0]}}, r"tune.space.als.rank: als.rank must be a positive integer, got 0"),
        ({"space": {"ingest.confidence": ["log"]}}, r"tune.space.ingest.confidence: ingest.confidence must be one of"),
        (
            {"space": {"als.reg_param": {"low": 1, "high": 10}}},
            r"tune.space.als.reg_param: a range .* needs method random",
        ),
        (
            {"method": "random", "space": {"als.reg_param": {"low": 0, "high": 10, "log": True}}},
            r"tune.space.als.reg_param: a log range needs low > 0",
        ),
        (
            {"method": "random", "space": {"als.alpha": {"lo": 1, "high": 10}}},
            r"unknown tune key 'tune.space.als.alpha.lo'",
        ),
        ({"space": {"als.rank": []}}, r"tune.space.als.rank: needs at least one value"),
        ({"space": {"als.rank": [8, 8]}}, r"tune.space.als.rank: repeated value"),
        ({"space": {}}, r"tune.space must be a non-empty mapping"),
        ({"metric": "auc", "space": {"als.rank": [1]}}, r"tune.metric must be one of"),
        ({"n_trials": 0, "space": {"als.rank": [1]}}, r"tune.n_trials must be a positive integer"),
        ({"repeats": 0, "space": {"als.rank": [1]}}, r"tune.repeats must be a positive integer"),
        ({"early_stop": {"probe": 2}, "space": {"als.rank": [1]}}, r"unknown tune key 'tune.early_stop.probe'"),
        ({"early_stop": {"margin": -1}, "space": {"als.rank": [1]}}, r"tune.early_stop.margin must be a number >= 0"),
    ],
)
def test_bad_spec_is_a_config_error_naming_the_key(tree, message):
    with pytest.raises(ConfigError, match=message):
        tune_spec.parse_spec(tree)


def test_load_spec_reads_yaml_under_tune(tmp_path):
    f = tmp_path / "spec.yaml"
    f.write_text(
        "tune:\n  method: random\n  n_trials: 3\n  space:\n    als.rank: [4, 8]\n  early_stop: {probe_iter: 2}\n"
    )
    spec = tune_spec.load_spec(f)
    assert (spec.method, spec.n_trials, spec.space, spec.early_stop) == (
        "random",
        3,
        {"als.rank": (4, 8)},
        tune_spec.EarlyStop(2, 0.01),
    )
    assert tune_spec.parse_spec(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="tune spec file not found"):
        tune_spec.load_spec(tmp_path / "missing.yaml")


def test_plot_is_skipped_with_a_warning_without_matplotlib(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    trial = trials.Trial(1, {"als.rank": 4}, BASE, trials.STATUS_OK, 0.5, None, {}, 6, 1.0)
    assert tune_report.plot_png([trial], ["als.rank"], metric="ndcg", k=2) is None
    assert "matplotlib is not installed" in caplog.text


# --- early stopping (scripted objectives, no Spark fit) --------------------------------------


def test_early_stop_abandons_trials_below_the_best_probe_minus_margin(spark):
    # Objective by (rank, iterations): the probe (2 iterations) and the full fit (5).
    scripted = {(2, 2): 0.50, (2, 5): 0.60, (3, 2): 0.45, (3, 5): 0.99, (4, 2): 0.495, (4, 5): 0.55, (5, 2): 0.7}
    calls = []

    def score(cfg):
        calls.append((cfg.als.rank, cfg.als.max_iter))
        return {**{m: 0.0 for m in metrics.METRIC_NAMES}, "ndcg": scripted[cfg.als.rank, cfg.als.max_iter], "users": 24}

    spec = tune_spec.parse_spec(
        {"space": {"als.rank": [2, 3, 4], "als.max_iter": [5]}, "early_stop": {"probe_iter": 2, "margin": 0.01}}
    )
    planned = [(p, tune_spec.trial_config(BASE, p)) for p in tune_spec.trials(spec)]
    planned.append(
        ({"als.rank": 5, "als.max_iter": 2}, tune_spec.trial_config(BASE, {"als.rank": 5, "als.max_iter": 2}))
    )
    done = trials.run_trials(planned, spec, score, k=2)
    # rank 2: first probe (0.50) is the best probe -> full fit 0.60.
    # rank 3: probe 0.45 < 0.50 - 0.01 -> stopped (its full fit, 0.99, is never run).
    # rank 4: probe 0.495 >= 0.49 -> full fit 0.55.
    # rank 5 with max_iter 2 <= probe_iter: one fit, which is also its probe.
    assert calls == [(2, 2), (2, 5), (3, 2), (4, 2), (4, 5), (5, 2)]
    assert [(t.status, t.objective, t.probe_objective, t.iterations) for t in done] == [
        ("ok", 0.60, 0.50, 5),
        ("stopped", None, 0.45, 2),
        ("ok", 0.55, 0.495, 5),
        ("ok", 0.7, 0.7, 2),
    ]
    assert trials.best_trial(done).number == 4
    board = tune_report.leaderboard(spark, done, metric="ndcg", k=2).collect()
    assert [(r.position, r.trial, r.status) for r in board] == [
        (1, 4, "ok"),
        (2, 1, "ok"),
        (3, 3, "ok"),
        (4, 2, "stopped"),
    ]
    assert board[3].objective is None and board[3].ndcg is None and board[3].probe_objective == 0.45
    # Without early_stop every trial runs once, in full.
    calls.clear()
    plain = tune_spec.parse_spec({"space": {"als.rank": [2, 3]}})
    trials.run_trials([(p, tune_spec.trial_config(BASE, p)) for p in tune_spec.trials(plain)], plain, score, k=2)
    assert calls == [(2, 5), (3, 5)]  # BASE.als.max_iter


def test_repeats_average_the_metrics_over_consecutive_als_seeds():
    spec = tune_spec.parse_spec({"space": {"als.rank": [2]}, "repeats": 3})
    seeds = []

    def score(cfg):
        seeds.append(cfg.als.seed)
        value = {1: 0.2, 2: 0.3, 3: 0.4}[cfg.als.seed]
        return {**{m: value for m in metrics.METRIC_NAMES}, "users": 24}

    averaged = trials.repeated(score, BASE, spec)  # BASE has als.seed 1
    assert seeds == [1, 2, 3]
    assert averaged == pytest.approx({**{m: 0.3 for m in metrics.METRIC_NAMES}, "users": 24, "objective_std": 0.1})


# --- the popularity prior reaches the trial's scoring -------------------------------------------

# Fit part: user 1 has items 1-4, user 2 items 1-3, user 3 items 1-2, user 4 item 1, so the
# items' counts are 4, 3, 2, 1. Validation: users 2 and 3 hold out item 4, user 4 item 3. With
# a weight of +-1000 the prior (1000 * ln(count), gaps >= 287) outweighs any dot product, so a
# user's unseen items come in order of count: k = 2 lists
#   +1000: u2 [4], u3 [3, 4], u4 [2, 3] -> hits at ranks 1, 2, 2
#   -1000: u2 [4], u3 [4, 3], u4 [4, 3] -> hits at ranks 1, 1, 2
# Each user has one relevant item: precision 1/2, recall 1 and a hit for all; NDCG 1 at rank 1 and
# 1/log2(3) at rank 2; AP 1 at rank 1 and 1/2 at rank 2 (normalised by min(k, 1) = 1).
NDCG2 = 1 / math.log2(3)
PRIOR_FIT = [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (4, 1)]
PRIOR_VALIDATION = [(2, 4), (3, 4), (4, 3)]
PRIOR_EXPECTED = {
    1000.0: {
        "precision": 0.5,
        "recall": 1.0,
        "ndcg": (1 + 2 * NDCG2) / 3,
        "map": (1 + 0.5 + 0.5) / 3,
        "hit_rate": 1.0,
        "coverage": 3 / 4,
        "users": 3,
    },
    -1000.0: {
        "precision": 0.5,
        "recall": 1.0,
        "ndcg": (2 + NDCG2) / 3,
        "map": (1 + 1 + 0.5) / 3,
        "hit_rate": 1.0,
        "coverage": 2 / 4,
        "users": 3,
    },
}


@pytest.mark.parametrize("weight", sorted(PRIOR_EXPECTED))
def test_a_trial_scores_its_lists_with_its_popularity_weight(spark, weight):
    fit = spark.createDataFrame([(u, i, 5.0) for u, i in PRIOR_FIT], "user_id int, item_id int, rating double")
    validation = spark.createDataFrame(PRIOR_VALIDATION, "user_id int, item_id int")
    data = tune.ValidationData(
        fit_ratings=fit,
        validation=validation,
        users=validation.select("user_id").distinct(),
        exclude=feedback.items_per_user(fit),
        catalog_size=4,
        n_users=3,
    )
    cfg = tune_spec.trial_config(BASE, {"als.rank": 2, "recommend.popularity_weight": weight})
    try:
        metrics = tune.fit_and_score(spark, data, cfg, k=2)
    finally:
        data.release()
    assert metrics == pytest.approx(PRIOR_EXPECTED[weight])


# --- one whole run on planted data ------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned(spark, tmp_path_factory):
    """run_tune on the planted data (2 x 2 grid), recording what every fit and metric received."""
    ratings = spark.createDataFrame(_ratings(), RATINGS).cache()
    seen = {"search_fit": set(), "search_scored": set(), "test_scored": set()}
    phase = ["search"]
    real_fit, real_metrics, real_evaluate = model.fit, metrics.ranking_metrics, evaluate.run_evaluate

    def pairs(df):
        return {(r[0], r[1]) for r in df.select("user_id", "item_id").collect()}

    def fit(interactions, cfg, **kw):
        if phase[0] == "search":
            seen["search_fit"] |= pairs(interactions)
        return real_fit(interactions, cfg, **kw)

    def scored(recs, test, **kw):
        seen[f"{phase[0]}_scored"] |= pairs(test)
        return real_metrics(recs, test, **kw)

    def evaluated(*args, **kw):
        phase[0] = "test"
        return real_evaluate(*args, **kw)

    spec = tune_spec.parse_spec({"method": "grid", "space": {"als.rank": [1, 4]}})
    out = tmp_path_factory.mktemp("tune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model, "fit", fit)
        # the search scores through tune's ranking_metrics, the test evaluation through evaluate's
        mp.setattr(tune, "ranking_metrics", scored)
        mp.setattr(evaluate, "ranking_metrics", scored)
        mp.setattr(tune, "run_evaluate", evaluated)
        result = tune.run_tune(spark, ratings, BASE, str(out), spec=spec, k=2, seed=42, baselines=("popularity",))
    return result, out, seen, ratings


def test_run_tune_leaderboard_best_row_is_the_max_objective(spark, tuned):
    result, out, _, _ = tuned
    board = spark.read.parquet(str(out / "leaderboard"))
    # (Parquet makes every column nullable.)
    assert [(f.name, f.dataType) for f in board.schema] == [(f.name, f.dataType) for f in tune_report.LEADERBOARD]
    rows = board.orderBy("position").collect()
    assert [r.position for r in rows] == [1, 2]
    assert sorted((r.als_rank, r.als_reg_param, r.ingest_confidence) for r in rows) == [
        (1, 0.01, "rating"),
        (4, 0.01, "rating"),
    ]
    objectives = [r.objective for r in rows]
    assert objectives == sorted(objectives, reverse=True)
    assert rows[0].objective == max(t.objective for t in result.trials) == result.best.objective
    assert rows[0].trial == result.best.number
    assert all(r.status == "ok" and r.ndcg == r.objective and r.metric == "ndcg" and r.k == 2 for r in rows)
    # Planted groups: rank 4 separates the three groups, rank 1 cannot.
    assert [r.als_rank for r in rows] == [4, 1]
    assert result.best.config.als.rank == 4


def test_run_tune_best_yaml_round_trips_to_the_best_config(tuned):
    result, out, _, _ = tuned
    text = (out / "best.yaml").read_text()
    assert text.startswith("# Written by als-spark tune")
    assert load_config(out / "best.yaml") == result.best.config
    assert yaml.safe_load(text) == result.best.config.to_dict()  # every key listed
    assert (result.best.config.als.seed, result.best.config.als.max_iter) == (1, 5)  # base values kept


def test_run_tune_writes_plot_summary_and_test_metrics(spark, tuned):
    result, out, _, _ = tuned
    try:
        import matplotlib  # noqa: F401 - the optional `plot` extra
    except ImportError:
        assert not (out / "tune.png").exists() and "tune.png" not in result.outputs
    else:
        assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics_table = spark.read.parquet(str(out / "test_metrics"))
    assert [(f.name, f.dataType) for f in metrics_table.schema] == [(f.name, f.dataType) for f in metrics.METRICS]
    # The written table and the returned rows, each against what the planted data gives.
    for rows in ([r.asDict() for r in metrics_table.collect()], result.test_metrics):
        assert [r["model"] for r in rows] == ["tuned", "popularity"]
        assert all((r["users"], r["k"], r["split"], r["test_fraction"]) == (24, 2, "random", 0.25) for r in rows)
        # On test, a user's only unseen in-group items are its 2 test items (6 of 8 are in train and
        # excluded), so a model that separates the groups scores 1 (as in test_evaluate_job.py).
        by_model = {r["model"]: r for r in rows}
        assert by_model["tuned"]["ndcg"] == pytest.approx(1.0)
        assert by_model["popularity"]["ndcg"] < 0.5
    summary = result.summary
    assert summary["best"]["trial"] == result.best.number and summary["trials"] == 2
    assert summary["validation_split"] == {"fraction_of_train": 0.25, "seed": 43}


def test_run_tune_search_never_sees_the_test_split(spark, tuned):
    _, _, seen, ratings = tuned
    train, test = splits.split_per_user_random(ratings, test_fraction=0.25, seed=42)
    train_pairs = {(r[0], r[1]) for r in train.collect()}
    test_pairs = {(r[0], r[1]) for r in test.collect()}
    assert len(test_pairs) == 24 * 2 and len(train_pairs) == 24 * 6
    # Every ALS fit of the search saw only train pairs; its scoring only train pairs (the validation ones).
    assert (len(seen["search_fit"]), len(seen["search_scored"])) == (24 * 4, 24 * 2)  # 4 fit + 2 validation per user
    assert not seen["search_fit"] & test_pairs
    assert not seen["search_scored"] & test_pairs
    # Fit and validation partition the train side.
    assert seen["search_fit"] | seen["search_scored"] == train_pairs
    # The final evaluation did score on the test split (so the recording works).
    assert seen["test_scored"] == test_pairs


def test_run_tune_tests_the_best_then_the_compared_configs_then_the_baselines(spark, tmp_path, monkeypatch):
    # The search and the evaluation are stubbed: this checks what run_tune asks for and writes.
    best_cfg = tune_spec.trial_config(BASE, {"als.rank": 8})
    trial = trials.Trial(
        1,
        {"als.rank": 8},
        best_cfg,
        trials.STATUS_OK,
        0.4,
        None,
        {**{m: 0.4 for m in metrics.METRIC_NAMES}, "users": 24},
        5,
        1.0,
    )
    monkeypatch.setattr(tune, "search", lambda *a, **kw: [trial])
    calls = []

    def run_evaluate(spark_, interactions, cfg, *, k, test_fraction, split, seed, baselines):
        calls.append((cfg.als.rank, k, test_fraction, split, seed, tuple(baselines)))
        row = {
            "k": k,
            **{m: cfg.als.rank / 100 for m in metrics.METRIC_NAMES},
            "users": 24,
            "split": split,
            "test_fraction": test_fraction,
        }
        return None, [{"model": name, **row} for name in (evaluate.ALS_MODEL, *baselines)]

    monkeypatch.setattr(tune, "run_evaluate", run_evaluate)
    seed_cfg = build_config({"als": {"rank": 50}})
    spec = tune_spec.parse_spec({"space": {"als.rank": [8]}})
    ratings = spark.createDataFrame(_ratings(), RATINGS)
    result = tune.run_tune(
        spark, ratings, BASE, str(tmp_path), spec=spec, k=3, seed=7, compare={"seed-notebook": seed_cfg}
    )
    # The best once with the baselines, each compared configuration once without them; same split.
    assert calls == [(8, 3, 0.25, "random", 7, ("popularity", "random")), (50, 3, 0.25, "random", 7, ())]
    # The stub's rows (every metric = rank / 100), the best renamed "tuned", then the compared, then the baselines.
    expected = [
        {
            "model": model_name,
            "k": 3,
            **{m: value for m in metrics.METRIC_NAMES},
            "users": 24,
            "split": "random",
            "test_fraction": 0.25,
        }
        for model_name, value in [("tuned", 0.08), ("seed-notebook", 0.5), ("popularity", 0.08), ("random", 0.08)]
    ]
    assert result.test_metrics == expected
    assert [r.asDict() for r in spark.read.parquet(str(tmp_path / "test_metrics")).collect()] == expected
    assert json.loads((tmp_path / "tune.json").read_text())["test_split"] == {
        "method": "random",
        "test_fraction": 0.25,
        "seed": 7,
    }
    assert load_config(tmp_path / "best.yaml") == best_cfg


def test_run_tune_rejects_a_validation_seed_equal_to_the_test_seed(spark):
    spec = tune_spec.parse_spec({"space": {"als.rank": [2]}})
    ratings = spark.createDataFrame(_ratings(), RATINGS)
    with pytest.raises(ConfigError, match="validation_seed must differ"):
        tune.run_tune(spark, ratings, BASE, "unused", spec=spec, seed=5, validation_seed=5)
    with pytest.raises(ConfigError, match="compare 'x': ingest.min_rating"):
        tune.run_tune(
            spark, ratings, BASE, "unused", spec=spec, compare={"x": build_config({"ingest": {"min_rating": 3}})}
        )
