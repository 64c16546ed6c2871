"""Property check: folding a training user's own ratings into the model gives back their fitted vector and list.

What it checks
    Spark's implicit ALS ends every iteration by solving each user from the final item factors,
    and ``als-spark recommend --model DIR --input EVENTS`` (:func:`als_spark.serving.fold_in_run`)
    solves the same normal equations (:mod:`als_spark.foldin`). So when EVENTS are the training
    ratings themselves, every user's folded vector must equal their fitted one up to float
    rounding (``||x_fold - x_fit|| / ||x_fit|| <= --tolerance``, default 1e-4), and every user's
    recommendation list (item ids in rank order) must be the same.

How
    1. ``als-spark run --input INPUT --output WORKDIR/model`` with the default settings;
    2. ``als-spark recommend --model WORKDIR/model --input INPUT --output WORKDIR/folded``;
    3. both outputs' ``user_factors`` and ``recommendations`` are read with pyarrow, and the script
       reports the users compared, the max / median / 99th percentile of the relative difference,
       how many lists are identical (and, for a few that are not, both lists with their scores, so
       near-ties show), the largest score difference, the users per (fit source, fold source),
       the users served by popularity in both (training users with no rating >= 4, who have no
       vector on either side) and whether their lists are equal too, and each command's wall time.

    The Markdown summary gives the date, the machine (``nproc``, CPU, the load average before and
    after) and the versions; it is printed and written to ``WORKDIR/summary.md``. The commands'
    output goes to ``WORKDIR/logs``. The exit code is 1 when a user with a fitted vector is beyond
    the tolerance, has no folded vector, or any list differs; 2 when a command fails.

Usage::

    python benchmarks/foldin_property.py                          # MovieLens 100k, /tmp/foldin-check
    python benchmarks/foldin_property.py --workdir /tmp/x --skip-run   # re-read the outputs of a previous run
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from machine import cpu_model, load  # benchmarks/machine.py, beside this script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = "/work/shared/data/ml-100k/u.data"
DEFAULT_WORKDIR = "/tmp/foldin-check"
#: The sources a user's list may have in the fitted output and in the folded one, for the same user.
SAME_SOURCE = {("als", "fold_in"), ("popularity", "popularity")}


# --- running the commands --------------------------------------------------------------------


def _als_spark() -> list[str]:
    """The ``als-spark`` script beside this interpreter, else ``python -m als_spark``."""
    script = Path(sys.executable).parent / "als-spark"
    return [str(script)] if script.exists() else [sys.executable, "-m", "als_spark"]


def _run(name: str, command: list[str], logs: Path, timeout: float) -> float:
    """Run ``command`` with its output in ``logs/NAME.log``; its wall seconds. Exits 2 if it fails."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    print(f"[{dt.datetime.now():%H:%M:%S}] {shlex.join(command)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    seconds = time.perf_counter() - start
    print(f"[{dt.datetime.now():%H:%M:%S}] {name}: exit {done.returncode} after {seconds:.1f} s", file=sys.stderr)
    if done.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-6000:]
        print(f"\n{name} failed (exit {done.returncode}); the end of {log_path}:\n{tail}", file=sys.stderr)
        raise SystemExit(2)
    return seconds


# --- the machine -----------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git() -> str:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True)
    return f"{head.stdout.strip() or '?'} ({len(dirty.stdout.splitlines())} paths modified or new in the working tree)"


def source_fingerprint() -> str:
    """A hash of the package's sources and default configuration (another developer may be editing them)."""
    digest = hashlib.sha256()
    for path in sorted([*(REPO / "als_spark").rglob("*.py"), *(REPO / "conf").glob("*.yaml")]):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


# --- reading the outputs ---------------------------------------------------------------------


def _read(output: Path, name: str) -> pd.DataFrame:
    path = output / name
    if not path.is_dir():
        raise SystemExit(f"{path} is missing: did the command write it?")
    return pq.read_table(path).to_pandas()


def _factors(output: Path) -> dict[int, np.ndarray]:
    table = _read(output, "user_factors")
    return {int(u): np.asarray(f, dtype=np.float64) for u, f in zip(table["id"], table["features"])}


