"""``als-spark tune``: hyper-parameter search on a validation split of train, the best tested once."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from als_spark.cli import options
from als_spark.cli.command import Command
from als_spark.config import Config, load_config
from als_spark.errors import ConfigError


def _arguments(p: argparse.ArgumentParser) -> None:
    options.add_input(p)
    options.add_common(p)
    p.add_argument("--spec", required=True, metavar="FILE", help="search spec YAML (see conf/tune.yaml)")
    p.add_argument("--k", type=int, default=10, help="list length scored (default 10)")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.25,
        help="share of each user's interactions held out as test, and of the rest as validation (default 0.25)",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=42,
        help="seed of the test split; the validation split uses seed + 1 (default 42)",
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also score this configuration on the test split, e.g. seed-notebook=conf/seed-notebook.yaml (repeatable)",
    )
    p.add_argument(
        "--no-test", action="store_true", help="search only: do not score the best configuration on the test split"
    )


def compare_configs(texts: Sequence[str]) -> dict[str, Config]:
    """``--compare NAME=FILE`` options as ``{name: Config}``."""
    compare = {}
    for text in texts:
        name, sep, path = text.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--compare expects NAME=FILE, got {text!r}")
        compare[name.strip()] = load_config(path.strip())
    return compare


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from als_spark.analysis import jobs
    from als_spark.analysis.metrics import metrics_markdown
    from als_spark.analysis.tune_spec import load_spec

    cfg = options.config(args)
    # the spec and the compared configurations are read before Spark starts
    spec, compare = load_spec(args.spec), compare_configs(args.compare)
    result = jobs.stage_tune(
        options.spark(args),
        options.source(args),
        cfg,
        args.output,
        spec=spec,
        k=args.k,
        test_fraction=args.test_fraction,
        seed=args.split_seed,
        compare=compare,
        evaluate_test=not args.no_test,
    )
    best = result["best"]
    print(
        f"\nbest: trial {best['trial']}, validation {result['metric']}@{args.k} = {best['objective']:.4f}; "
        f"{args.output}/best.yaml is usable with --config"
    )
    if result["test_metrics"]:
        print("\n" + metrics_markdown(result["test_metrics"]))
    return result


COMMANDS = (
    Command(
        "tune",
        "search ALS hyper-parameters on a validation split of train; test the best once",
        _arguments,
        _run,
        description="grid or random search (a --spec YAML, e.g. conf/tune.yaml) over als.rank, als.reg_param, "
        "als.alpha, als.max_iter, ingest.confidence and recommend.popularity_weight, scored by a ranking metric @k on "
        "a per-user validation split cut from the train side of the test split; the best configuration alone is "
        "then scored on the test split. Writes DIR/leaderboard, DIR/best.yaml (for --config), DIR/tune.png, "
        "DIR/test_metrics and DIR/tune.json",
    ),
)
