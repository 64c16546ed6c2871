"""Command line: ``als-spark``, ``python -m als_spark`` and ``spark-submit jobs/*.py``.

One module per command group (:mod:`.pipeline` for ``run`` and the stage
commands, then ``evaluate``, ``tune``, ``compare``, ``converge``, ``show``,
``doctor``, ``synthesize``), each declaring its :class:`Command` entries: the
parser is built from that table, and :func:`main` runs the handler the parsed
arguments name. Handlers parse and check everything they can before Spark
starts, get the session, and call the library. Errors meant for the user are
printed as one paragraph with a documented exit code (see :mod:`als_spark.errors`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from als_spark import __version__, tracking
from als_spark.cli import compare, converge, doctor, evaluate, options, pipeline, show, synthesize, tune
from als_spark.cli.command import Command
from als_spark.errors import AlsSparkError, ConfigError, spark_resource_failure

__all__ = ["COMMANDS", "Command", "build_parser", "entry_point", "main"]

_DESCRIPTION = "Implicit-feedback ALS recommendations and similarity tables on Spark."

#: Every command, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (
    *pipeline.COMMANDS,
    *evaluate.COMMANDS,
    *tune.COMMANDS,
    *compare.COMMANDS,
    *converge.COMMANDS,
    *doctor.COMMANDS,
    *show.COMMANDS,
    *synthesize.COMMANDS,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # argparse exits 2 too; keep one message style
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The ``als-spark`` parser with one sub-command per entry of :data:`COMMANDS`."""
    parser = _Parser(prog="als-spark", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"als-spark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description or command.help)
        command.add_arguments(p)
        if command.name in tracking.COMMANDS:
            p.add_argument(
                "--mlflow",
                action="store_true",
                help="log this run to MLflow (also on with tracking.mlflow: true or MLFLOW_TRACKING_URI)",
            )
        p.set_defaults(handler=command.run)
    return parser


def _print_summary(result: dict[str, Any]) -> None:
    counts = result.get("counts", {})
    print(f"\nals-spark {result['command']} finished (run {result['run_id']})")
    if "interactions" in counts:
        print(
            f"  interactions: {counts['interactions']:,} from {counts.get('users', '?'):,} users and "
            f"{counts.get('items', '?'):,} items ({counts.get('rows_rejected', 0):,} rows rejected)"
        )
    for name, path in result.get("outputs", {}).items():
        print(f"  {name:<16} {path}")
    timings = result.get("timings_seconds", {})
    if timings:
        print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
        tracked = args.command in tracking.COMMANDS and tracking.wanted(options.config(args), args.mlflow)
    except AlsSparkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its connection chatter is not the user's business
    try:
        result = args.handler(args)
    except AlsSparkError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        resource = spark_resource_failure(exc)
        if resource is None:
            raise  # a bug: exit 1 with the stack trace
        logging.getLogger(__name__).debug("Spark's failure", exc_info=exc)
        print(f"\nerror: {resource}", file=sys.stderr)
        return resource.exit_code
    if result is not None:
        _print_summary(result)
        if tracked:
            _track(result, args.output)
    return 0


def _track(result: dict[str, Any], output: str) -> None:
    """Log the finished command to MLflow; a failure there is a warning (the tables are published)."""
    experiment = result["config"]["tracking"]["experiment"]
    try:
        run_id = tracking.log_command(result, output, experiment=experiment)
    except Exception as exc:  # the tracking server's errors are not ours to type
        logging.getLogger(__name__).debug("MLflow's failure", exc_info=exc)
        print(
            f"\nwarning: the tables are published, but this run could not be logged to MLflow "
            f"(experiment {experiment}): {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return
    print(f"  mlflow run      {run_id} (experiment {experiment})")


def entry_point() -> None:
    """Console-script entry point (``als-spark``)."""
    try:
        sys.exit(main())
    except BrokenPipeError:  # `als-spark show ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
