"""``run`` and the stage commands ``ingest``, ``train``, ``recommend`` and ``similar``."""

from __future__ import annotations

import argparse
from typing import Any

from als_spark.cli import options
from als_spark.cli.command import Command


def _with_input(p: argparse.ArgumentParser) -> None:
    options.add_input(p)
    options.add_common(p)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from als_spark import pipeline

    cfg = options.config(args)
    return pipeline.run_all(options.spark(args), options.source(args), cfg, args.output)


def _ingest(args: argparse.Namespace) -> dict[str, Any]:
    from als_spark import pipeline

    cfg = options.config(args)
    return pipeline.stage_ingest(options.spark(args), options.source(args), cfg, args.output)


def _stage(name: str) -> Any:
    def handler(args: argparse.Namespace) -> dict[str, Any]:
        from als_spark import pipeline

        cfg = options.config(args)
        return getattr(pipeline, f"stage_{name}")(options.spark(args), cfg, args.output)

    return handler


COMMANDS = (
    Command("run", "the whole pipeline: ingest, train, recommend, similar", _with_input, _run),
    Command(
        "ingest", "read and validate ratings; write ratings, interactions, dataset_summary, items", _with_input, _ingest
    ),
    Command(
        "train",
        "fit ALS on DIR/interactions; write model, user_factors, item_factors",
        options.add_common,
        _stage("train"),
    ),
    Command(
        "recommend",
        "write DIR/recommendations from the factors, excluding seen items",
        options.add_common,
        _stage("recommend"),
    ),
    Command(
        "similar",
        "write DIR/similar_items and DIR/similar_users from the factors",
        options.add_common,
        _stage("similar"),
    ),
)
