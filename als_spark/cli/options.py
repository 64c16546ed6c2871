"""Arguments several commands share, and what a command needs before it starts Spark.

Everything here runs before a JVM exists: a bad option or configuration key
fails in milliseconds with exit code 2, not after Spark has started.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from als_spark.config import INPUT_FORMATS, Config, build_config, load_config, read_yaml
from als_spark.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from als_spark.pipeline import Source

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_common(p: argparse.ArgumentParser) -> None:
    """``--output``, ``--config``, ``--set``, ``--remote`` and ``--log-level``."""
    p.add_argument("--output", required=True, metavar="DIR", help="directory of the pipeline's tables")
    p.add_argument(
        "--config", metavar="FILE", help="YAML configuration (default: built-in defaults = conf/default.yaml)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one configuration key, e.g. --set als.rank=20 (repeatable)",
    )
    add_remote(p)
    add_log_level(p)


def add_remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remote", metavar="URL", help="Spark Connect URL, e.g. sc://localhost:15002 (or set SPARK_REMOTE)")


def add_log_level(p: argparse.ArgumentParser, default: str = "INFO") -> None:
    p.add_argument("--log-level", default=default, choices=LOG_LEVELS)


def add_input(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Where the ratings come from: ``--input``, ``--table`` or ``--dataset``, with ``--items`` and ``--format``."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument(
        "--input",
        metavar="PATH",
        help="interactions: a MovieLens file (u.data, ratings.dat, ratings.csv), or a Parquet, ORC, JSON or "
        "delimited file, folder or glob",
    )
    src.add_argument("--table", metavar="NAME", help="interactions in a catalog table or view (spark.table)")
    src.add_argument(
        "--dataset",
        choices=["synthetic", "ml-100k"],
        help="built-in data: 'synthetic' (generated, offline) or 'ml-100k' (downloaded once, cached)",
    )
    items = p.add_mutually_exclusive_group()
    items.add_argument(
        "--items",
        metavar="PATH",
        help="item titles: a file or folder (default: u.item/movies.dat/movies.csv beside a MovieLens --input)",
    )
    items.add_argument("--items-table", metavar="NAME", help="item titles in a catalog table (items.columns)")
    p.add_argument(
        "--format",
        choices=INPUT_FORMATS,
        help="force the input format (default: detect; same as --set ingest.format=...)",
    )
    p.add_argument(
        "--synthetic-seed", type=int, default=42, metavar="N", help="seed of --dataset synthetic (default 42)"
    )
    p.add_argument(
        "--synthetic-ratings",
        type=int,
        default=100_000,
        metavar="N",
        help="size of --dataset synthetic, e.g. 1000000 or 20000000 (MovieLens-shaped; default 100000)",
    )


def add_holdout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-holdout",
        dest="holdout",
        action="store_false",
        help="no holdout: compare scores no configuration; converge fits on all interactions and scores nothing",
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.25, help="share of each user's interactions held out (default 0.25)"
    )
    p.add_argument("--split-seed", type=int, default=42, help="seed of the per-user random holdout split (default 42)")


def add_focus(p: argparse.ArgumentParser) -> None:
    for kind in ("user", "item"):
        p.add_argument(
            f"--{kind}-id",
            type=int,
            action="append",
            default=[],
            metavar="ID",
            help=f"print this {kind}'s lists under every fit: the {kind} id of the input file (repeatable)",
        )
        p.add_argument(
            f"--{kind}-index",
            type=int,
            action="append",
            default=[],
            metavar="I",
            help=f"the same by zero-based index among the {kind}s with a rating >= ingest.min_rating, "
            "in --index-order (repeatable)",
        )
    p.add_argument(
        "--index-order",
        choices=("input", "sorted"),
        default="input",
        help="what --user-index and --item-index count: 'input' (default), the order ids first appear in the "
        "input's rows with a rating >= ingest.min_rating, as the reference notebook's pd.factorize (user index "
        "10 of ML-100k is user 38); 'sorted', the ids in ascending order, as category codes or np.unique",
    )


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="log each fit's progress and remaining time this often (default 30; 0: never)",
    )


def focus(args: argparse.Namespace) -> list[Any]:
    """The ``--user-id/--user-index/--item-id/--item-index`` options as :class:`~als_spark.analysis.focus.Focus`."""
    from als_spark.analysis.focus import Focus

    return [
        Focus(kind, **{key: value}, order=args.index_order)
        for kind in ("user", "item")
        for key in ("id", "index")
        for value in getattr(args, f"{kind}_{key}")
    ]


def overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` options, plus ``--format`` as ``ingest.format=...`` and ``--items-table`` as ``items.format=table``."""
    extra = [f"ingest.format={args.format}"] if getattr(args, "format", None) else []
    if getattr(args, "items_table", None):
        extra.append("items.format=table")
    return [*args.overrides, *extra]


