"""``als-spark converge``: one configuration at several iteration counts; when do more stop mattering?"""

from __future__ import annotations

import argparse
from typing import Any

from als_spark.cli import options
from als_spark.cli.command import Command
from als_spark.errors import ConfigError


def _arguments(p: argparse.ArgumentParser) -> None:
    options.add_input(p)
    options.add_common(p)
    p.add_argument("--iterations", required=True, metavar="N,N,...", help="iteration counts, e.g. 15,50,100,200,400")
    p.add_argument("--k", type=int, default=5, help="neighbours per user and item compared (default 5)")
    p.add_argument("--top-n", type=int, default=10, help="recommendations per user compared and scored (default 10)")
    p.add_argument("--no-seed-reference", action="store_true", help="skip the second seed at the largest count")
    p.add_argument(
        "--fit-cache",
        metavar="DIR",
        help="keep each finished fit's lists, time and metrics in DIR (a local folder) and reuse them when a rerun "
        "has the same training rows, ALS settings, count, seed and list parameters: a long run can be stopped and "
        "continued",
    )
    options.add_holdout(p)
    options.add_focus(p)
    options.add_progress(p)


def iterations(text: str) -> list[int]:
    """``--iterations 15,50,100`` as sorted distinct counts (at least two, all positive)."""
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--iterations must be comma-separated integers, e.g. 15,50,100; got {text!r}") from None
    if len(set(counts)) < 2 or min(counts) < 1:
        raise ConfigError(f"--iterations needs at least two distinct positive counts, e.g. 15,50,100; got {text!r}")
    return sorted(set(counts))


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from als_spark.analysis import jobs

    cfg = options.config(args)
    counts, focus = iterations(args.iterations), options.focus(args)
    result = jobs.stage_converge(
        options.spark(args),
        options.source(args),
        cfg,
        args.output,
        iterations=counts,
        k=args.k,
        top_n=args.top_n,
        focus=focus,
        holdout=args.holdout,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        seed_reference=not args.no_seed_reference,
        progress_interval=args.progress_interval,
        fit_cache=args.fit_cache,
    )
    print("\n" + result["report"].rstrip())
    return result


COMMANDS = (
    Command(
        "converge",
        "fit one configuration at several iteration counts; how much do the lists and metric still move?",
        _arguments,
        _run,
        description="fit the configuration at each of --iterations (same seed) plus once more with the next seed at "
        "the largest count; report how the similar-user, similar-item and recommendation lists and the holdout NDCG "
        "change from one count to the next, against the largest count, and against the seed noise. Writes "
        "DIR/converge_steps, DIR/converge_fits, DIR/converge.md, DIR/converge.json and DIR/converge.png",
    ),
)
