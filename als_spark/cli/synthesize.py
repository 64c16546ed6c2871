"""``als-spark synthesize``: write the synthetic dataset as MovieLens files or interaction tables (no Spark)."""

from __future__ import annotations

import argparse

from als_spark.cli import options
from als_spark.cli.command import Command
from als_spark.errors import ConfigError

TEXT = "write the synthetic dataset as u.data and u.item, or as Parquet or CSV interaction tables"
DESCRIPTION = (
    "Write the synthetic dataset (planted taste groups, MovieLens-shaped). By default as MovieLens 100k files "
    "DIR/u.data and DIR/u.item. With --format parquet or csv: the table DIR/interactions (a Parquet folder, or "
    "interactions.csv) and the maps from its ids back to the generator's, DIR/users and DIR/items; --ids picks "
    "the id type and --events writes view/cart/purchase events instead of ratings."
)

#: The choices of ``--ids`` and ``--format`` (tests check them against als_spark.synthetic, which this module
#: imports only when the command runs, so that building the parser does not import numpy and pandas).
ID_CHOICES = ("int", "long", "string")
FORMAT_CHOICES = ("movielens", "parquet", "csv")


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument("--ratings", type=int, default=100_000, metavar="N", help="number of ratings (default 100000)")
    p.add_argument("--seed", type=int, default=42, help="seed of the data, the ids and the events (default 42)")
    p.add_argument(
        "--ids",
        choices=ID_CHOICES,
        default="int",
        help="user and item ids: the generator's ints (default), 63-bit longs above 2**32, "
        "or UUID users and SKU-XXXXXXXX items",
    )
    p.add_argument(
        "--events",
        action="store_true",
        help="an event log instead of ratings: each rating becomes 1 to 5 view/cart/purchase rows "
        "(rule: als_spark.synthetic.events)",
    )
    p.add_argument(
        "--format",
        choices=FORMAT_CHOICES,
        default="movielens",
        help="movielens: u.data and u.item (default; int ids and ratings only); parquet: Parquet folders; "
        "csv: CSV files with a header",
    )
    options.add_log_level(p)


def _run(args: argparse.Namespace) -> None:
    if args.format == "movielens" and (args.ids != "int" or args.events):
        given = " and ".join(
            ([f"--ids {args.ids}"] if args.ids != "int" else []) + (["--events"] if args.events else [])
        )
        raise ConfigError(
            f"--format movielens writes u.data and u.item, which hold int ids and ratings only, so it cannot "
            f"write {given}. Pass --format parquet or --format csv."
        )
    from als_spark import synthetic

    data = synthetic.generate_for_size(args.ratings, seed=args.seed)
    if args.format == "movielens":
        path = synthetic.write_movielens(data, args.output)
        print(f"wrote {path}/u.data and {path}/u.item")
        return
    result = synthetic.interactions(data, ids=args.ids, events=args.events, seed=args.seed)
    paths = synthetic.write_tables(result, args.output, fmt=args.format)
    kind = "events" if args.events else "ratings"
    print(f"wrote {len(result.frame):,} {kind} with {args.ids} ids to {paths['interactions']}")
    print(f"  id maps: {paths['users']} and {paths['items']}")


COMMANDS = (Command("synthesize", TEXT, _arguments, _run, DESCRIPTION),)