def config(args: argparse.Namespace, base: Mapping[str, Any] | None = None) -> Config:
    """The configuration: ``--config`` over ``base`` (else the defaults), then ``--set`` and ``--format``."""
    if base is None:
        return load_config(args.config, overrides(args))
    tree = {section: dict(entries or {}) for section, entries in base.items()}
    if args.config:
        given = read_yaml(args.config)
        if given is not None and not isinstance(given, Mapping):
            raise ConfigError(f"configuration file {args.config}: expected a mapping of sections at the top level")
        for section, entries in (given or {}).items():
            tree[section] = {**tree.get(section, {}), **(entries or {})}
    return build_config(tree, overrides(args))


def source(args: argparse.Namespace) -> Source:
    """Where the ratings come from (``--input``, ``--table``, ``--dataset``, ``--items``, ``--synthetic-*``)."""
    from als_spark.pipeline import Source

    return Source(
        path=args.input,
        table=args.table,
        dataset=args.dataset,
        items=args.items or args.items_table,
        synthetic_seed=args.synthetic_seed,
        synthetic_ratings=args.synthetic_ratings,
    )


def spark(args: argparse.Namespace, *, sized: bool = True, writes: bool = True) -> SparkSession:
    """The session for a command (``--remote``); ``sized`` passes the input size (:func:`input_bytes`).

    A command that ``writes`` its ``--output`` first checks that no live run is writing it (exit 3
    in a second, not after a JVM has started).
    """
    from als_spark import lock, session

    if writes and getattr(args, "output", None) and not getattr(args, "remote", None):
        lock.check_output_free(args.output)

    return session.get_spark(remote=getattr(args, "remote", None), input_bytes=input_bytes(args) if sized else None)


#: Bytes per rating line of MovieLens-shaped text (u.data averages 19.8), to size generated data.
BYTES_PER_RATING = 20


def input_bytes(args: argparse.Namespace) -> int | None:
    """The size of the command's ratings input when it is known before Spark starts, else ``None``.

    A local file or directory (its files): the bytes on disk; ``--dataset ml-100k``: u.data's
    size; ``--dataset synthetic``: the ratings it will generate at 20 bytes each. Remote paths
    (``s3://``, ``dbfs:/`` ...) and commands without an input are ``None``.
    """
    dataset = getattr(args, "dataset", None)
    if dataset == "ml-100k":
        from als_spark.datasets import ML_100K_U_DATA_BYTES

        return ML_100K_U_DATA_BYTES
    if dataset == "synthetic":
        return int(args.synthetic_ratings) * BYTES_PER_RATING
    path = getattr(args, "input", None)
    from als_spark.publish import local_path

    local = local_path(path) if path else None
    if local is None:
        return None
    try:
        if os.path.isdir(local):
            return sum(entry.stat().st_size for entry in os.scandir(local) if entry.is_file())
        return os.path.getsize(local)
    except OSError:
        return None  # missing: ingest reports it with its own message
