"""Benchmark: each system as users run it, a whole fresh process at a time, alternating.

``benchmarks/bench.py`` times stages inside one warm process; a scheduled job or a ``spark-submit``
pays the cold costs too (the JVM start, the imports, the first compilations). This script starts a
new process for every run of every system, in the order als-spark, tutorial, implicit, als-spark,
..., ``--repeat`` times, so that the noise of a shared machine falls on all of them alike:

* **als-spark**: ``python -m als_spark run --input PATH --config CFG --output DIR``, the command
  itself (its own session: the quick-starting JVM for a small input);
* **tutorial**: a plain pyspark script (this file with ``--child tutorial``): a default
  ``SparkSession``, ``spark.read.csv`` of the tab-separated file, the ratings >= ``min_rating``, then
  the tutorial pipeline of ``bench.run_naive`` (ALS, ``recommendForAllUsers`` exploded and filtered,
  cross-joined cosine similarities), each table written as Parquet;
* **implicit** (with the ``bench`` extra): pandas reads the file, then ``bench.run_implicit``
  (fit, ``recommend`` with liked items filtered, ``similar_items``, ``similar_users``) with
  single-threaded BLAS beside implicit's own threads (``threadpoolctl``), its best; it does not
  write its lists, which favours it.

Each run's wall clock is measured from the process start to its exit (exit 0 required). The report
gives per-run seconds, medians, the ratio als-spark / peer of the medians (below 1: als-spark is
faster), the machine and the load average before and after each run, as ``fresh.json`` and
``fresh.md`` in ``--output``.

Usage::

    python benchmarks/fresh.py --input path/to/ml-100k/u.data --config conf/seed-notebook.yaml \\
        --output fresh-100k/ --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ("als-spark", "tutorial", "implicit")
COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def command(system: str, source: str, config: str, output: str) -> list[str]:
    """The command line of one fresh run of ``system``."""
    if system == "als-spark":
        return [sys.executable, "-m", "als_spark", "run", "--input", source, "--config", config, "--output", output]
    child_args = ["--child", system, "--input", source, "--config", config, "--output", output]
    return [sys.executable, os.path.join(HERE, "fresh.py"), *child_args]


def child(system: str, source: str, config: str, output: str) -> None:
    """One run of the tutorial script or of implicit, in this (fresh) process."""
    from als_spark.config import load_config

    cfg = load_config(config)
    if system == "tutorial":
        from pyspark.sql import SparkSession
        from pyspark.sql import functions as F

        sys.path.insert(0, HERE)
        from bench import run_naive

        spark = SparkSession.builder.appName("tutorial").getOrCreate()
        schema = "user_id int, item_id int, rating double, timestamp long"
        ratings = spark.read.csv(source, sep="\t", schema=schema).where(F.col("rating").isNotNull())
        run_naive(spark, ratings, cfg, output)
        spark.stop()
        return
    import pandas as pd

    sys.path.insert(0, HERE)
    from bench import run_implicit

    ratings = pd.read_csv(source, sep="\t", names=COLUMNS)
    liked = ratings[ratings["rating"] >= cfg.ingest.min_rating].copy()
    liked["confidence"] = liked["rating"].astype("float32") if cfg.ingest.confidence == "rating" else 1.0
    seen = ratings if cfg.recommend.exclude == "rated" else liked
    run_implicit(liked, seen[["user_id", "item_id"]], cfg, os.cpu_count() or 1, None)


def run(source: str, config: str, output: str, *, repeat: int, systems: Sequence[str]) -> dict[str, Any]:
    """Every system ``repeat`` times, alternating, each a fresh process; the report."""
    scratch = tempfile.mkdtemp(prefix="als-spark-fresh-")
    runs: list[dict[str, Any]] = []
    try:
        for r in range(repeat):
            for system in systems:
                out = os.path.join(scratch, f"{system}-{r}")
                argv = command(system, source, config, out)
                load = os.getloadavg()
                start = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
                seconds = round(time.perf_counter() - start, 2)
                runs.append(
                    {
                        "system": system,
                        "repeat": r,
                        "seconds": seconds,
                        "exit": done.returncode,
                        "load_before": [round(x, 2) for x in load],
                        "load_after": [round(x, 2) for x in os.getloadavg()],
                    }
                )
                if done.returncode != 0:
                    raise RuntimeError(f"{system} exited with {done.returncode}:\n{done.stderr[-3000:]}")
                print(f"{system} run {r + 1}/{repeat}: {seconds} s", file=sys.stderr)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    medians = {s: statistics.median(x["seconds"] for x in runs if x["system"] == s) for s in systems}
    ours = medians["als-spark"]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "input": os.path.abspath(source),
        "config": os.path.abspath(config),
        "repeat": repeat,
        "runs": runs,
        "median_seconds": medians,
        "ratio_als_spark_to": {s: round(ours / m, 3) for s, m in medians.items() if s != "als-spark" and m > 0},
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['date']}, {report['machine']['cpus']} cores, each run a fresh process, median of {report['repeat']}:",
        "",
        "| system | median s | runs (s) | als-spark / system |",
        "| --- | --- | --- | --- |",
    ]
    for system, median in report["median_seconds"].items():
        each = ", ".join(str(x["seconds"]) for x in report["runs"] if x["system"] == system)
        ratio = report["ratio_als_spark_to"].get(system)
        lines.append(f"| {system} | {median:.2f} | {each} | {'' if ratio is None else f'{ratio:.2f}'} |")
    loads = [x["load_before"][0] for x in report["runs"]]
    lines += ["", f"load average (1 min) before the runs: {min(loads):.2f} to {max(loads):.2f}"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/fresh.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="a tab-separated MovieLens ratings file (u.data)")
    parser.add_argument("--config", default=os.path.join(HERE, "..", "conf", "seed-notebook.yaml"))
    parser.add_argument("--output", required=True, help="where fresh.json and fresh.md go (a child's tables)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per system (default 3); medians are reported")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, als-spark first (default all)")
    parser.add_argument("--child", choices=SYSTEMS[1:], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.input, args.config, args.output)
        return 0
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or systems[0] != "als-spark" or set(systems) - set(SYSTEMS):
        parser.error(f"--systems must start with als-spark and name only {', '.join(SYSTEMS)}")
    report = run(args.input, args.config, args.output, repeat=args.repeat, systems=systems)
    sys.path.insert(0, HERE)
    from machine import write_report

    write_report(args.output, "fresh", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
