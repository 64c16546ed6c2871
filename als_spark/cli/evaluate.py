"""``als-spark evaluate``: hold-out evaluation against the popularity and random baselines."""

from __future__ import annotations

import argparse
from typing import Any

from als_spark.cli import options
from als_spark.cli.command import Command


def _arguments(p: argparse.ArgumentParser) -> None:
    options.add_input(p)
    options.add_common(p)
    p.add_argument("--k", type=int, default=10, help="list length scored (default 10)")
    p.add_argument(
        "--test-fraction", type=float, default=0.25, help="share of each user's interactions held out (default 0.25)"
    )
    p.add_argument(
        "--split",
        choices=["random", "chronological"],
        default="random",
        help="random per-user holdout (default) or each user's latest interactions",
    )
    p.add_argument("--split-seed", type=int, default=42, help="seed of the random split (default 42)")
    p.add_argument(
        "--exclude",
        choices=["train", "rated"],
        default="train",
        help="items left out of every scored list: the user's train interactions (default, the standard "
        "protocol) or every item the user rated at any value outside the test set, as recommend.exclude: "
        "rated serves them (chronological split: only ratings before the user's first test item)",
    )


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from als_spark.analysis import jobs
    from als_spark.analysis.metrics import metrics_markdown

    cfg = options.config(args)
    result = jobs.stage_evaluate(
        options.spark(args),
        options.source(args),
        cfg,
        args.output,
        k=args.k,
        test_fraction=args.test_fraction,
        split=args.split,
        seed=args.split_seed,
        exclude=args.exclude,
    )
    print("\n" + metrics_markdown(result["metrics"]))
    return result


COMMANDS = (
    Command(
        "evaluate",
        "hold-out evaluation of the configuration against popularity and random baselines",
        _arguments,
        _run,
        description="split each user's interactions into train and test, fit on train, and score precision, recall, "
        "NDCG, MAP and hit rate @k plus catalogue coverage; writes DIR/metrics and DIR/metrics.md",
    ),
)
