"""``als-spark compare``: do two configurations give different lists, beyond what the seed alone changes?"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from als_spark.cli import options
from als_spark.cli.command import Command
from als_spark.config import load_config
from als_spark.errors import ConfigError


def _arguments(p: argparse.ArgumentParser) -> None:
    options.add_input(p)
    options.add_common(p)
    for side in ("a", "b"):
        X = side.upper()
        p.add_argument(f"--config-{side}", metavar="FILE", help=f"YAML configuration of {X} (default: --config)")
        p.add_argument(
            f"--set-{side}",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"override one key of {X} only, after --config-{side} and --set (repeatable)",
        )
        p.add_argument(
            f"--name-{side}",
            metavar="NAME",
            help=f"name of {X} in the report (default: the stem of --config-{side}, else {X})",
        )
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        metavar="N",
        help="fits per configuration, seeds als.seed, als.seed + 1, ... (default 3; >= 2)",
    )
    p.add_argument("--k", type=int, default=5, help="neighbours per user and item compared (default 5)")
    p.add_argument("--top-n", type=int, default=10, help="recommendations per user compared (default 10)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict (default 0.05)")
    options.add_holdout(p)
    options.add_focus(p)
    options.add_progress(p)


def names(args: argparse.Namespace) -> tuple[str, str]:
    """The report's names of A and B: ``--name-a/-b``, else the stems of ``--config-a/-b``, else A and B."""

    def name(side: str) -> str:
        config = getattr(args, f"config_{side}")
        return getattr(args, f"name_{side}") or (Path(config).stem if config else side.upper())

    a, b = name("a"), name("b")
    return (f"{a} (A)", f"{b} (B)") if a == b else (a, b)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from als_spark.analysis import jobs
    from als_spark.analysis.fits import check_comparable, seed_lists

    # both configurations, the seeds and the focus ids are checked before Spark starts
    common = options.overrides(args)
    cfg_b = load_config(args.config_b or args.config, common + args.set_b)
    cfg_a = load_config(args.config_a or args.config, common + args.set_a)
    check_comparable(cfg_a, cfg_b)
    seed_lists(cfg_a, cfg_b, args.seeds)
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be strictly between 0 and 1, got {args.alpha}")
    focus = options.focus(args)
    result = jobs.stage_compare(
        options.spark(args),
        options.source(args),
        cfg_a,
        cfg_b,
        args.output,
        names=names(args),
        seeds=args.seeds,
        k=args.k,
        top_n=args.top_n,
        focus=focus,
        holdout=args.holdout,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        alpha=args.alpha,
        progress_interval=args.progress_interval,
    )
    print("\n" + result["report"].split("\n## Agreement of every pair")[0].rstrip())
    print(f"\n(every pair of fits: {args.output}/compare.md)")
    return result


COMMANDS = (
    Command(
        "compare",
        "do two configurations give different lists, beyond what the seed alone changes?",
        _arguments,
        _run,
        description="fit configurations A and B with several seeds each; compare every pair of fits' similar-user, "
        "similar-item and recommendation lists (Jaccard@k, rank-biased overlap) within A, within B and between; test "
        "per table whether A and B differ beyond seed noise. Also scores each configuration on a holdout and times it "
        "per iteration. Writes DIR/agreement (per user and item), DIR/agreement_pairs, DIR/compare.md, "
        "DIR/compare.json and DIR/compare.png",
    ),
)
