"""``als-spark show``: one user's recommendations and neighbours, or one item's neighbours."""

from __future__ import annotations

import argparse

from als_spark.cli import options
from als_spark.cli.command import Command


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, metavar="DIR", help="directory written by `als-spark run`")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="USER_ID", help="a user id of the input (an integer or a string id)")
    who.add_argument("--item", metavar="ITEM_ID", help="an item id of the input (an integer or a string id)")
    options.add_remote(p)
    options.add_log_level(p, "WARNING")


def _run(args: argparse.Namespace) -> None:
    from als_spark import pipeline

    for title, table in pipeline.show(options.spark(args, sized=False), args.output, user=args.user, item=args.item):
        print(f"\n{title}")
        print(table.to_string(index=False) if len(table) else "  (none)")


COMMANDS = (
    Command(
        "show",
        "print one user's recommendations and neighbours, or one item's neighbours",
        _arguments,
        _run,
        description="print one user's recommendations and similar users, or one item's similar items, from DIR",
    ),
)
