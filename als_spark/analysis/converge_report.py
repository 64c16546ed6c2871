"""The Markdown report and the plot of ``als-spark converge`` (:mod:`als_spark.analysis.converge`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from als_spark.analysis.focus import focus_heading, lists_table
from als_spark.analysis.lists import MEASURES, RECOMMENDATIONS, SIMILAR_ITEMS, SIMILAR_USERS, TABLE, TABLES, TITLES
from als_spark.analysis.reports import blocks, figure, fmt, md_table, png_bytes

#: Kinds of compared pairs of fits: consecutive counts, each count against the largest, two seeds.
STEP, TO_LAST, SEED = "step", "to_last", "seed"
#: The agreement columns of the report's tables: each list (TABLES' order) by each measure (MEASURES').
_AGREEMENT_HEADS = [f"{table} {measure}" for table in ("users", "items", "recs") for measure in ("Jaccard", "RBO")]


def converge_markdown(summary: dict[str, Any]) -> str:
    """The Markdown report of :func:`run_converge` from its ``summary``."""
    cfg, par = summary["config"]["als"], summary["parameters"]
    steps = pd.DataFrame(summary["steps"])
    out = [
        f"# Convergence: rank {cfg['rank']}, reg_param {cfg['reg_param']:g}, alpha {cfg['alpha']:g}, seed {summary['seed']}\n"
    ]
    data = summary["data"]
    out.append(
        f"Fits at {', '.join(map(str, summary['iterations']))} iterations"
        + (
            f", plus seed {summary['seed_reference']} at {summary['iterations'][-1]}"
            if summary["seed_reference"]
            else ""
        )
        + f"; {data['interactions']:,} interactions of {data['users']:,} users and {data['items']:,} items"
        + (
            f" (the train side of a per-user random holdout, {par['test_fraction']:g} held out, split seed {par['split_seed']})"
            if par["holdout"]
            else " (all interactions)"
        )
        + f". Lists: {par['k']} similar users, {par['k']} similar items, top {par['top_n']} recommendations. "
        f"Spark BLAS: {summary['spark']['blas']}, {summary['spark']['blocks']} ALS blocks.\n"
    )
    spi = summary["seconds_per_iteration"]
    if spi is not None:
        out.append(
            f"\nTime per iteration: **{spi:.2f} s** (slope of fit time against iterations; fixed cost per fit "
            f"{summary['overhead_seconds']:.1f} s).\n"
        )

    def measure_row(sub: pd.DataFrame, table: str, measure: str) -> str:
        hit = sub[sub[TABLE] == table]
        return fmt(float(hit[measure].iloc[0])) if not hit.empty else "–"

    out.append("\n## From one count to the next\n")
    fits = {(r["iterations"], r["seed"]): r for r in summary["fits"]}
    head = ["from → to", *_AGREEMENT_HEADS, f"NDCG@{par['top_n']} at to", "Δ NDCG"]
    rows = []
    step_rows = steps[steps["kind"] == STEP] if not steps.empty else steps
    for (a, b), sub in step_rows.groupby(["from_iter", "to_iter"], sort=True):
        na, nb = fits.get((a, summary["seed"]), {}), fits.get((b, summary["seed"]), {})
        delta = (nb.get("ndcg") - na.get("ndcg")) if nb.get("ndcg") is not None and na.get("ndcg") is not None else None
        rows.append(
            [f"{a} → {b}"]
            + [measure_row(sub, t, m) for t in TABLES for m in MEASURES]
            + [fmt(nb.get("ndcg"), 4), f"{delta:+.4f}" if delta is not None else "–"]
        )
    seed_rows = steps[steps["kind"] == SEED] if not steps.empty else steps
    if not seed_rows.empty:
        n = summary["iterations"][-1]
        other = fits.get((n, summary["seed_reference"]), {})
        rows.append(
            [f"seed {summary['seed']} vs {summary['seed_reference']} at {n}"]
            + [measure_row(seed_rows, t, m) for t in TABLES for m in MEASURES]
            + [fmt(other.get("ndcg"), 4), "–"]
        )
    out.append(md_table(head, rows))
    out.append(
        "\nAgreement of the two fits' lists, mean over entities (1 = identical lists). The last row is the seed "
        "noise: two seeds at the largest count.\n"
    )
    settled = summary["settled_at"]
    if summary["seed_reference"]:
        lines = []
        for table in TABLES:
            at = settled.get(table)
            lines.append(
                f"- {TITLES[table]}: "
                + (
                    f"from {at} iterations on, each further step moves the lists less than a new seed does."
                    if at is not None
                    else "the last step still moves the lists more than a new seed does."
                )
            )
        out.append("\n" + "\n".join(lines) + "\n")

    out.append("\n## Each count against the largest\n")
    last_rows = steps[steps["kind"] == TO_LAST] if not steps.empty else steps
    rows = []
    for a, sub in last_rows.groupby("from_iter", sort=True):
        rows.append(
            [f"{a} vs {summary['iterations'][-1]}"]
            + [measure_row(sub, t, m) for t in TABLES for m in MEASURES]
            + [fmt(float(sub["identical"].min()), 3)]
        )
    out.append(md_table(["fits", *_AGREEMENT_HEADS, "min share identical"], rows))

    out.append("\n## Fits\n")
    out.append(
        md_table(
            [
                "iterations",
                "seed",
                "fit seconds",
                f"NDCG@{par['top_n']}",
                f"precision@{par['top_n']}",
                f"recall@{par['top_n']}",
                f"MAP@{par['top_n']}",
            ],
            [
                [
                    r["iterations"],
                    r["seed"],
                    f"{r['seconds']:.1f}",
                    fmt(r["ndcg"], 4),
                    fmt(r["precision"], 4),
                    fmt(r["recall"], 4),
                    fmt(r["map"], 4),
                ]
                for r in summary["fits"]
            ],
        )
    )
    columns = [
        (str(r["run"]), f"{r['iterations']} it" + ("" if r["seed"] == summary["seed"] else f", seed {r['seed']}"))
        for r in summary["fits"]
    ]
    for fr in summary["focus"]:
        out.append(f"\n## {focus_heading(fr)}\n")
        out.append(lists_table(fr, columns))
    return blocks(out)


def _count_axis(ax: Any, counts: Sequence[int]) -> None:
    """A log-scaled iterations axis labelled with the fitted counts only."""
    ax.set_xscale("log")
    ax.set_xticks(list(counts), [str(c) for c in counts])
    ax.minorticks_off()


def plot_png(summary: dict[str, Any]) -> bytes | None:
    """Agreement with the previous count and with the largest, and NDCG, against iterations; ``None`` without matplotlib."""
    fig = figure("converge.png", figsize=(12.0, 3.8))
    if fig is None:
        return None
    steps = pd.DataFrame(summary["steps"])
    axes = fig.subplots(1, 3)
    colors = {SIMILAR_USERS: "tab:blue", SIMILAR_ITEMS: "tab:green", RECOMMENDATIONS: "tab:red"}
    for ax, kind, title in (
        (axes[0], STEP, "Jaccard with the previous count"),
        (axes[1], TO_LAST, "Jaccard with the largest count"),
    ):
        for table in TABLES:
            sub = steps[(steps["kind"] == kind) & (steps[TABLE] == table)] if not steps.empty else steps
            if sub.empty:
                continue
            x = sub["to_iter"] if kind == STEP else sub["from_iter"]
            ax.plot(x, sub["jaccard"], marker="o", color=colors[table], label=TITLES[table])
            seed = steps[(steps["kind"] == SEED) & (steps[TABLE] == table)]
            if not seed.empty:
                ax.axhline(float(seed["jaccard"].iloc[0]), color=colors[table], linestyle="--", linewidth=0.8)
        _count_axis(ax, summary["iterations"])
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("iterations")
        ax.set_title(title + "\n(dashed: two seeds at the largest count)", fontsize="medium")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    main = [r for r in summary["fits"] if r["seed"] == summary["seed"] and r.get("ndcg") is not None]
    if main:
        axes[2].plot([r["iterations"] for r in main], [r["ndcg"] for r in main], marker="o", color="k")
        _count_axis(axes[2], summary["iterations"])
        axes[2].set_title(f"holdout NDCG@{summary['parameters']['top_n']}", fontsize="medium")
        axes[2].set_xlabel("iterations")
        axes[2].grid(True, alpha=0.3)
    else:
        axes[2].set_axis_off()
    return png_bytes(fig, dpi=90)