def _lists(recs: pd.DataFrame) -> dict[int, tuple[int, ...]]:
    ordered = recs.sort_values(["user_id", "rank"])
    return {int(u): tuple(int(i) for i in g["item_id"]) for u, g in ordered.groupby("user_id", sort=False)}


def _sources(recs: pd.DataFrame) -> dict[int, str]:
    per_user = recs.groupby("user_id")["source"].agg(lambda s: ",".join(sorted(set(s))))
    return {int(u): str(s) for u, s in per_user.items()}


def _run_json(output: Path) -> dict[str, Any]:
    path = output / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# --- the comparison --------------------------------------------------------------------------


def compare(model: Path, folded: Path, tolerance: float, show: int) -> dict[str, Any]:
    """Everything the summary reports about ``model`` (the fit) against ``folded`` (the fold-in)."""
    fit_x, fold_x = _factors(model), _factors(folded)
    both = sorted(set(fit_x) & set(fold_x))
    rel = pd.Series(
        [np.linalg.norm(fold_x[u] - fit_x[u]) / np.linalg.norm(fit_x[u]) for u in both], index=both, dtype=float
    )
    fit_recs, fold_recs = _read(model, "recommendations"), _read(folded, "recommendations")
    fit_lists, fold_lists = _lists(fit_recs), _lists(fold_recs)
    fit_src, fold_src = _sources(fit_recs), _sources(fold_recs)
    users = sorted(set(fit_lists) | set(fold_lists))
    differ = [u for u in users if fit_lists.get(u) != fold_lists.get(u)]
    pairs = pd.Series([(fit_src.get(u, "-"), fold_src.get(u, "-")) for u in users], index=users)
    odd_source = [u for u in users if pairs[u] not in SAME_SOURCE]
    popular = [u for u in users if pairs[u] == ("popularity", "popularity")]

    # scores, row by row: (user, rank) on both sides
    joined = fit_recs.merge(fold_recs, on=["user_id", "rank"], suffixes=("_fit", "_fold"), how="outer")
    same_item = joined["item_id_fit"] == joined["item_id_fold"]
    gap = (joined["score_fit"] - joined["score_fold"]).abs()
    vector_rows = joined["source_fit"] != "popularity"
    titles_equal = bool(
        "title" in fit_recs
        and "title" in fold_recs
        and (joined["title_fit"].fillna("") == joined["title_fold"].fillna("")).all()
    )

    # a few differing lists, side by side, with the gaps between neighbouring scores of the fit's list
    shown = []
    for u in differ[:show]:
        a = fit_recs[fit_recs["user_id"] == u].sort_values("rank")
        b = fold_recs[fold_recs["user_id"] == u].sort_values("rank")
        side = a[["rank", "item_id", "score"]].merge(
            b[["rank", "item_id", "score"]], on="rank", how="outer", suffixes=("_fit", "_fold")
        )
        first = side.index[side["item_id_fit"] != side["item_id_fold"]]
        scores = a["score"].to_numpy(dtype=np.float64)
        shown.append(
            {
                "user": u,
                "rel": float(rel.get(u, np.nan)),
                "first_differing_rank": int(side.loc[first[0], "rank"]) if len(first) else None,
                "min_adjacent_gap_fit": float(np.min(-np.diff(scores))) if len(scores) > 1 else None,
                "side": side,
            }
        )

    beyond = rel[rel > tolerance]
    missing_fold = sorted(set(fit_x) - set(fold_x))
    extra_fold = sorted(set(fold_x) - set(fit_x))
    return {
        "fit_vectors": len(fit_x),
        "fold_vectors": len(fold_x),
        "compared": len(both),
        "missing_fold": missing_fold,
        "extra_fold": extra_fold,
        "rel": rel,
        "beyond": beyond,
        "worst": rel.sort_values(ascending=False).head(5),
        "users_with_lists": len(users),
        "fit_list_users": len(fit_lists),
        "fold_list_users": len(fold_lists),
        "identical": len(users) - len(differ),
        "differ": differ,
        "shown": shown,
        "source_pairs": pairs.value_counts().sort_index(),
        "odd_source": odd_source,
        "popular": popular,
        "popular_equal": sum(fit_lists.get(u) == fold_lists.get(u) for u in popular),
        "popular_with_vector": [u for u in popular if u in fit_x or u in fold_x],
        "rows": len(joined),
        "rows_same_item": int(same_item.sum()),
        "max_score_diff": float(gap.max()) if len(gap) else float("nan"),
        "max_score_diff_same_item": float(gap[same_item].max()) if same_item.any() else float("nan"),
        "max_score_diff_vectors": float(gap[vector_rows & same_item].max()) if (vector_rows & same_item).any() else 0.0,
        "max_score_diff_popularity": float(gap[~vector_rows].max()) if (~vector_rows).any() else 0.0,
        "titles_equal": titles_equal,
    }


