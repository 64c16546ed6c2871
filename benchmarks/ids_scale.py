"""Benchmark: does the pipeline on string user/item ids keep up with int ids at 20 million event rows?

What it measures
    The wall-clock time and the peak memory of ``python -m als_spark run`` on two Parquet event
    logs that hold the very same events (``view``/``cart``/``purchase`` rows, weights 1/3/5) and
    differ only in their ids: the generator's int ids, or UUID users and ``SKU-XXXXXXXX`` items.
    It passes when ``median(string wall) / median(int wall) <= 1.3`` and the peak memory of the
    whole process tree stays under 16 GB (10**9 bytes) in every run.

How
    * Data: :func:`als_spark.synthetic.generate_for_size` (``--ratings``, seed 42), then
      :func:`~als_spark.synthetic.interactions` with ``events=True`` for ``ids="int"`` and
      ``ids="string"``, written with :func:`~als_spark.synthetic.write_parquet` to
      ``WORKDIR/events-int`` and ``WORKDIR/events-string``. The default of 5,863,300 ratings makes
      about 20,000,000 event rows (3.41 rows per rating at that size). Generation runs in a child
      process, so its memory is returned before the runs; it checks that the string log is the int
      log with its ids mapped (same rows, order, events and timestamps). ``--skip-generate`` reuses
      the files; the row counts are always read back from the Parquet footers and printed.
    * Runs: every run is a fresh ``python -m als_spark run --input ... --format parquet --set
      'ingest.event_weights={view: 1, cart: 3, purchase: 5}'`` with the defaults otherwise (rank 64,
      15 iterations), in the order int, string, int, string, ... (``--repeats`` of each), so the
      noise of a shared machine falls on both modes alike.
    * Per run: the wall clock from start to exit, the exit code (0 required), the per-stage seconds
      and the counts of its ``run.json`` (the output directory is deleted afterwards), and the
      memory of the process tree (the Python driver, the JVM it starts and the Python workers):
      every ``--interval`` seconds (0.5) all descendants are found in ``/proc`` and their ``VmRSS``
      summed (leaving out a child that mirrors its parent's ``VmRSS`` and ``VmSize``: one caught
      between clone and exec, which shares the parent's memory); the report gives the largest sum and the largest ``VmHWM`` of any one process. It also
      records the CPU seconds of the tree (each process's last sampled ``utime + stime``), the CPU
      seconds the rest of the machine used meanwhile (``/proc/stat`` busy time minus the tree's: the
      noise of a shared machine), the load average before and after, and a fingerprint of the
      ``als_spark`` sources, so a change to the code between runs shows.
    * Report: medians per mode over the complete (int, string) pairs, their ratio, per-stage medians
      and ratios, and a PASS/FAIL line, printed and written as ``WORKDIR/report.json`` and
      ``WORKDIR/report.md`` (rewritten after every run, so an interrupted benchmark leaves what it
      measured).

Usage::

    python benchmarks/ids_scale.py                           # ~20M event rows, 3 runs per mode
    python benchmarks/ids_scale.py --ratings 20000 --repeats 1   # a quick end-to-end check
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import platform
import re
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODES = ("int", "string")
SEED = 42
DEFAULT_RATINGS = 5_863_300  # x 3.41 event rows per rating = about 20,000,000 rows
EVENT_WEIGHTS = "ingest.event_weights={view: 1, cart: 3, purchase: 5}"
RATIO_LIMIT = 1.3
PEAK_LIMIT_BYTES = 16 * 10**9
GB = 10**9
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SKU = re.compile(r"^SKU-[0-9A-F]{8}$")


# --- data ------------------------------------------------------------------------------------


def _check_same_events(int_frame: Any, string_log: Any) -> None:
    """Raise unless ``string_log.frame`` is ``int_frame`` with its ids mapped through the log's id maps."""
    import numpy as np
    import pandas as pd

    frame = string_log.frame
    if len(frame) != len(int_frame):
        raise AssertionError(f"row counts differ: int {len(int_frame)}, string {len(frame)}")
    for column in ("event", "timestamp"):
        if not np.array_equal(frame[column].to_numpy(), int_frame[column].to_numpy()):
            raise AssertionError(f"column {column} differs between the int and the string log")
    for column, table, key, pattern in (
        ("user_id", string_log.users, "user", _UUID),
        ("item_id", string_log.items, "item", _SKU),
    ):
        codes = table[key]
        if codes.nunique() != len(codes):
            raise AssertionError(f"the {key} ids are not unique")
        bad = [code for code in codes.head(1000) if not pattern.match(code)]
        if bad:
            raise AssertionError(f"unexpected {key} id {bad[0]!r}")
        position = pd.Index(table[column]).get_indexer(int_frame[column])
        if (position < 0).any():
            raise AssertionError(f"int {column}s missing from the {key} map")
        if not np.array_equal(codes.to_numpy()[position], frame[column].to_numpy()):
            raise AssertionError(f"string {column}s are not the int ones mapped")


