"""Benchmark: does the 20M synthetic pipeline run on a standalone cluster of small executors (issue 19)?

What it measures
    Whether ``spark-submit jobs/run.py`` (the default configuration: rank 64, 15 iterations)
    completes on a Spark standalone cluster of 2 workers with 1 core each, for each executor
    memory of ``--memories`` (largest first), with a 2 GB client-mode driver, and whether its
    tables equal those of a local-mode run on the same data. For each run: the wall clock, the
    exit code, the peak resident memory of the driver and of the executors' JVMs and Python
    workers, the JVM heaps actually used (``-Xmx`` read from the running processes), how many
    executor JVMs the application needed (more than 2: executors were lost and replaced), and,
    for a run that fails, what the user sees: the last error paragraph of the driver's output,
    the Spark exception (``OutOfMemoryError``, ``ExecutorLostFailure``, exit status 52 ...), the
    Spark stage that failed, the last table the pipeline staged, and the time to failure. The
    smallest memory that worked and the first one that failed are the answer.

How
    * Data: ``python -m als_spark synthesize --output WORKDIR/data --ratings N`` (MovieLens
      ``u.data`` + ``u.item``, seed 42; ``--skip-generate`` reuses it). Its rows, users and items
      are counted from ``u.data``.
    * Local reference: a fresh ``python -m als_spark run --input WORKDIR/data/u.data --output
      WORKDIR/out-local --log-level INFO`` (``local[*]``, the driver heap and shuffle partitions
      als-spark picks for a local run), log in ``WORKDIR/local.log``.
    * Cluster runs, one fresh cluster per memory M: :func:`spark_services.running_cluster` (master
      and 2 workers on 127.0.0.1, ``--cores 1``, ``--memory`` M + ``--worker-extra``), the
      ``--py-files`` zip of :func:`als_spark.package.build_zip` and a Python without
      ``als_spark`` (:func:`spark_services.python_without_als_spark`) as on a real cluster. The
      command is ``spark-submit --master spark://... --deploy-mode client --driver-memory 2g
      --py-files ZIP --conf spark.executor.memory=M --conf spark.cores.max=2 ... jobs/run.py
      --input WORKDIR/data/u.data --output WORKDIR/out-M --log-level INFO``: the settings of
      :func:`spark_services.submit_command` except its test-only ``spark.sql.shuffle.partitions=2``
      and ``spark.executor.memory=1g`` (so shuffle partitions stay at Spark's default, what a user
      gets). Everything the driver prints goes to ``WORKDIR/M.log``; executor and worker logs stay
      in ``WORKDIR/cluster-M``. A run longer than ``--timeout`` (40 min) is killed (its process
      group) and recorded as not finished. Memories are tried in order and the benchmark stops
      at the first that fails; when all of ``--memories`` pass it goes on with ``--smaller``.
    * Comparison, table by table (every Parquet table of the output: ratings, interactions,
      rejected, factors, recommendations, similarities, indexes, items ...): both read with
      pandas and sorted by all their scalar columns; "identical" when every value is equal
      (factors as arrays), else the largest absolute difference of each float column and of the
      factor features is reported and :func:`spark_services.assert_same_outputs` (``atol=1e-4``;
      exact for ids and ranks except at near-ties) decides "within 1e-4" or "different".
    * Report: ``WORKDIR/report.json`` and ``WORKDIR/report.md``, rewritten after every step, with
      the machine (cores, RAM, CPU) and the load average before and after each run. A
      ``--deadline`` (HH:MM UTC) stops whatever runs at that time. ``--wait-for FILE`` waits
      (polling every 30 s) until FILE exists before any heavy step: on a shared machine. At the
      end the output directories are deleted (``--keep-outputs`` keeps them); data and logs stay.

Usage::

    python benchmarks/small_executors.py                        # 20M ratings; 3g, 2g, 1g, then 768m
    python benchmarks/small_executors.py --skip-generate --memories 1g --smaller ''
    python benchmarks/small_executors.py --ratings 20000 --memories 1g --workdir /tmp/se-quick   # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import spark_services  # noqa: E402
from machine import cpu_model, load  # noqa: E402
from spark_services import (  # noqa: E402
    Driver,
    Shipped,
    process_table,
    python_without_als_spark,
    running_cluster,
    spark_env,
    submit_base,
)

GB = 10**9
MIB = 2**20
POLL_SECONDS = 30

#: Lines of the driver's or an executor's log that say why a run failed, in the order a reader wants them.
PATTERNS: dict[str, str] = {
    "OutOfMemoryError": r"OutOfMemoryError",
    "Java heap space": r"Java heap space",
    "GC overhead limit exceeded": r"GC overhead limit exceeded",
    "SparkOutOfMemoryError": r"SparkOutOfMemoryError",
    "Unable to acquire memory": r"Unable to acquire \d+ bytes of memory",
    "ExecutorLostFailure": r"ExecutorLostFailure",
    "Container killed": r"Container killed",
    "Lost executor": r"Lost executor \d+",
    "executor exit status": r"(exitStatus|exit code|exited with code) \d+",
    "Job aborted due to stage failure": r"Job aborted due to stage failure",
    "Python worker exited unexpectedly": r"Python worker exited unexpectedly",
    "Py4JJavaError": r"Py4JJavaError",
    "FetchFailed": r"FetchFailed",
}
_SPARK_TIME = re.compile(r"^(\d\d/\d\d/\d\d \d\d:\d\d:\d\d)")
_PY_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def stamp() -> str:
    return f"[{now_utc():%H:%M:%S}Z]"


def mebibytes(memory: str) -> int:
    """``"3g"`` -> 3072, ``"768m"`` -> 768 (Spark's memory strings, in MiB)."""
    match = re.fullmatch(r"(\d+)([mMgG])", memory.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a memory like 2g or 768m: {memory!r}")
    return int(match[1]) * (1024 if match[2].lower() == "g" else 1)


def memory_list(text: str) -> list[str]:
    items = [m.strip() for m in text.split(",") if m.strip()]
    for m in items:
        mebibytes(m)
    return items


# --- machine and data ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the benchmark ran on."""
    with open("/proc/meminfo") as f:
        meminfo = dict(line.split(":", 1) for line in f)
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout
    java = subprocess.run(["java", "-version"], capture_output=True, text=True) if shutil.which("java") else None
    return {
        "date": now_utc().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "mem_total_bytes": int(meminfo["MemTotal"].split()[0]) * 1024,
        "mem_available_bytes_at_start": int(meminfo["MemAvailable"].split()[0]) * 1024,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "pyspark": metadata.version("pyspark"),
        "als_spark": metadata.version("als-spark"),
        "java": java.stderr.splitlines()[0] if java and java.stderr else None,
        "git_head": git,
        "git_dirty_files": len(dirty.splitlines()),
        "load_at_start": load(),
    }


def describe_data(data: Path) -> dict[str, Any]:
    """Rows, distinct users and items of ``u.data`` (and the titles of ``u.item``)."""
    import pyarrow.compute as pc
    from pyarrow import csv

    table = csv.read_csv(
        data / "u.data",
        read_options=csv.ReadOptions(column_names=["user_id", "item_id", "rating", "timestamp"]),
        parse_options=csv.ParseOptions(delimiter="\t"),
    )
    ratings = table["rating"]
    info = {
        "path": str(data / "u.data"),
        "bytes": (data / "u.data").stat().st_size,
        "rows": table.num_rows,
        "users": len(pc.unique(table["user_id"])),
        "items": len(pc.unique(table["item_id"])),
        "ratings_ge_4": int(pc.sum(pc.greater_equal(ratings, 4)).as_py()),
    }
    if (data / "u.item").exists():
        with open(data / "u.item", "rb") as f:
            info["u.item rows"] = sum(1 for _ in f)
    return info


# --- processes -----------------------------------------------------------------------------------


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(root: int, table: dict[int, tuple[int, list[str]]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _xmx(args: list[str]) -> str | None:
    return next((a[len("-Xmx") :] for a in reversed(args) if a.startswith("-Xmx")), None)


class Sampler(threading.Thread):
    """Every ``interval`` s: peak RSS of the driver's process tree and of the cluster's executors."""

    def __init__(self, root: int, cluster: Any = None, interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.root, self.cluster, self.interval = root, cluster, interval
        self.done = threading.Event()
        self.started = time.monotonic()
        self.peak: dict[str, int] = {"driver_tree": 0, "driver_jvm": 0, "executor_jvm": 0, "executor_python": 0}
        self.driver_xmx: str | None = None
        self.executor_xmx: set[str] = set()
        self.executors: dict[str, float] = {}  #: "<app>/<id>" -> seconds after start it was first seen

    def run(self) -> None:
        while not self.done.wait(self.interval):
            with contextlib.suppress(Exception):  # a measurement, never the reason a run fails
                self.sample()

    def sample(self) -> None:
        table = process_table()
        tree = _descendants(self.root, table)
        total = 0
        for pid in tree:
            rss = _rss(pid)
            total += rss
            args = table[pid][1]
            if args and args[0].endswith("java") and "org.apache.spark.deploy.SparkSubmit" in args:
                self.peak["driver_jvm"] = max(self.peak["driver_jvm"], rss)
                self.driver_xmx = _xmx(args) or self.driver_xmx
        self.peak["driver_tree"] = max(self.peak["driver_tree"], total)
        if self.cluster is None:
            return
        for key, pid in self.cluster.executor_processes(table).items():
            self.executors.setdefault(key, round(time.monotonic() - self.started, 1))
            self.peak["executor_jvm"] = max(self.peak["executor_jvm"], _rss(pid))
            xmx = _xmx(table[pid][1])
            if xmx:
                self.executor_xmx.add(xmx)
            python = sum(_rss(p) for p in _descendants(pid, table) if p != pid)
            self.peak["executor_python"] = max(self.peak["executor_python"], python)

    def result(self) -> dict[str, Any]:
        return {
            "peak_rss_bytes": dict(self.peak),
            "driver_xmx": self.driver_xmx,
            "executor_xmx": sorted(self.executor_xmx),
            "executor_jvms": len(self.executors),
            "executors_first_seen_seconds": self.executors,
        }


# --- what a failing run shows --------------------------------------------------------------------


def _paragraph_from(lines: list[str], start: int) -> list[str]:
    out: list[str] = []
    for line in lines[start:]:
        if not line.strip() and out:
            break
        out.append(line)
    return out


def _first_matches(lines: list[str], limit: int = 2) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, pattern in PATTERNS.items():
        regex = re.compile(pattern)
        hits = [line.strip()[:600] for line in lines if regex.search(line)]
        if hits:
            found[name] = [f"({len(hits)} lines)", *hits[:limit]]
    return found


def _timestamp(line: str) -> dt.datetime | None:
    if m := _SPARK_TIME.match(line):
        return dt.datetime.strptime(m[1], "%y/%m/%d %H:%M:%S").astimezone(dt.timezone.utc)
    if m := _PY_TIME.match(line):
        return dt.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S").astimezone(dt.timezone.utc)
    return None


def failure_facts(lines: list[str], started: dt.datetime, cluster_dir: Path | None) -> dict[str, Any]:
    """What the user sees of a failed run, from the driver's output and the cluster's logs."""
    facts: dict[str, Any] = {}
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    if errors:
        facts["error_paragraph"] = "\n".join(_paragraph_from(lines, errors[-1]))[:4000]
    tracebacks = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if tracebacks:
        tail = lines[tracebacks[-1] :]
        facts["traceback_tail"] = "\n".join(tail[-25:])[-6000:]
        # the exception lines: "pyspark.errors...: ..." / "py4j.protocol.Py4JJavaError: ..." and the Java cause after it
        exc = [i for i, line in enumerate(tail) if re.match(r"^[\w.]+(Error|Exception)\b.*:", line)]
        if exc:
            facts["exception"] = "\n".join(tail[exc[-1] : exc[-1] + 6])[:3000]
    facts["driver_log_matches"] = _first_matches(lines)
    for line in lines:
        if m := re.search(r"Job aborted due to stage failure: .*?in stage (\d+\.\d+)", line):
            facts["failed_stage"] = m[1]
            break
    failed = [line.strip() for line in lines if re.search(r"(ResultStage|ShuffleMapStage) \d+ \(.*\) failed", line)]
    if failed:
        facts["dag_failed_stage_lines"] = failed[:3]
    staged = [line.split("staged ", 1)[1].strip() for line in lines if "als_spark.publish: staged " in line]
    facts["tables_staged_before_failure"] = staged
    first = next(
        (i for i, line in enumerate(lines) if re.search(r"Lost executor|OutOfMemoryError|ExecutorLost", line)), None
    )
    if first is not None:
        facts["first_problem_line"] = lines[first].strip()[:600]
        when = next((t for t in (_timestamp(line) for line in reversed(lines[: first + 1])) if t), None)
        if when:
            facts["first_problem_after_seconds"] = round((when - started).total_seconds(), 1)
    if cluster_dir is not None and cluster_dir.exists():
        executor_logs: dict[str, Any] = {}
        for path in sorted(cluster_dir.glob("worker-*/app-*/*/stderr")):
            text = path.read_text(errors="replace").splitlines()
            matches = _first_matches(text)
            if matches:
                executor_logs[str(path.relative_to(cluster_dir))] = matches
        facts["executor_log_matches"] = executor_logs
        worker_lines = []
        for path in sorted(cluster_dir.glob("worker-*.log")):
            worker_lines += [
                f"{path.name}: {line.strip()}"[:400]
                for line in path.read_text(errors="replace").splitlines()
                if re.search(r"finished with state|exitStatus|Executor .* exited", line)
            ]
        facts["worker_log_executor_exits"] = worker_lines[:10]
    return facts


# --- runs ----------------------------------------------------------------------------------------


class Deadline:
    def __init__(self, hhmm: str | None) -> None:
        self.at: dt.datetime | None = None
        if hhmm:
            h, m = (int(x) for x in hhmm.split(":"))
            self.at = now_utc().replace(hour=h, minute=m, second=0, microsecond=0)

    def left(self) -> float:
        return float("inf") if self.at is None else (self.at - now_utc()).total_seconds()


def run_driver(
    name: str,
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    timeout: float,
    cluster: Any = None,
) -> dict[str, Any]:
    """Run ``command`` in its own process group, its output in ``log``; kill it after ``timeout`` s."""
    record: dict[str, Any] = {
        "name": name,
        "command": shlex.join(command),
        "log": str(log),
        "started_at": now_utc().isoformat(timespec="seconds"),
        "load_before": load(),
        "timeout_seconds": round(timeout),
    }
    print(f"{stamp()} {name}: start (load {load()}, timeout {timeout:.0f} s)\n  {shlex.join(command)}", flush=True)
    started = now_utc()
    start = time.monotonic()
    driver = Driver(command, cwd=cwd, env=env, log=log)
    sampler = Sampler(driver.proc.pid, cluster)
    sampler.start()
    try:
        try:
            record["exit_code"] = driver.wait(timeout)
            record["timed_out"] = False
        except subprocess.TimeoutExpired:  # Driver.wait has killed the process group
            record["exit_code"] = None
            record["timed_out"] = True
    finally:
        if driver.proc.poll() is None:
            driver.stop()
        sampler.done.set()
        sampler.join(10)
    record["wall_seconds"] = round(time.monotonic() - start, 1)
    record["ended_at"] = now_utc().isoformat(timespec="seconds")
    record["load_after"] = load()
    record.update(sampler.result())
    lines = list(driver.lines)
    record["ok"] = record["exit_code"] == 0
    summary = [i for i, line in enumerate(lines) if re.match(r"^als-spark run finished", line)]
    if summary:
        record["summary"] = "\n".join(_paragraph_from(lines, summary[-1]))
    if not record["ok"]:
        record["failure"] = failure_facts(lines, started, cluster.workdir if cluster is not None else None)
        record["driver_log_tail"] = "\n".join(lines[-30:])[-6000:]
    status = "TIMEOUT" if record["timed_out"] else f"exit {record['exit_code']}"
    print(f"{stamp()} {name}: {status}, {record['wall_seconds']} s (load {load()})", flush=True)
    return record


def read_run_json(output: Path) -> dict[str, Any] | None:
    path = output / "run.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return {k: info.get(k) for k in ("counts", "timings_seconds", "spark", "input") if k in info}


def cluster_command(
    master: str, shipped: Shipped, memory: str, driver_memory: str, data: Path, output: Path
) -> list[str]:
    """``spark-submit`` of ``jobs/run.py``: :func:`spark_services.submit_command` without its test-only settings."""
    base = submit_base(master, shipped, f"spark.executor.memory={memory}")
    client = ["--deploy-mode", "client", "--driver-memory", driver_memory]
    job = [str(REPO / "jobs" / "run.py"), "--input", str(data), "--output", str(output), "--log-level", "INFO"]
    return [*base[:1], *client, *base[1:], *job]


# --- comparison ----------------------------------------------------------------------------------


def parquet_tables(output: Path) -> list[str]:
    """Names of the Parquet tables of an output directory (``DIR/<table>`` -> ``current/<table>``)."""
    return sorted(
        p.name
        for p in output.iterdir()
        if p.is_dir() and not p.name.startswith((".", "_")) and p.name != "current" and any(p.glob("*.parquet"))
    )


def _array_column(series: pd.Series) -> bool:
    first = next((v for v in series if v is not None), None)
    return isinstance(first, (np.ndarray, list))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in df.columns if not _array_column(df[c])]
    return df.sort_values(keys, kind="mergesort").reset_index(drop=True) if keys and len(df) else df


def compare_table(got: Path, expected: Path, name: str, atol: float) -> dict[str, Any]:
    result: dict[str, Any] = {"table": name}
    if not (got / name).exists():
        return {**result, "result": "different", "detail": "missing in the cluster output"}
    a, b = pd.read_parquet(got / name), pd.read_parquet(expected / name)
    result["rows"] = [len(a), len(b)]
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return {**result, "result": "different", "detail": f"columns {list(a.columns)} vs {list(b.columns)}"}
    a, b = _sorted(a), _sorted(b)
    exact, diffs = True, dict[str, Any]()
    for c in a.columns:
        if _array_column(a[c]):
            x, y = np.stack(a[c].to_numpy()), np.stack(b[c].to_numpy())
            same = x.shape == y.shape and np.array_equal(x, y)
            if not same and x.shape == y.shape and x.dtype.kind == "f":
                diffs[c] = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
        else:
            same = a[c].equals(b[c])
            if not same and a[c].dtype.kind == "f":
                diffs[c] = float(np.nanmax(np.abs(a[c].to_numpy(np.float64) - b[c].to_numpy(np.float64))))
            elif not same:
                diffs[c] = f"{int((a[c] != b[c]).sum())} rows differ (after sorting)"
        exact = exact and same
    del a, b
    if exact:
        return {**result, "result": "identical"}
    result["max_abs_diff"] = diffs
    # the tests' criterion, for this one table (assert_same_outputs reads spark_services.TABLES)
    saved = spark_services.TABLES
    spark_services.TABLES = (name,)  # one table at a time
    try:
        spark_services.assert_same_outputs(got, expected, atol=atol)
        result["result"] = f"within {atol:g}"
    except AssertionError as exc:
        result["result"] = "different"
        result["detail"] = str(exc)[:1500]
    finally:
        spark_services.TABLES = saved
    return result


def compare_outputs(got: Path, expected: Path, atol: float) -> list[dict[str, Any]]:
    names = sorted(set(parquet_tables(expected)) | set(parquet_tables(got)))
    results = []
    for name in names:
        try:
            results.append(compare_table(got, expected, name, atol))
        except Exception as exc:  # noqa: BLE001 - one table's trouble must not hide the others
            results.append({"table": name, "result": "error", "detail": f"{type(exc).__name__}: {exc}"[:1500]})
        print(f"    {name}: {results[-1]['result']} {results[-1].get('max_abs_diff', '')}", flush=True)
    return results


# --- report --------------------------------------------------------------------------------------


def _gb(value: Any) -> str:
    return f"{value / GB:.2f}" if isinstance(value, (int, float)) and value else "-"


def _verdict(run: dict[str, Any]) -> str:
    if run.get("skipped"):
        return f"not run: {run['skipped']}"
    if run.get("timed_out") and run.get("killed_by") == "deadline":
        return f"stopped at the deadline after {run['wall_seconds'] / 60:.0f} min (unfinished)"
    if run.get("timed_out"):
        return f"did not finish in {run['timeout_seconds'] / 60:.0f} min"
    return "completed" if run.get("ok") else "FAILED"


def _comparison(run: dict[str, Any]) -> str:
    tables = run.get("comparison")
    if not tables:
        return "-"
    groups: dict[str, list[str]] = {}
    for t in tables:
        groups.setdefault(t["result"], []).append(t["table"])
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in groups.items())


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    out = [
        "# Small executors: the 20M synthetic pipeline on a 2 x 1-core standalone cluster",
        "",
        f"- started {m['date']}, {'finished' if report.get('finished') else 'NOT finished'}"
        + (f" {report.get('finished_at')}" if report.get("finished_at") else ""),
        f"- machine: {m['cpu']}, {m['cpu_count']} cores, {m['mem_total_bytes'] / GB:.1f} GB RAM, "
        f"load at start {m['load_at_start']}; pyspark {m['pyspark']}, {m['java']}, als-spark {m['als_spark']} "
        f"(git {m['git_head'][:10]}, {m['git_dirty_files']} files modified)",
        f"- settings: {json.dumps(s)}",
        f"- command: `{shlex.join(report['command'])}`",
    ]
    if report.get("data"):
        d = report["data"]
        out.append(
            f"- data: {d.get('rows', '?'):,} rows, {d.get('users', '?'):,} users, {d.get('items', '?'):,} items, "
            f"{d.get('ratings_ge_4', 0):,} ratings >= 4 ({d.get('bytes', 0) / GB:.2f} GB u.data)"
        )
    if report.get("generate"):
        g = report["generate"]
        out.append(f"- generated in {g.get('wall_seconds')} s (exit {g.get('exit_code')})")
    out += [
        "",
        "| run | wall s | exit | result | driver -Xmx | executor -Xmx | executor JVMs | peak RSS GB: driver tree / "
        "executor JVM / executor Python | load before -> after | vs local |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        p = r.get("peak_rss_bytes", {})
        out.append(
            f"| {r['name']} | {r.get('wall_seconds', '-')} | {r.get('exit_code', '-')} | {_verdict(r)} | "
            f"{r.get('driver_xmx') or '-'} | {', '.join(r.get('executor_xmx', [])) or '-'} | "
            f"{r.get('executor_jvms', '-') if r.get('cluster') else '-'} | "
            f"{_gb(p.get('driver_tree'))} / {_gb(p.get('executor_jvm'))} / {_gb(p.get('executor_python'))} | "
            f"{r.get('load_before', '-')} -> {r.get('load_after', '-')} | {_comparison(r)} |"
        )
    for r in report["runs"]:
        if r.get("timings_seconds"):
            out += ["", f"{r['name']} stage seconds: {json.dumps(r['timings_seconds'])}"]
        if r.get("cluster"):
            out += [f"{r['name']} cluster: {json.dumps(r['cluster'])}"]
        for t in r.get("comparison", []):
            if t["result"] != "identical":
                out.append(
                    f"- {r['name']} {t['table']}: {t['result']}; {json.dumps(t.get('max_abs_diff'))} {t.get('detail', '')[:300]}"
                )
        f = r.get("failure")
        if f:
            out += ["", f"### {r['name']}: what the user sees", ""]
            for key in (
                "error_paragraph",
                "exception",
                "failed_stage",
                "dag_failed_stage_lines",
                "tables_staged_before_failure",
                "first_problem_line",
                "first_problem_after_seconds",
                "worker_log_executor_exits",
            ):
                if f.get(key):
                    value = f[key]
                    text = value if isinstance(value, str) else json.dumps(value, indent=1)
                    out += [f"{key}:", "```", str(text)[:3000], "```"]
            out += ["driver log matches:", "```", json.dumps(f.get("driver_log_matches"), indent=1)[:4000], "```"]
            if f.get("executor_log_matches"):
                out += ["executor log matches:", "```", json.dumps(f["executor_log_matches"], indent=1)[:4000], "```"]
    c = report.get("conclusion")
    if c:
        out += [
            "",
            f"**smallest executor memory that worked: {c.get('smallest_ok') or 'none'}; "
            f"first that failed: {c.get('first_failed') or 'none tried'}**",
        ]
    return "\n".join(out) + "\n"


def write_report(workdir: Path, report: dict[str, Any]) -> None:
    (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (workdir / "report.md").write_text(markdown(report))


# --- main ----------------------------------------------------------------------------------------


def wait_for(path: Path, deadline: Deadline) -> bool:
    """Poll every 30 s until ``path`` exists; ``False`` when the deadline comes first."""
    while not path.exists():
        if deadline.left() <= POLL_SECONDS:
            return False
        print(f"{stamp()} waiting for {path} (load {load()})", flush=True)
        time.sleep(POLL_SECONDS)
    return True


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so that every finally: (clusters, drivers) runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", type=Path, default=Path("/work/small-exec"), help="data, logs and report")
    parser.add_argument("--ratings", type=int, default=20_000_000, help="ratings to generate (default %(default)s)")
    parser.add_argument("--skip-generate", action="store_true", help="reuse WORKDIR/data/u.data")
    parser.add_argument(
        "--memories",
        type=memory_list,
        default=memory_list("3g,2g,1g"),
        help="executor memories, largest first (default 3g,2g,1g)",
    )
    parser.add_argument(
        "--smaller",
        type=memory_list,
        default=memory_list("768m"),
        help="tried after --memories only if all of them passed (default 768m; '' for none)",
    )
    parser.add_argument("--keep-going", action="store_true", help="do not stop at the first failing memory")
    parser.add_argument("--driver-memory", default="2g", help="spark-submit --driver-memory (default 2g)")
    parser.add_argument(
        "--worker-extra", default="512m", help="worker --memory = executor memory + this (default 512m)"
    )
    parser.add_argument("--timeout", type=float, default=40 * 60, help="kill a run after this many seconds (2400)")
    parser.add_argument("--deadline", metavar="HH:MM", help="UTC time to stop whatever runs and write the report")
    parser.add_argument("--wait-for", type=Path, metavar="FILE", help="before any heavy step, wait until FILE exists")
    parser.add_argument("--atol", type=float, default=1e-4, help="tolerance of the second comparison (1e-4)")
    parser.add_argument("--keep-outputs", action="store_true", help="keep the output directories at the end")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)

    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir, local_out = workdir / "data", workdir / "out-local"
    deadline = Deadline(args.deadline)
    command = [sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv]
    report: dict[str, Any] = {
        "command": command,
        "machine": machine(),
        "settings": {
            "ratings": args.ratings,
            "memories": args.memories,
            "smaller": args.smaller,
            "driver_memory": args.driver_memory,
            "worker_memory": f"executor memory + {args.worker_extra}",
            "workers": 2,
            "worker_cores": 1,
            "spark.cores.max": 2,
            "spark.sql.shuffle.partitions": "not set (Spark default 200, adaptive execution on)",
            "spark.ui.enabled": False,
            "timeout_seconds": args.timeout,
            "deadline_utc": args.deadline,
            "atol": args.atol,
        },
        "runs": [],
        "finished": False,
    }
    write_report(workdir, report)
    print(json.dumps(report["machine"], indent=2), flush=True)

    def stop_reason() -> str | None:
        return f"deadline {args.deadline} UTC" if deadline.left() < 60 else None

    def timeout() -> float:
        return max(60.0, min(args.timeout, deadline.left()))

    clusters: list[Path] = []
    try:
        if args.wait_for and not wait_for(args.wait_for, deadline):
            report["skipped"] = f"{args.wait_for} did not appear before the deadline"
            return 1

        if not args.skip_generate:
            shutil.rmtree(data_dir, ignore_errors=True)
            gen = run_driver(
                "generate",
                [
                    sys.executable,
                    "-m",
                    "als_spark",
                    "synthesize",
                    "--output",
                    str(data_dir),
                    "--ratings",
                    str(args.ratings),
                ],
                cwd=workdir,
                env=dict(os.environ),
                log=workdir / "generate.log",
                timeout=timeout(),
            )
            report["generate"] = {
                k: gen[k] for k in ("command", "exit_code", "wall_seconds", "load_before", "load_after")
            }
            write_report(workdir, report)
            if not gen["ok"]:
                return 1
        report["data"] = describe_data(data_dir)
        print(f"{stamp()} data: {report['data']}", flush=True)
        write_report(workdir, report)
        data = data_dir / "u.data"

        # the local reference
        if reason := stop_reason():
            report["runs"].append({"name": "local", "skipped": reason})
            return 1
        shutil.rmtree(local_out, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYSPARK_SUBMIT_ARGS", "MASTER")}
        local = run_driver(
            "local",
            [
                sys.executable,
                "-m",
                "als_spark",
                "run",
                "--input",
                str(data),
                "--output",
                str(local_out),
                "--log-level",
                "INFO",
            ],
            cwd=workdir,
            env=env,
            log=workdir / "local.log",
            timeout=timeout(),
        )
        local["run_json"] = read_run_json(local_out)
        local["timings_seconds"] = (local["run_json"] or {}).get("timings_seconds")
        report["runs"].append(local)
        write_report(workdir, report)
        if not local["ok"]:
            print(local.get("driver_log_tail"), flush=True)
            return 1

        shipped = Shipped(python=python_without_als_spark(workdir), package=_zip(workdir))
        queue = list(args.memories)
        pending_smaller = list(args.smaller)
        all_ok = True
        while queue:
            memory = queue.pop(0)
            if reason := stop_reason():
                report["runs"].append({"name": memory, "skipped": reason})
                write_report(workdir, report)
                break
            run = cluster_run(memory, args, workdir, shipped, data, timeout(), clusters)
            report["runs"].append(run)
            write_report(workdir, report)
            if run["ok"]:
                print(f"{stamp()} comparing {memory} with local", flush=True)
                run["comparison"] = compare_outputs(workdir / f"out-{memory}", local_out, args.atol)
                write_report(workdir, report)
                if not args.keep_outputs:
                    shutil.rmtree(workdir / f"out-{memory}", ignore_errors=True)
            else:
                all_ok = False
                print(json.dumps(run.get("failure"), indent=1)[:5000], flush=True)
                if not args.keep_going:
                    for rest in queue:
                        report["runs"].append({"name": rest, "skipped": f"stopped at the first failure ({memory})"})
                    break
            if not queue and all_ok and pending_smaller:
                queue, pending_smaller = pending_smaller, []
        return 0
    except KeyboardInterrupt as exc:
        report["interrupted"] = str(exc)
        return 130
    except Exception:  # noqa: BLE001 - keep what was measured
        report["crashed"] = traceback.format_exc()
        print(report["crashed"], flush=True)
        return 1
    finally:
        runs = [r for r in report["runs"] if r.get("cluster")]
        ok = [r["name"] for r in runs if r.get("ok")]
        failed = [r["name"] for r in runs if not r.get("ok")]
        report["conclusion"] = {
            "smallest_ok": min(ok, key=mebibytes) if ok else None,
            "first_failed": failed[0] if failed else None,
        }
        if not args.keep_outputs:
            for path in [local_out, *(workdir.glob("out-*"))]:
                shutil.rmtree(path, ignore_errors=True)
        for cluster_dir in clusters:
            shutil.rmtree(cluster_dir / "local", ignore_errors=True)
        report["finished"] = True
        report["finished_at"] = now_utc().isoformat(timespec="seconds")
        report["machine"]["load_at_end"] = load()
        write_report(workdir, report)
        print(markdown(report), flush=True)


def _zip(workdir: Path) -> Path:
    from als_spark.package import build_zip

    return build_zip(workdir / "dist")


def cluster_run(
    memory: str,
    args: argparse.Namespace,
    workdir: Path,
    shipped: Shipped,
    data: Path,
    timeout: float,
    clusters: list[Path],
) -> dict[str, Any]:
    """One fresh cluster with executors of ``memory``, one spark-submit of the pipeline on it."""
    output = workdir / f"out-{memory}"
    shutil.rmtree(output, ignore_errors=True)
    cluster_dir = workdir / f"cluster-{memory}"
    shutil.rmtree(cluster_dir, ignore_errors=True)
    clusters.append(cluster_dir)
    worker_memory = f"{mebibytes(memory) + mebibytes(args.worker_extra)}m"
    # shuffle and spill files of the executors and the driver under the cluster's directory, removed at the end
    os.environ["SPARK_LOCAL_DIRS"] = str(cluster_dir / "local")
    (cluster_dir / "local").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with running_cluster(cluster_dir, workers=2, cores=1, memory=worker_memory) as cluster:
        up = round(time.monotonic() - started, 1)
        command = cluster_command(cluster.url, shipped, memory, args.driver_memory, data, output)
        run = run_driver(
            memory,
            command,
            cwd=cluster_dir,
            env=spark_env(cluster_dir),
            log=workdir / f"{memory}.log",
            timeout=timeout,
            cluster=cluster,
        )
    run["cluster"] = {
        "workers": 2,
        "worker_cores": 1,
        "worker_memory": worker_memory,
        "executor_memory": memory,
        "driver_memory": args.driver_memory,
        "start_seconds": up,
        "dir": str(cluster_dir),
    }
    if run["timed_out"] and timeout < args.timeout:
        run["killed_by"] = "deadline"
    run["run_json"] = read_run_json(output)
    run["timings_seconds"] = (run["run_json"] or {}).get("timings_seconds")
    return run


if __name__ == "__main__":
    sys.exit(main())
