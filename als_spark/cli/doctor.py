"""``als-spark doctor``: what the pipeline runs on, and what is wrong with it."""

from __future__ import annotations

import argparse

from als_spark.cli import options
from als_spark.cli.command import Command
from als_spark.errors import AlsSparkError

TEXT = "check Java, Spark, Python, pandas/pyarrow and the BLAS Spark loads"


class DoctorFailed(AlsSparkError):
    """``doctor`` found a problem (exit code 5)."""

    exit_code = 5


def _arguments(p: argparse.ArgumentParser) -> None:
    options.add_remote(p)
    options.add_log_level(p, "WARNING")


def _run(args: argparse.Namespace) -> None:
    from als_spark import runinfo

    problems = runinfo.doctor(remote=args.remote)
    if problems:
        raise DoctorFailed("doctor found problems:\n  - " + "\n  - ".join(problems))


COMMANDS = (Command("doctor", TEXT, _arguments, _run),)