def generate(ratings: int, workdir: Path) -> None:
    """Write ``workdir/events-int`` and ``workdir/events-string`` and ``workdir/data.json``."""
    import gc

    from als_spark import synthetic

    start = time.perf_counter()
    data = synthetic.generate_for_size(ratings, seed=SEED)
    info: dict[str, Any] = {"ratings": ratings, "seed": SEED, "users": len(data.user_groups), "items": len(data.items)}
    int_log = synthetic.interactions(data, ids="int", events=True, seed=SEED)
    int_frame = int_log.frame
    del int_log
    synthetic.write_parquet(int_frame, workdir / "events-int")
    string_log = synthetic.interactions(data, ids="string", events=True, seed=SEED)
    del data
    gc.collect()
    _check_same_events(int_frame, string_log)
    info["rows"] = len(int_frame)
    info["sample"] = {
        "int": int_frame.head(2).to_dict("records"),
        "string": string_log.frame.head(2).to_dict("records"),
    }
    del int_frame
    gc.collect()
    synthetic.write_parquet(string_log.frame, workdir / "events-string")
    del string_log
    gc.collect()
    info["generate_seconds"] = round(time.perf_counter() - start, 1)
    (workdir / "data.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    print(f"generated {info['rows']:,} event rows from {ratings:,} ratings in {info['generate_seconds']} s", flush=True)


def _generate_in_child(ratings: int, workdir: Path) -> None:
    """:func:`generate` in a fresh process, so the memory of the pandas frames is given back before the runs."""
    child = multiprocessing.get_context("spawn").Process(target=generate, args=(ratings, workdir))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"data generation failed (exit code {child.exitcode})")


