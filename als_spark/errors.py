"""Errors a user can act on.

Every error the pipeline raises on purpose is an :class:`AlsSparkError`. The
command-line entry point prints its message (no stack trace) and exits with its
``exit_code``; library callers can catch the class they care about.

Exit codes (documented in the README):

==== ==========================================================
0    success
1    unexpected internal error (a bug: the stack trace is shown)
2    bad command line or configuration (:class:`ConfigError`)
3    bad or missing input data (:class:`InputDataError`)
4    a built-in dataset could not be fetched (:class:`DatasetError`)
5    no usable Java (:class:`JavaNotFoundError`), or ``als-spark doctor`` found a problem
6    Spark ran out of memory or kept losing executors (:class:`SparkResourceError`)
==== ==========================================================
"""

from __future__ import annotations

import contextlib
import re


class AlsSparkError(Exception):
    """Base class for errors whose message is meant for the user."""

    exit_code: int = 1


class ConfigError(AlsSparkError):
    """A configuration key or command-line value is unknown or invalid."""

    exit_code = 2


class InputDataError(AlsSparkError):
    """The input ratings (or item file) are missing, empty or unreadable."""

    exit_code = 3


class DatasetError(AlsSparkError):
    """A built-in dataset could not be downloaded, verified or cached."""

    exit_code = 4


class JavaNotFoundError(AlsSparkError):
    """No Java that can run the installed Spark, where this process has to start the JVM."""

    exit_code = 5


class SparkResourceError(AlsSparkError):
    """A Spark job failed for want of memory (heap, or executors killed for it), not for the input.

    Made by :func:`spark_resource_failure` from the exception Spark raised; ``stage`` is the
    pipeline stage that was running (:meth:`als_spark.runinfo.Timer.stage` records it).
    """

    exit_code = 6


#: What a Spark failure for want of memory says, in the driver's exception text (first match wins):
#: the label for the message and where the memory ran out.
_RESOURCE_SIGNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Lost task .*?\(TID \d+\).*?executor[^:]*: java\.lang\.OutOfMemoryError[^\n]*"), "executor"),
    (re.compile(r"SparkOutOfMemoryError[^\n]*"), "executor"),
    (re.compile(r"ExecutorLostFailure[^\n]*"), "executor"),
    (re.compile(r"java\.lang\.OutOfMemoryError[^\n]*"), "driver"),
)

_STAGE_ATTRIBUTE = "als_spark_stage"


def note_stage(exc: BaseException, stage: str) -> None:
    """Remember on ``exc`` the innermost pipeline stage it went through (read by :func:`spark_resource_failure`)."""
    if not hasattr(exc, _STAGE_ATTRIBUTE):
        with contextlib.suppress(AttributeError):  # an exception type without a __dict__
            setattr(exc, _STAGE_ATTRIBUTE, stage)


def spark_resource_failure(exc: BaseException) -> SparkResourceError | None:
    """The user's paragraph for a Spark job that failed for want of memory, or ``None`` for any other failure.

    Spark reports such a failure as a Py4J or pyspark exception whose text holds the executor's
    ``java.lang.OutOfMemoryError``, a ``SparkOutOfMemoryError`` or an ``ExecutorLostFailure``
    (an executor killed, often by the cluster manager for exceeding its memory, exit status 52
    or 137); a driver out of heap says ``java.lang.OutOfMemoryError`` without an executor.
    """
    text = "\n".join(str(part) for part in (exc, getattr(exc, "java_exception", None)) if part is not None)
    for pattern, where in _RESOURCE_SIGNS:
        match = pattern.search(text)
        if match is None:
            continue
        stage = getattr(exc, _STAGE_ATTRIBUTE, None)
        during = f" during the {stage} stage" if stage else ""
        spark_said = " ".join(match.group(0).split())[:300]
        if where == "executor":
            advice = (
                "Give each executor more memory (spark.executor.memory, and the worker or container "
                "memory to match; 20M MovieLens ratings with the default configuration need at least "
                "640m per 1-core executor, 512m fails: docs/measured.md#small-executors), or fewer "
                "cores per executor (spark.executor.cores), or more, smaller partitions "
                "(spark.sql.shuffle.partitions, als.num_blocks)."
            )
        else:
            advice = (
                "Give the driver more memory (spark-submit --driver-memory, or spark.driver.memory "
                "before the session starts; on a local run this is the whole of Spark's memory)."
            )
        return SparkResourceError(
            f"Spark ran out of memory{during} in the {where} ({spark_said}). {advice} This run "
            "published nothing: the tables already in the output are unchanged, and the same command can be "
            "run again once Spark has more memory."
        )
    return None
