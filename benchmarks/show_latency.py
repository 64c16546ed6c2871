"""Benchmark: how long ``als-spark show`` takes to answer, from a fresh process, on a published output.

What it measures
    The wall clock of ``python -m als_spark show --output DIR --user U`` and ``--item I``, each
    run ``--runs`` times (default 7) as a new process, from start to exit: interpreter start,
    imports, reading the tables and printing, which is what a user waits for. The runs alternate
    (user, item, user, ...) so that the noise of a shared machine falls on both alike, after one
    untimed run of each that brings the files into the page cache. Every run must exit 0.
    ``SPARK_REMOTE`` is left out of the children's environment, so a local DIR is read with
    pyarrow (:mod:`als_spark.lookup`).

    For comparison, ``--spark-runs`` (default 1) fresh processes answer each question the old
    way, ``pipeline.show`` on a local SparkSession from ``session.get_spark()`` (what the command
    did before), printing as the command prints; the report says whether both printed the same.

    The report gives the medians, minima and maxima, the machine (``nproc``, CPU model, Python)
    and the load average before and after, as a Markdown table with the date.

Usage::

    python benchmarks/show_latency.py /tmp/ml100k-out --user 38 --item 50
    python benchmarks/show_latency.py DIR --runs 15 --spark-runs 0      # without the Spark baseline
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time

from machine import cpu_model, load  # benchmarks/machine.py, beside this script

#: The old code path in a fresh process: ``pipeline.show`` on a local session, printed as ``als-spark show`` prints.
SPARK_SHOW = """
import sys
from als_spark import pipeline, session

output, kind, value = sys.argv[1:4]
answers = pipeline.show(session.get_spark(), output, **{kind: value})
for title, table in answers:
    print(f"\\n{title}")
    print(table.to_string(index=False) if len(table) else "  (none)")
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}


def _timed(command: list[str]) -> tuple[float, str]:
    """Seconds from start to exit of ``command`` and its stdout; fails unless it exits 0."""
    start = time.perf_counter()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def _show(output: str, kind: str, value: str) -> list[str]:
    return [sys.executable, "-m", "als_spark", "show", "--output", output, f"--{kind}", value]


def _spark_show(output: str, kind: str, value: str) -> list[str]:
    return [sys.executable, "-c", SPARK_SHOW, output, kind, value]


def _row(label: str, seconds: list[float]) -> str:
    return f"| {label} | {len(seconds)} | {statistics.median(seconds):.3f} | {min(seconds):.3f} | {max(seconds):.3f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("output", metavar="DIR", help="an output directory written by `als-spark run`")
    parser.add_argument("--user", default="38", help="the user id to ask about (default 38)")
    parser.add_argument("--item", default="50", help="the item id to ask about (default 50)")
    parser.add_argument("--runs", type=int, default=7, help="timed fresh processes per question (default 7)")
    parser.add_argument(
        "--spark-runs", type=int, default=1, help="fresh processes per question on the old Spark path (default 1)"
    )
    args = parser.parse_args(argv)
    questions = (("user", args.user), ("item", args.item))

    load_before = load()
    started = dt.datetime.now().astimezone()
    printed: dict[str, str] = {}
    for kind, value in questions:  # untimed: the page cache, and the answers to compare with Spark's
        printed[kind] = _timed(_show(args.output, kind, value))[1]
    times: dict[str, list[float]] = {kind: [] for kind, _ in questions}
    for _ in range(args.runs):
        for kind, value in questions:
            times[kind].append(_timed(_show(args.output, kind, value))[0])
    spark_times: dict[str, list[float]] = {kind: [] for kind, _ in questions}
    same: dict[str, bool] = {}
    for _ in range(args.spark_runs):
        for kind, value in questions:
            seconds, out = _timed(_spark_show(args.output, kind, value))
            spark_times[kind].append(seconds)
            same[kind] = same.get(kind, True) and out == printed[kind]
    load_after = load()

    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"`als-spark show` latency, {started:%Y-%m-%d %H:%M %Z}, on `{args.output}`: fresh processes, "
        f"{args.runs} timed runs per question after one untimed run.",
        "",
        f"Machine: nproc {nproc}, {cpu_model()}, Python {platform.python_version()}; "
        f"load average (1/5/15 min) {load_before} before, {load_after} after.",
        "",
        "| command | runs | median s | min s | max s |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, value in questions:
        lines.append(_row(f"`als-spark show --{kind} {value}` (pyarrow)", times[kind]))
    for kind, value in questions:
        if spark_times[kind]:
            verdict = "same output" if same[kind] else "output DIFFERS"
            lines.append(_row(f"`pipeline.show(spark, {kind}={value})`, local Spark ({verdict})", spark_times[kind]))
    print("\n".join(lines))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