def describe_data(workdir: Path) -> dict[str, Any]:
    """Rows, files and bytes of each event log, from the Parquet footers, plus ``data.json``."""
    import pyarrow.parquet as pq

    result: dict[str, Any] = {}
    meta = workdir / "data.json"
    if meta.exists():
        result["generated"] = json.loads(meta.read_text())
    for mode in MODES:
        files = sorted((workdir / f"events-{mode}").glob("part-*.parquet"))
        if not files:
            raise SystemExit(f"no Parquet files in {workdir / f'events-{mode}'}: run without --skip-generate")
        result[mode] = {
            "rows": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
            "files": len(files),
            "bytes": sum(f.stat().st_size for f in files),
            "schema": str(pq.read_schema(files[0])).splitlines()[:4],
        }
    if result["int"]["rows"] != result["string"]["rows"]:
        raise SystemExit(f"the logs differ in rows: {result['int']['rows']} against {result['string']['rows']}")
    return result


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One pipeline run: what was measured."""

    mode: str
    repeat: int
    command: list[str]
    started_at: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    other_cpu_seconds: float = 0.0
    peak_tree_rss_bytes: int = 0
    peak_process_hwm_bytes: int = 0
    peak_process: str = ""
    max_processes: int = 0
    peak_breakdown: list[tuple[str, int, int]] = field(default_factory=list)
    mirrored_samples: int = 0
    samples: int = 0
    wait4_maxrss_bytes: int = 0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    source_fingerprint: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    quick_jit: Any = None
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, int]]:
    """Every process in ``/proc``: pid -> (parent pid, its own user + system CPU time in clock ticks)."""
    found: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ... utime stime ...: comm may hold spaces and parentheses, so split after the last ')'
        fields = stat[stat.rindex(b")") + 2 :].split()
        found[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return found


def _tree(root: int) -> dict[int, tuple[int, int]]:
    """``root`` and all its descendants: pid -> (parent pid, CPU ticks so far)."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in processes:
            found[pid] = processes[pid]
        todo.extend(children.get(pid, ()))
    return found


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting for I/O) since boot."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def _status(pid: int) -> tuple[int, int, str, str] | None:
    """``(VmRSS, VmHWM)`` in bytes, the name and ``VmSize`` of ``pid``, or ``None`` if it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "VmRSS" not in values:
        return None
    rss = int(values["VmRSS"].split()[0]) * 1024
    hwm = int(values.get("VmHWM", "0 kB").split()[0]) * 1024
    return rss, hwm, values.get("Name", "?").strip(), values.get("VmSize", "").strip()


def source_fingerprint() -> str:
    """A hash of the package's sources and default configuration, as they are when a run starts."""
    digest = hashlib.sha256()
    for path in sorted([*(REPO / "als_spark").rglob("*.py"), *(REPO / "conf").glob("*.yaml")]):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def run_once(mode: str, repeat: int, workdir: Path, *, interval: float, timeout: float) -> Run:
    """One fresh ``python -m als_spark run`` on ``workdir/events-{mode}``, measured."""
    output = workdir / f"out-{mode}-{repeat}"
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "als_spark",
        "run",
        "--input",
        str(workdir / f"events-{mode}"),
        "--format",
        "parquet",
        "--output",
        str(output),
        "--set",
        EVENT_WEIGHTS,
        "--log-level",
        "INFO",
    ]
    run = Run(mode=mode, repeat=repeat, command=command)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    stderr_path = logs / f"run-{mode}-{repeat}.stderr"
    run.source_fingerprint = source_fingerprint()
    run.load_before = os.getloadavg()
    run.started_at = dt.datetime.now().isoformat(timespec="seconds")
    ended = threading.Event()
    waited: dict[str, Any] = {}
    with open(logs / f"run-{mode}-{repeat}.stdout", "wb") as out, open(stderr_path, "wb") as err:
        busy = _busy_seconds()
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, start_new_session=True)

        def wait() -> None:
            _, status, usage = os.wait4(child.pid, 0)  # the rusage of the child and the descendants it waited for
            waited.update(end=time.perf_counter(), status=status, usage=usage)
            ended.set()

        threading.Thread(target=wait, daemon=True).start()
        hwm: dict[int, tuple[int, str]] = {}
        cpu: dict[int, int] = {}
        while not ended.is_set():
            pids = _tree(child.pid)
            statuses = {pid: _status(pid) for pid in pids}
            total, breakdown = 0, []
            for pid, (ppid, ticks) in pids.items():
                cpu[pid] = max(cpu.get(pid, 0), ticks)
                status, parent = statuses[pid], statuses.get(ppid)
                if status is None:
                    continue
                if parent is not None and (status[0], status[3]) == (parent[0], parent[3]):
                    # A child caught between clone and exec (the JVM spawns chmod through jspawnhelper
                    # while it writes files) shares its parent's memory and reports the parent's RSS:
                    # counting it would count the JVM twice.
                    run.mirrored_samples += 1
                    continue
                total += status[0]
                breakdown.append((status[2], pid, status[0]))
                if status[1] > hwm.get(pid, (0, ""))[0]:
                    hwm[pid] = (status[1], status[2])
            run.samples += 1
            if total > run.peak_tree_rss_bytes:
                run.peak_tree_rss_bytes, run.peak_breakdown = total, sorted(breakdown, key=lambda b: -b[2])
            run.max_processes = max(run.max_processes, len(pids))
            if time.perf_counter() - start > timeout and not run.timed_out:
                run.timed_out = True
                os.killpg(child.pid, 9)  # the session this run started: its own processes only
            ended.wait(interval)
    run.wall_seconds = round(waited["end"] - start, 2)
    busy = _busy_seconds() - busy
    child.returncode = run.exit_code = os.waitstatus_to_exitcode(waited["status"])
    usage = waited["usage"]
    # The JVM is not waited for by the driver, so wait4's rusage misses it: sum what the samples saw.
    run.cpu_seconds = round(max(sum(cpu.values()) / _TICK, usage.ru_utime + usage.ru_stime), 1)
    run.other_cpu_seconds = round(max(busy - run.cpu_seconds, 0.0), 1)
    run.wait4_maxrss_bytes = usage.ru_maxrss * 1024
    if hwm:
        pid = max(hwm, key=lambda p: hwm[p][0])
        run.peak_process_hwm_bytes, run.peak_process = hwm[pid][0], hwm[pid][1]
    run.load_after = os.getloadavg()
    run_json = output / "run.json"
    if run_json.exists():
        record = json.loads(run_json.read_text())
        run.timings = {k: float(v) for k, v in record.get("timings_seconds", {}).items()}
        run.counts = record.get("counts", {})
        run.quick_jit = record.get("spark", {}).get("quick_jit")
    elif run.ok:
        run.exit_code = -1000  # exited 0 but wrote no run.json: a failure all the same
    if not run.ok:
        run.stderr_tail = "\n".join(stderr_path.read_text(errors="replace").splitlines()[-40:])
    shutil.rmtree(output, ignore_errors=True)
    return run


