"""``als-spark show``: one user's recommendations and neighbours, or one item's neighbours.

A local (or ``/dbfs``, ``/Volumes``) output is read with pyarrow (:mod:`als_spark.lookup`): no
Spark, no JVM, an answer in well under a second. A remote URI (``s3://``, ``abfss://``,
``dbfs:/`` ...) or Spark Connect (``--remote``, ``SPARK_REMOTE``) is read through Spark
(:func:`als_spark.pipeline.show`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from als_spark.cli import options
from als_spark.cli.command import Command


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, metavar="DIR", help="directory written by `als-spark run`")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="USER_ID", help="a user id of the input (an integer or a string id)")
    who.add_argument("--item", metavar="ITEM_ID", help="an item id of the input (an integer or a string id)")
    options.add_remote(p)
    options.add_log_level(p, "WARNING")


def _answers(args: argparse.Namespace) -> list[tuple[str, Any]]:
    from als_spark import lookup  # pandas and pyarrow, not Spark: imported only here, not for --help

    remote = args.remote or os.environ.get("SPARK_REMOTE")  # Connect reads the server's files, not ours
    if not remote and lookup.local_path(args.output) is not None:
        return lookup.show(args.output, user=args.user, item=args.item)
    from als_spark import pipeline

    return pipeline.show(options.spark(args, sized=False, writes=False), args.output, user=args.user, item=args.item)


def _run(args: argparse.Namespace) -> None:
    for title, table in _answers(args):
        print(f"\n{title}")
        if len(table.columns):  # none: the table was skipped, and the title says why
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
