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
==== ==========================================================
"""

from __future__ import annotations


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
