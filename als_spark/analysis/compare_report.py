"""The Markdown report and the plot of ``als-spark compare`` (:mod:`als_spark.analysis.compare`)."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pandas as pd

from als_spark.analysis.focus import focus_heading, lists_table
from als_spark.analysis.lists import MEASURE_TITLES, MEASURES, RECOMMENDATIONS, TABLE, TABLES, TITLES
from als_spark.analysis.reports import blocks, figure, fmt, md_table, png_bytes

#: The verdicts (the test is in :mod:`als_spark.analysis.compare`).
DIFFERENT = "different beyond seed noise"
NOT_DISTINGUISHABLE = "not distinguishable from seed noise"


def compare_markdown(summary: dict[str, Any]) -> str:
    """The Markdown report of :func:`run_compare` from its ``summary``."""
    na, nb = summary["names"]["a"], summary["names"]["b"]
    par = summary["parameters"]
    out = [f"# {na} vs {nb}: do the lists differ beyond seed noise?\n"]
    out.append(
        f"{summary['data']['interactions']:,} interactions, {summary['data']['users']:,} users, "
        f"{summary['data']['items']:,} items. {na}: seeds {', '.join(map(str, summary['seeds']['a']))}; "
        f"{nb}: seeds {', '.join(map(str, summary['seeds']['b']))}. Neighbours k = {par['k']} (self excluded, "
        f"equal similarities to the smaller id), recommendations top {par['top_n']}. Spark BLAS: "
        f"{summary['spark']['blas']}, ALS blocks {summary['spark']['blocks']['a']} / {summary['spark']['blocks']['b']}.\n"
    )
    diffs = summary["differences"]
    out.append(
        md_table(["setting", na, nb], diffs) if diffs else "The two configurations differ only in their seeds.\n"
    )

    out.append("## Verdict\n")
    tests = summary["tests"]
    out.append(md_table(["table", "verdict"], [(TITLES[t], f"**{v}**") for t, v in summary["verdicts"].items()]))
    t0 = tests[0]["test"]
    lvl = max(par["alpha"], t0["smallest_p"])
    out.append(
        f"\n**Test.** Exact permutation test over the fits: for each pair of fits, the mean agreement of the two "
        f"fits' lists over all entities; statistic = min(mean within {na}, mean within {nb}) - mean between "
        f"(within: pairs of fits of one configuration, different seeds; between: one fit of each). The p-value is "
        f"the share of the {t0['labelings']} ways to split the {len(summary['runs'])} fits into two groups of "
        f"{len(summary['seeds']['a'])} and {len(summary['seeds']['b'])} whose statistic is at least the observed "
        f"one. *Different beyond seed noise* when the statistic is positive and p ≤ {lvl:.3g} "
        f"(= max(alpha {par['alpha']:g}, smallest attainable p {t0['smallest_p']:.3g})): under the hypothesis that "
        f"the configurations give the same lists up to seed noise, this happens with probability at most {lvl:.3g}"
        + (
            ", whatever the dependence between entities. With this few seeds the observed split must be the most "
            "extreme one; more seeds lower the smallest attainable p (4 seeds each: 0.029)."
            if t0["smallest_p"] > par["alpha"]
            else ", whatever the dependence between entities."
        )
        + f" The verdict is on {MEASURE_TITLES[par['primary_measure']]}@k; RBO is tested the same way. "
        f"**Effect sizes**: the statistic (in agreement units) and, per entity, the paired dominance against each "
        f"configuration: the share of entities whose lists agree more within it than between, minus the opposite "
        f"share (+1: every entity agrees less across configurations).\n\n"
    )
    head = [
        "table",
        "measure",
        f"within {na}",
        f"within {nb}",
        "between",
        "effect: min(within) - between",
        "p (fit level)",
        f"dominance vs {na}",
        f"dominance vs {nb}",
        "verdict",
    ]
    rows = []
    for t in tests:
        x = t["test"]
        rows.append(
            (
                TITLES[t["table"]],
                f"{MEASURE_TITLES[t['measure']]}@{t['k']}",
                fmt(x["within_a"]),
                fmt(x["within_b"]),
                fmt(x["between"]),
                f"{x['statistic']:+.3f}",
                f"{x['p_value']:.3f}",
                fmt(t["dominance_a"], 2),
                fmt(t["dominance_b"], 2),
                t["verdict"],
            )
        )
    out.append(md_table(head, rows))

    out.append("\n## Cost and quality\n")
    cost_rows = []
    h0: dict[str, Any] = next(iter(summary["holdout"].values()), {})
    for side in ("a", "b"):
        c, h = summary["costs"][side], summary["holdout"].get(side, {})
        cost_rows.append(
            (
                summary["names"][side],
                c["rank"],
                c["iterations"],
                fmt(c["seconds_per_iteration"], 2),
                ", ".join(f"{s:.1f}" for s in c["fit_seconds"]),
                fmt(h.get("ndcg"), 4),
                fmt(h.get("precision"), 4),
                fmt(h.get("recall"), 4),
                fmt(h.get("map"), 4),
            )
        )
    hk = h0.get("k", "k")
    out.append(
        md_table(
            [
                "config",
                "rank",
                "iterations",
                "s / iteration",
                "fit seconds (each seed)",
                f"NDCG@{hk}",
                f"precision@{hk}",
                f"recall@{hk}",
                f"MAP@{hk}",
            ],
            cost_rows,
        )
    )
    out.append(
        f"\nTime per iteration: {summary['costs']['a']['measured_as']} ({na}); "
        f"{summary['costs']['b']['measured_as']} ({nb}). Fit seconds include the fit's fixed cost. "
        + (
            f"Holdout: per-user random split, {h0.get('test_fraction', 0):g} of each user's interactions held out "
            f"(split seed {h0.get('split_seed')}), one fit per configuration on the train side with its own als.seed, "
            f"train items excluded from the recommendations.\n"
            if summary["holdout"]
            else "No holdout evaluation.\n"
        )
    )

    columns = [
        (str(r["run"]), f"{r['config']} seed {r['seed']}") for r in sorted(summary["runs"], key=lambda r: r["run"])
    ]
    for fr in summary["focus"]:
        out.append(f"\n## {focus_heading(fr)}\n")
        out.append(lists_table(fr, columns))
        out.append(
            "\nCells: id (cosine similarity)." if fr["table"] != RECOMMENDATIONS else "\nCells: item id (score)."
        )

    out.append("\n## Agreement of every pair of fits (mean over entities)\n")
    pair_rows = [
        (
            TITLES[p["table"]],
            f"{p['config_x']} seed {p['seed_x']}",
            f"{p['config_y']} seed {p['seed_y']}",
            p["kind"].replace("within_a", f"within {na}").replace("within_b", f"within {nb}"),
            fmt(p["jaccard"]),
            fmt(p["rbo"]),
        )
        for p in summary["pairs"]
    ]
    out.append(md_table(["table", "fit", "fit", "kind", "Jaccard", "RBO"], pair_rows))
    out.append(
        f"\nJaccard@k = |A ∩ B| / |A ∪ B| of the two lists; RBO = extrapolated rank-biased overlap, p = {par['rbo_p']} "
        "(Webber et al. 2010, eq. 32; 1 for identical lists).\n"
    )
    return blocks(out)


def plot_png(per_entity: pd.DataFrame, summary: dict[str, Any]) -> bytes | None:
    """Violin plots of the per-entity agreement within A, within B and between, per table and measure.

    ``None`` (with a warning) when matplotlib is not installed.
    """
    fig = figure("compare.png", figsize=(4.2 * len(TABLES), 7.0))
    if fig is None:
        return None
    na, nb = summary["names"]["a"], summary["names"]["b"]
    axes = fig.subplots(len(MEASURES), len(TABLES), squeeze=False)
    by = {(t["table"], t["measure"]): t for t in summary["tests"]}
    for j, table in enumerate(TABLES):
        rows = per_entity[per_entity[TABLE] == table]
        for i, measure in enumerate(MEASURES):
            ax = axes[i][j]
            data = [rows[f"{measure}_{kind}"].dropna().to_numpy() for kind in ("within_a", "within_b", "between")]
            if all(len(d) for d in data):
                parts = ax.violinplot(data, showmedians=True, showextrema=False)
                for body, color in zip(parts["bodies"], ("tab:blue", "tab:orange", "tab:red")):
                    body.set_facecolor(color)
                    body.set_alpha(0.5)
                ax.scatter(
                    [1, 2, 3], [float(np.mean(d)) for d in data], marker="D", color="k", s=14, zorder=3, label="mean"
                )
            ax.set_xticks(
                [1, 2, 3],
                [textwrap.fill(f"within {na}", 16), textwrap.fill(f"within {nb}", 16), "between"],
                fontsize="small",
            )
            ax.set_ylim(-0.03, 1.03)
            t = by.get((table, measure))
            ax.set_ylabel(f"{MEASURE_TITLES[measure]}@{t['k'] if t else 'k'} (mean over pairs of fits)")
            title = TITLES[table]
            if t:
                short = "different" if t["verdict"] == DIFFERENT else "not distinguishable"
                title += f"\n{short} (p {t['test']['p_value']:.3f}, effect {t['test']['statistic']:+.3f})"
            ax.set_title(title, fontsize="medium")
            ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].legend(fontsize="small", loc="lower left")
    fig.suptitle(f"{na} vs {nb}: per-entity list agreement")
    return png_bytes(fig, dpi=90)
