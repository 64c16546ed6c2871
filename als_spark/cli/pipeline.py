"""``run`` and the stage commands ``ingest``, ``train``, ``recommend`` and ``similar``."""

from __future__ import annotations

import argparse
from typing import Any

from als_spark.cli import options
from als_spark.cli.command import Command
from als_spark.errors import ConfigError


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


def _recommend_arguments(p: argparse.ArgumentParser) -> None:
    options.add_common(p)
    p.add_argument(
        "--model",
        metavar="DIR",
        help="fold the users of --input/--table into the model published in DIR (an `als-spark run` output) "
        "and write their recommendations to --output, without refitting",
    )
    options.add_input(p, required=False)


def _recommend(args: argparse.Namespace) -> dict[str, Any]:
    given = args.input or args.table or args.dataset
    if args.model is None:
        if given:
            raise ConfigError("--input, --table and --dataset need --model DIR: the model to fold their users into")
        return _stage("recommend")(args)
    if not given:
        raise ConfigError("recommend --model DIR needs the users' events: --input PATH, --table NAME or --dataset")
    from als_spark import publish, serving

    model = publish.snapshot(args.model)  # one run's tables, even if the model is republished meanwhile
    fitted = serving.model_config(model)
    cfg = options.config(args, base=fitted)
    serving.check_fit_settings(cfg, fitted)
    return serving.fold_in_run(options.spark(args), model, options.source(args), cfg, args.output)


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
        "write DIR/recommendations from the factors; with --model, for new users' events (fold-in)",
        _recommend_arguments,
        _recommend,
        description="write the recommendations of DIR's users from its factors, excluding seen items; or, with "
        "--model MODEL --input EVENTS, fold the users of EVENTS into MODEL and write theirs to --output",
    ),
    Command(
        "similar",
        "write DIR/similar_items and DIR/similar_users from the factors",
        options.add_common,
        _stage("similar"),
    ),
)