# --- the report ------------------------------------------------------------------------------


def _ids(users: list[int], limit: int = 20) -> str:
    if not users:
        return "none"
    shown = ", ".join(str(u) for u in users[:limit])
    return shown + (f", ... ({len(users)} in all)" if len(users) > limit else "")


def markdown(c: dict[str, Any], info: dict[str, Any], tolerance: float) -> str:
    rel: pd.Series = c["rel"]
    q = rel.quantile([0.5, 0.99]) if len(rel) else pd.Series({0.5: np.nan, 0.99: np.nan})
    vectors_ok = len(c["beyond"]) == 0 and not c["missing_fold"] and c["compared"] > 0
    lists_ok = not c["differ"]
    verdict = "PASS" if vectors_ok and lists_ok else "FAIL"
    lines = [
        f"# Fold-in of the training ratings against the fit: {verdict}",
        "",
        f"- date {info['date']}; machine: nproc {info['nproc']}, {info['cpu']}; load average (1/5/15 min) "
        f"{info['load_before']} before, {info['load_after']} after",
        f"- Python {platform.python_version()}, pyspark {_version('pyspark')}, als-spark {_version('als-spark')}, "
        f"numpy {np.__version__}, pandas {pd.__version__}, pyarrow {_version('pyarrow')}; git {info['git']}; "
        f"source fingerprint {info['fingerprint_before']} before, {info['fingerprint_after']} after"
        + (
            " (the sources CHANGED during the check)" if info["fingerprint_before"] != info["fingerprint_after"] else ""
        ),
        f"- input `{info['input']}`; work directory `{info['workdir']}`; command `{info['command']}`",
        "",
        "| command | wall s | stages (run.json, s) |",
        "|---|---:|---|",
    ]
    for _, command, seconds, stages in info["commands"]:
        lines.append(f"| `{command}` | {seconds} | {', '.join(f'{k} {v}' for k, v in stages.items())} |")
    fold_counts = info.get("fold_counts", {})
    if fold_counts:
        shown = ", ".join(f"{k} {v}" for k, v in fold_counts.items() if not isinstance(v, dict))
        lines += ["", f"Fold-in run.json counts: {shown}."]
    lines += [
        "",
        "## Vectors",
        "",
        f"- users with a fitted vector: {c['fit_vectors']}; with a folded vector: {c['fold_vectors']}; "
        f"**compared: {c['compared']}**",
        f"- fitted but not folded: {_ids(c['missing_fold'])}; folded but not fitted: {_ids(c['extra_fold'])}",
        "",
        "| ‖x_fold − x_fit‖ / ‖x_fit‖ | value |",
        "|---|---:|",
        f"| max | {rel.max():.3e} |",
        f"| median | {q[0.5]:.3e} |",
        f"| 99th percentile | {q[0.99]:.3e} |",
        f"| users above {tolerance:g} | {len(c['beyond'])} |",
        "",
        "Largest: " + ", ".join(f"user {u} {v:.3e}" for u, v in c["worst"].items()) + ".",
        "",
        "## Recommendation lists",
        "",
        f"- users with a list: {c['fit_list_users']} in the fit, {c['fold_list_users']} folded; "
        f"**identical lists (item ids in rank order): {c['identical']} of {c['users_with_lists']}**; "
        f"differing: {_ids(c['differ'])}",
        f"- rows compared by (user, rank): {c['rows']}, with the same item {c['rows_same_item']}; "
        f"max |score_fit − score_fold| {c['max_score_diff']:.3e} over all rows, {c['max_score_diff_same_item']:.3e} "
        f"where the item is the same ({c['max_score_diff_vectors']:.3e} on als/fold_in rows, "
        f"{c['max_score_diff_popularity']:.3e} on popularity rows); titles equal: {c['titles_equal']}",
        "",
        "| source in the fit | source folded | users |",
        "|---|---|---:|",
    ]
    for (a, b), n in c["source_pairs"].items():
        lines.append(f"| {a} | {b} | {n} |")
    lines += [
        "",
        f"- users whose source pair is other than als→fold_in or popularity→popularity: {_ids(c['odd_source'])}",
        f"- served by popularity on both sides (no rating >= 4): {_ids(c['popular'])}; lists equal for "
        f"{c['popular_equal']} of {len(c['popular'])}; of them with a vector on either side: "
        f"{_ids(c['popular_with_vector'])}",
    ]
    for s in c["shown"]:
        gap = s["min_adjacent_gap_fit"]
        gap_text = "-" if gap is None else f"{gap:.3e}"
        lines += [
            "",
            f"### User {s['user']}: rel {s['rel']:.3e}, first difference at rank {s['first_differing_rank']}, "
            f"smallest gap between neighbouring fitted scores {gap_text}",
            "",
            "| rank | item (fit) | score (fit) | item (fold) | score (fold) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for _, r in s["side"].iterrows():
            lines.append(
                f"| {int(r['rank'])} | {r['item_id_fit']:.0f} | {r['score_fit']:.9g} | {r['item_id_fold']:.0f} | "
                f"{r['score_fold']:.9g} |"
            )
    lists_text = "all identical" if lists_ok else f"{len(c['differ'])} DIFFER"
    lines += [
        "",
        f"**{verdict}**: vectors {'within' if vectors_ok else 'NOT within'} {tolerance:g} relative for every "
        f"fitted user; lists {lists_text}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--input", default=DEFAULT_INPUT, help=f"the training ratings (default {DEFAULT_INPUT})")
    parser.add_argument(
        "--workdir", default=DEFAULT_WORKDIR, help=f"where model/, folded/ and logs/ go (default {DEFAULT_WORKDIR})"
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative vector difference (1e-4)")
    parser.add_argument("--show", type=int, default=5, help="differing lists to print side by side (default 5)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per command (default 3600)")
    parser.add_argument(
        "--skip-run", action="store_true", help="compare the outputs already in WORKDIR instead of running the commands"
    )
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    model, folded, logs = workdir / "model", workdir / "folded", workdir / "logs"
    workdir.mkdir(parents=True, exist_ok=True)

    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    info: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": nproc or os.cpu_count(),
        "cpu": cpu_model(),
        "load_before": load(),
        "git": _git(),
        "fingerprint_before": source_fingerprint(),
        "input": args.input,
        "workdir": str(workdir),
        "command": shlex.join([sys.executable, *sys.argv]),
        "commands": [],
    }
    cli = _als_spark()
    commands = [
        ("run", [*cli, "run", "--input", args.input, "--output", str(model)]),
        ("recommend", [*cli, "recommend", "--model", str(model), "--input", args.input, "--output", str(folded)]),
    ]
    for name, command in commands:
        shown = shlex.join(["als-spark", *command[len(cli) :]])
        output = model if name == "run" else folded
        if args.skip_run:
            seconds = "(not run)"
        else:
            shutil.rmtree(output, ignore_errors=True)
            seconds = f"{_run(name, command, logs, args.timeout):.1f}"
        info["commands"].append((name, shown, seconds, _run_json(output).get("timings_seconds", {})))
    info["fold_counts"] = _run_json(folded).get("counts", {})
    result = compare(model, folded, args.tolerance, args.show)
    info["load_after"] = load()
    info["fingerprint_after"] = source_fingerprint()
    text = markdown(result, info, args.tolerance)
    (workdir / "summary.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    failed = len(result["beyond"]) or result["missing_fold"] or result["differ"] or not result["compared"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