# --- the report ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the benchmark ran on."""
    with open("/proc/meminfo") as f:
        meminfo = dict(line.split(":", 1) for line in f)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout
    java = subprocess.run(["java", "-version"], capture_output=True, text=True) if shutil.which("java") else None
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "nproc": int(nproc) if nproc.isdigit() else nproc,
        "cpu_count": os.cpu_count(),
        "mem_total_bytes": int(meminfo["MemTotal"].split()[0]) * 1024,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "pyspark": metadata.version("pyspark"),
        "als_spark": metadata.version("als-spark"),
        "java_on_path": java.stderr.splitlines()[0] if java and java.stderr else None,
        "git_head": git,
        "git_dirty_files": len(dirty.splitlines()),
        "load_at_start": os.getloadavg(),
    }


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(runs: list[Run]) -> dict[str, Any]:
    """Medians over the complete pairs (repeat k has a successful int and a successful string run)."""
    good = {(r.mode, r.repeat): r for r in runs if r.ok}
    pairs = sorted({k for (_, k) in good if all((m, k) in good for m in MODES)})
    chosen = {m: [good[(m, k)] for k in pairs] for m in MODES}
    medians = {m: _median([r.wall_seconds for r in chosen[m]]) for m in MODES}
    cpu = {m: _median([r.cpu_seconds for r in chosen[m]]) for m in MODES}
    stages: list[str] = []
    for r in runs:
        stages += [s for s in r.timings if s not in stages]
    per_stage = {}
    for s in stages:
        med = {m: _median([r.timings[s] for r in chosen[m] if s in r.timings]) for m in MODES}
        per_stage[s] = {**med, "ratio": _ratio(med["string"], med["int"])}
    peak = max((r.peak_tree_rss_bytes for r in runs), default=0)
    ratio = _ratio(medians["string"], medians["int"])
    counts_differ = sorted(
        {
            key
            for r in chosen["string"]
            for key, value in r.counts.items()
            if any(key in i.counts and i.counts[key] != value for i in chosen["int"])
        }
    )
    return {
        "complete_pairs": pairs,
        "failed_runs": [f"{r.mode}-{r.repeat}" for r in runs if not r.ok],
        "median_wall_seconds": medians,
        "ratio": ratio,
        "median_cpu_seconds": cpu,
        "cpu_ratio": _ratio(cpu["string"], cpu["int"]),
        "per_stage_median_seconds": per_stage,
        "peak_tree_rss_bytes": peak,
        "peak_tree_rss_by_mode_bytes": {m: max((r.peak_tree_rss_bytes for r in chosen[m]), default=0) for m in MODES},
        "peak_process_hwm_bytes": max((r.peak_process_hwm_bytes for r in runs), default=0),
        "counts_differ_between_modes": counts_differ,
        "source_fingerprints": sorted({r.source_fingerprint for r in runs}),
        "ratio_pass": ratio is not None and ratio <= RATIO_LIMIT,
        "memory_pass": bool(runs) and peak < PEAK_LIMIT_BYTES,
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(report: dict[str, Any]) -> str:
    m, d, s, runs = report["machine"], report["data"], report["summary"], report["runs"]
    gen = d.get("generated", {})
    lines = [
        "# String ids against int ids at scale",
        "",
        f"- date {m['date']}, host {m['host']}, nproc {m['nproc']}, memory {m['mem_total_bytes'] / GB:.1f} GB, "
        f"load at start {', '.join(f'{x:.2f}' for x in m['load_at_start'])}",
        f"- Python {m['python']}, pyspark {m['pyspark']}, als-spark {m['als_spark']}, git {m['git_head'][:10]} "
        f"({m['git_dirty_files']} files modified in the working tree), source fingerprints {', '.join(s['source_fingerprints'])}",
        f"- data: {_count(gen.get('ratings'))} ratings -> int {d['int']['rows']:,} event rows "
        f"({d['int']['bytes'] / 2**20:.0f} MiB Parquet), string {d['string']['rows']:,} rows "
        f"({d['string']['bytes'] / 2**20:.0f} MiB); {_count(gen.get('users'))} users, {_count(gen.get('items'))} items",
        f"- command: `{shlex.join(report['command'])}`",
        f"- each run: `{shlex.join(runs[0]['command'][1:]) if runs else ''}` (and the same with events-string; "
        "defaults otherwise: rank 64, 15 iterations)",
        "",
        "## Runs (in the order they ran)",
        "",
    ]
    lines += _table(
        [
            "mode",
            "#",
            "exit",
            "wall s",
            "CPU s",
            "other CPU s",
            "peak tree RSS GB",
            "max proc HWM GB",
            "procs",
            "mirrors skipped",
            "load before",
            "load after",
        ],
        [
            [
                r["mode"],
                str(r["repeat"]),
                "timeout" if r["timed_out"] else str(r["exit_code"]),
                _fmt(r["wall_seconds"]),
                _fmt(r["cpu_seconds"]),
                _fmt(r["other_cpu_seconds"]),
                _fmt(r["peak_tree_rss_bytes"] / GB, 2),
                f"{r['peak_process_hwm_bytes'] / GB:.2f} ({r['peak_process']})",
                str(r["max_processes"]),
                str(r.get("mirrored_samples", "-")),
                " ".join(f"{x:.2f}" for x in r["load_before"]),
                " ".join(f"{x:.2f}" for x in r["load_after"]),
            ]
            for r in runs
        ],
    )
    med, cpu = s["median_wall_seconds"], s["median_cpu_seconds"]
    lines += [
        "",
        f"## Medians over {len(s['complete_pairs'])} complete pairs",
        "",
        *_table(
            ["", "int", "string", "string / int"],
            [
                ["wall s", _fmt(med["int"]), _fmt(med["string"]), _fmt(s["ratio"], 3)],
                ["CPU s (tree)", _fmt(cpu["int"]), _fmt(cpu["string"]), _fmt(s["cpu_ratio"], 3)],
                *[
                    [f"stage {name}", _fmt(v["int"]), _fmt(v["string"]), _fmt(v["ratio"], 3)]
                    for name, v in s["per_stage_median_seconds"].items()
                ],
            ],
        ),
        "",
        f"Peak tree RSS: {s['peak_tree_rss_bytes'] / GB:.2f} GB (int {s['peak_tree_rss_by_mode_bytes']['int'] / GB:.2f}, "
        f"string {s['peak_tree_rss_by_mode_bytes']['string'] / GB:.2f}); largest single-process VmHWM "
        f"{s['peak_process_hwm_bytes'] / GB:.2f} GB. GB = 10^9 bytes.",
    ]
    top = max(runs, key=lambda r: r["peak_tree_rss_bytes"], default=None)
    if top and top.get("peak_breakdown"):
        parts = ", ".join(f"{name} {rss / GB:.2f}" for name, _, rss in top["peak_breakdown"][:5])
        lines += ["", f"At the largest peak ({top['mode']} #{top['repeat']}): {parts} GB."]
    if s["failed_runs"]:
        lines += ["", f"Failed runs: {', '.join(s['failed_runs'])} (stderr tails in report.json)"]
    if s["counts_differ_between_modes"]:
        lines += ["", f"run.json counts that differ between the modes: {', '.join(s['counts_differ_between_modes'])}"]
    if len(s["source_fingerprints"]) > 1:
        lines += ["", "WARNING: the als_spark sources changed between runs (several fingerprints)."]
    verdict = "PASS" if s["ratio_pass"] and s["memory_pass"] else "FAIL"
    lines += [
        "",
        f"**{verdict}**: ratio {_fmt(s['ratio'], 3)} {'<=' if s['ratio_pass'] else 'NOT <='} {RATIO_LIMIT} "
        f"({'pass' if s['ratio_pass'] else 'fail'}); peak {s['peak_tree_rss_bytes'] / GB:.2f} GB "
        f"{'<' if s['memory_pass'] else 'NOT <'} {PEAK_LIMIT_BYTES / GB:.0f} GB ({'pass' if s['memory_pass'] else 'fail'})"
        + ("" if report["finished"] else " -- INCOMPLETE: the benchmark had not finished"),
        "",
    ]
    return "\n".join(lines)


def write_report(workdir: Path, report: dict[str, Any]) -> str:
    (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (workdir / "report.md").write_text(text)
    return text


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--ratings", type=int, default=DEFAULT_RATINGS, help="ratings to generate (default %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode, alternating (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ids-scale"), help="data, logs and report")
    parser.add_argument("--skip-generate", action="store_true", help="reuse WORKDIR/events-int and events-string")
    parser.add_argument("--interval", type=float, default=0.5, help="memory sampling period, seconds")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="kill a run after this many seconds")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv]

    info = machine()
    print(json.dumps(info, indent=2), flush=True)
    if not args.skip_generate:
        _generate_in_child(args.ratings, workdir)
    data = describe_data(workdir)
    for mode in MODES:
        print(
            f"events-{mode}: {data[mode]['rows']:,} rows in {data[mode]['files']} files, {data[mode]['bytes']:,} bytes"
        )
    own = _status(os.getpid())
    print(f"benchmark process RSS before the runs: {own[0] / 2**20 if own else 0:.0f} MiB", flush=True)
    print(f"children's max RSS so far: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20:.2f} GiB")

    runs: list[Run] = []
    report: dict[str, Any] = {"command": command, "machine": info, "data": data, "runs": [], "finished": False}
    for repeat in range(1, args.repeats + 1):
        for mode in MODES:
            print(
                f"[{dt.datetime.now():%H:%M:%S}] run {mode} #{repeat} (load {os.getloadavg()[0]:.2f}) ...", flush=True
            )
            run = run_once(mode, repeat, workdir, interval=args.interval, timeout=args.timeout)
            runs.append(run)
            print(
                f"[{dt.datetime.now():%H:%M:%S}]   exit {run.exit_code}{' TIMEOUT' if run.timed_out else ''}, "
                f"wall {run.wall_seconds:.1f} s, CPU {run.cpu_seconds:.0f} s (others {run.other_cpu_seconds:.0f} s), "
                f"peak tree RSS {run.peak_tree_rss_bytes / GB:.2f} GB, stages {run.timings}",
                flush=True,
            )
            if not run.ok:
                print(f"  stderr tail:\n{run.stderr_tail}", flush=True)
            report.update(runs=[asdict(r) for r in runs], summary=summarize(runs))
            write_report(workdir, report)
    report["finished"] = True
    report["machine"]["load_at_end"] = os.getloadavg()
    text = write_report(workdir, report)
    print(text, flush=True)
    print(f"wrote {workdir / 'report.json'} and {workdir / 'report.md'}")
    return 0 if report["summary"]["ratio_pass"] and report["summary"]["memory_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
