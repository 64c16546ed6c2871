"""``als-spark synthesize``: write the synthetic dataset as MovieLens files (no Spark)."""

from __future__ import annotations

import argparse

from als_spark.cli import options
from als_spark.cli.command import Command

TEXT = "write the synthetic dataset as u.data and u.item"


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument("--ratings", type=int, default=100_000, metavar="N", help="number of ratings (default 100000)")
    p.add_argument("--seed", type=int, default=42)
    options.add_log_level(p)


def _run(args: argparse.Namespace) -> None:
    from als_spark import synthetic

    path = synthetic.write_movielens(synthetic.generate_for_size(args.ratings, seed=args.seed), args.output)
    print(f"wrote {path}/u.data and {path}/u.item")


COMMANDS = (Command("synthesize", TEXT, _arguments, _run),)
