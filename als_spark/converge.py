"""When do more ALS iterations stop mattering? One configuration fitted at increasing iteration counts.

Spark ALS is deterministic for a given seed, input and block count: the
initial factors come from the seed, and every iteration is a fixed function of
the previous factors. Fits with ``max_iter = n1 < n2 < ...`` therefore trace
one trajectory: the ``n1`` fit is the ``n2`` fit stopped early. Spark cannot
resume a fit (no warm start), so every count is a fresh fit and the total cost
is the sum of the counts.

:func:`run_converge` fits ``cfg`` at each count (same seed, same blocks),
computes the same lists as :mod:`als_spark.compare` (``k`` similar users,
``k`` similar items, ``top_n`` recommendations) and compares them

* from one count to the next (``step``): how much the lists still move;
* with the largest count (``to_last``): how far each count is from the answer
  at the end;
* with a second seed at the largest count (``seed``): how much the seed alone
  moves the lists. Once consecutive counts agree more than two seeds do, more
  iterations change less than re-running with another seed would.

With ``holdout`` (default) every fit is on the train side of a per-user random
split (:func:`~als_spark.evaluate.split_per_user_random`) and scored on the
held-out side with :func:`~als_spark.evaluate.ranking_metrics` (``@top_n``,
train items excluded from the recommendations), so one fit per count gives
both the lists and the metric; the lists are then those of a model trained on
the train side. Without ``holdout`` the fits use all interactions and the
recommendations exclude what ``recommend.exclude`` says. Either way their
scores add the ``recommend.popularity_weight`` prior of the fitted interactions.

The time per iteration is the least-squares slope of fit time against count
over the calibration fits (1 and 3 iterations, after a warm-up) and the fits
with the main seed (the fixed cost of a fit is the intercept), and each fit
logs its progress and remaining time (:mod:`als_spark.progress`).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import io
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from als_spark import agreement as A
from als_spark import compare as C
from als_spark import evaluate, feedback, model, progress
from als_spark import schema as S
from als_spark.config import Config
from als_spark.errors import ConfigError
from als_spark.recommend import popularity_prior
from als_spark.runinfo import Timer, blas_implementation

log = logging.getLogger(__name__)

STEP, TO_LAST, SEED = "step", "to_last", "seed"

#: Agreement between the lists of two fits, per table (one row per table and compared pair of fits).
CONVERGE_STEPS = StructType(
    [
        StructField("kind", StringType(), False),
        StructField(C.TABLE, StringType(), False),
        StructField("from_iter", IntegerType(), False),
        StructField("to_iter", IntegerType(), False),
        StructField("to_seed", IntegerType(), False),
        StructField("entities", LongType(), False),
        StructField("jaccard", DoubleType(), True),
        StructField("rbo", DoubleType(), True),
        StructField("identical", DoubleType(), True),
    ]
)
#: One row per fit: its time and, with a holdout, its ranking metrics.
CONVERGE_FITS = StructType(
    [
        StructField("iterations", IntegerType(), False),
        StructField("seed", IntegerType(), False),
        StructField("seconds", DoubleType(), False),
        StructField("ndcg", DoubleType(), True),
        StructField("precision", DoubleType(), True),
        StructField("recall", DoubleType(), True),
        StructField("map", DoubleType(), True),
        StructField("hit_rate", DoubleType(), True),
    ]
)
_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate")


@dataclass
class ConvergeResult:
    """What :func:`run_converge` produced; nothing is written."""

    steps: DataFrame  #: :data:`CONVERGE_STEPS`
    fits: DataFrame  #: :data:`CONVERGE_FITS`
    report: str  #: Markdown
    png: bytes | None
    summary: dict[str, Any] = field(default_factory=dict)


def _check_iterations(iterations: Sequence[int]) -> list[int]:
    counts = sorted(set(iterations))
    if len(counts) < 2 or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in counts):
        raise ConfigError(f"--iterations needs at least two distinct positive integers, got {list(iterations)!r}")
    return counts


def settled_at(steps: pd.DataFrame, seed_rows: pd.DataFrame, measure: str = "jaccard") -> dict[str, int | None]:
    """Per table, the first count from which every later step agrees at least as much as two seeds do.

    ``steps``: the ``step`` rows (``table, from_iter, to_iter, <measure>``);
    ``seed_rows``: the ``seed`` rows. ``None`` where the last step still moves
    the lists more than a new seed would, or without a seed reference.
    """
    out: dict[str, int | None] = {}
    for table in C.TABLES:
        reference = seed_rows.loc[seed_rows[C.TABLE] == table, measure]
        rows = steps[steps[C.TABLE] == table].sort_values("from_iter")
        if reference.empty or rows.empty:
            out[table] = None
            continue
        ok = (rows[measure] >= float(reference.iloc[0]) - 1e-12).to_list()
        first = None
        for i in range(len(ok) - 1, -1, -1):
            if not ok[i]:
                break
            first = int(rows["from_iter"].iloc[i])
        out[table] = first
    return out


def run_converge(
    spark: SparkSession,
    ratings: DataFrame,
    cfg: Config,
    *,
    iterations: Sequence[int] = (5, 10, 15, 25, 50, 100),
    k: int = 5,
    top_n: int = 10,
    holdout: bool = True,
    test_fraction: float = 0.25,
    split_seed: int = 42,
    seed_reference: bool = True,
    rbo_p: float = A.DEFAULT_RBO_P,
    focus: Sequence[C.Focus] = (),
    calibration: Sequence[int] = (1, 3),
    progress_interval: float = 30.0,
    timer: Timer | None = None,
) -> ConvergeResult:
    """Fit ``cfg`` at each of ``iterations`` and report how the lists and the holdout metric change.

    ``ratings`` has ``user_id, item_id, rating`` (the validated input). See the
    module docstring. ``calibration``: short fits timed first
    (:func:`~als_spark.progress.calibrate`), so that even the first long fit
    logs its remaining time. Returns a :class:`ConvergeResult`; nothing is
    written.
    """
    counts = _check_iterations(iterations)
    for name, value in (("k", k), ("top_n", top_n)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    timer = timer or Timer()
    seed = cfg.als.seed
    cached: list[DataFrame] = []

    def keep(df: DataFrame) -> DataFrame:
        cached.append(df.cache())
        return df

    try:
        with timer.stage("converge_prepare"):
            interactions = keep(feedback.to_interactions(ratings, cfg.ingest))
            focus_ids = [(f, C.resolve_focus(interactions, f)) for f in focus]
            test = None
            if holdout:
                # split_per_user_random's split, labelled once (one window computation); both sides filter it
                labelled = keep(evaluate.labelled_split(interactions, split="random", test_fraction=test_fraction,
                                                        seed=split_seed))
                train, test_rows = evaluate._parts(labelled)
                data = train.select(S.USER_ID, S.ITEM_ID, S.CONFIDENCE)
                test = test_rows.select(S.USER_ID, S.ITEM_ID)
                exclude = keep(feedback.items_per_user(data))
            else:
                data = interactions
                ex = feedback.exclusions(ratings, interactions, cfg.recommend.exclude)
                exclude = keep(ex) if ex is not None else None
            prior = popularity_prior(data, cfg.recommend.popularity_weight)
            prior = keep(prior) if prior is not None else None
            row = data.agg(F.count(F.lit(1)), F.count_distinct(S.USER_ID), F.count_distinct(S.ITEM_ID)).first()
            n_rows, n_users, n_items = int(row[0]), int(row[1]), int(row[2])
        par = model.parallelism(spark)
        blocks = cfg.als.num_blocks or par
        plan = [(n, seed) for n in counts] + ([(counts[-1], seed + 1)] if seed_reference else [])
        runs: list[dict[str, Any]] = []
        lists: list[DataFrame] = []
        records: list[progress.FitRecord] = []
        with model.checkpoint_dir(spark, cfg.als.checkpoint_dir) as ckpt:
            with timer.stage("converge_calibrate"):
                _, cal_records = progress.calibrate(data, cfg.als, num_blocks=blocks, label="converge", iterations=calibration)
            for run, (n, fit_seed) in enumerate(plan):
                cost = progress.cost_from(cal_records + records)
                if cost is not None:
                    left = sum(cost.seconds(m) for m, _ in plan[run:])
                    log.info("converge: %d fits left (%s iterations), estimated %s at %.2f s/iteration", len(plan) - run,
                             "+".join(str(m) for m, _ in plan[run:]), progress.format_seconds(left), cost.seconds_per_iteration)
                with timer.stage(f"converge_fit_{n}" + ("" if fit_seed == seed else f"_seed_{fit_seed}")):
                    fitted, record = progress.timed_fit(
                        data, dataclasses.replace(cfg.als, max_iter=n, seed=fit_seed), num_blocks=blocks,
                        label=f"{n} iterations, seed {fit_seed} (fit {run + 1} of {len(plan)})", cost=cost,
                        interval=progress_interval,
                    )
                    run_lists = keep(C.lists_of(fitted, run, k=k, top_n=top_n, exclude=exclude, item_prior=prior,
                                                n_users=n_users, n_items=n_items, parallelism=par))
                    run_lists.count()
                    del fitted
                    gc.collect()  # let the model's JVM object go, so Spark can clean its cached factors
                if fit_seed == seed:
                    records.append(record)
                metrics: dict[str, Any] = {}
                if test is not None:
                    with timer.stage(f"converge_score_{n}" + ("" if fit_seed == seed else f"_seed_{fit_seed}")):
                        metrics = evaluate.ranking_metrics(C.recommendations_of(run_lists), test, k=top_n, catalog_size=n_items)
                    log.info("converge: %d iterations, seed %d: NDCG@%d = %.4f", n, fit_seed, top_n, metrics["ndcg"])
                lists.append(run_lists)
                runs.append({"run": run, "iterations": n, "seed": fit_seed, "seconds": record.seconds,
                             **{m: metrics.get(m) for m in _METRICS}})

        with timer.stage("converge_agreement"):
            main = [r for r in runs if r["seed"] == seed]
            pairs = {(a["run"], b["run"]): STEP for a, b in zip(main, main[1:])}
            for r in main[:-1]:
                pairs.setdefault((r["run"], main[-1]["run"]), TO_LAST)
            if seed_reference:
                pairs[(main[-1]["run"], runs[-1]["run"])] = SEED
            all_lists = functools.reduce(DataFrame.unionByName, lists)
            pairwise = C.pair_agreement(all_lists, list(pairs), rbo_p=rbo_p)
            means = (
                pairwise.groupBy(C.TABLE, "run_x", "run_y")
                .agg(F.count(F.lit(1)).alias("entities"), F.avg("jaccard").alias("jaccard"), F.avg("rbo").alias("rbo"),
                     F.avg("identical").alias("identical"))
                .toPandas()
            )
            focus_rows = C.focus_lists(all_lists, focus_ids)
    finally:
        for df in cached:
            df.unpersist()

    by_run = {r["run"]: r for r in runs}
    # A step pair that is also the pair with the last count is recorded under both kinds.
    rows = []
    for (x, y), kind in pairs.items():
        kinds = [kind] + ([TO_LAST] if kind == STEP and y == main[-1]["run"] else [])
        for table in C.TABLES:
            hit = means[(means[C.TABLE] == table) & (means["run_x"] == x) & (means["run_y"] == y)]
            if hit.empty:
                continue
            for kd in kinds:
                rows.append({
                    "kind": kd, C.TABLE: table, "from_iter": by_run[x]["iterations"], "to_iter": by_run[y]["iterations"],
                    "to_seed": by_run[y]["seed"], "entities": int(hit["entities"].iloc[0]),
                    "jaccard": float(hit["jaccard"].iloc[0]), "rbo": float(hit["rbo"].iloc[0]),
                    "identical": float(hit["identical"].iloc[0]),
                })
    steps = pd.DataFrame(rows, columns=[f.name for f in CONVERGE_STEPS.fields])
    order = {STEP: 0, TO_LAST: 1, SEED: 2}
    steps = steps.sort_values(["kind", C.TABLE, "from_iter"], key=lambda c: c.map(order) if c.name == "kind" else c)
    steps = steps.reset_index(drop=True)
    cost = progress.cost_from(cal_records + records)
    settled = settled_at(steps[steps["kind"] == STEP], steps[steps["kind"] == SEED])
    summary = {
        "config": cfg.to_dict(),
        "iterations": counts,
        "seed": seed,
        "seed_reference": seed + 1 if seed_reference else None,
        "parameters": {"k": k, "top_n": top_n, "rbo_p": rbo_p, "holdout": holdout, "test_fraction": test_fraction,
                       "split_seed": split_seed},
        "data": {"interactions": n_rows, "users": n_users, "items": n_items},
        "spark": {"parallelism": par, "blocks": blocks, "checkpoint_dir": ckpt, "blas": blas_implementation(spark)},
        "seconds_per_iteration": cost.seconds_per_iteration if cost else None,
        "overhead_seconds": cost.overhead_seconds if cost else None,
        "fits": runs,
        "steps": steps.to_dict(orient="records"),
        "settled_at": settled,
        "focus": focus_rows,
        "timings_seconds": dict(timer.seconds),
    }
    report = converge_markdown(summary)
    png = plot_png(summary)
    fits = pd.DataFrame(
        [{"iterations": r["iterations"], "seed": r["seed"], "seconds": float(r["seconds"]),
          **{m: (float(r[m]) if r[m] is not None else None) for m in _METRICS}} for r in runs],
        columns=[f.name for f in CONVERGE_FITS.fields],
    )
    return ConvergeResult(
        steps=spark.createDataFrame(steps, CONVERGE_STEPS),
        fits=spark.createDataFrame(fits.astype(object).where(fits.notna(), None), CONVERGE_FITS),
        report=report, png=png, summary=summary,
    )


def converge_markdown(summary: dict[str, Any]) -> str:
    """The Markdown report of :func:`run_converge` from its ``summary``."""
    cfg, par = summary["config"]["als"], summary["parameters"]
    steps = pd.DataFrame(summary["steps"])
    out = [f"# Convergence: rank {cfg['rank']}, reg_param {cfg['reg_param']:g}, alpha {cfg['alpha']:g}, seed {summary['seed']}\n"]
    data = summary["data"]
    out.append(
        f"Fits at {', '.join(map(str, summary['iterations']))} iterations"
        + (f", plus seed {summary['seed_reference']} at {summary['iterations'][-1]}" if summary["seed_reference"] else "")
        + f"; {data['interactions']:,} interactions of {data['users']:,} users and {data['items']:,} items"
        + (f" (the train side of a per-user random holdout, {par['test_fraction']:g} held out, split seed {par['split_seed']})"
           if par["holdout"] else " (all interactions)")
        + f". Lists: {par['k']} similar users, {par['k']} similar items, top {par['top_n']} recommendations. "
        f"Spark BLAS: {summary['spark']['blas']}, {summary['spark']['blocks']} ALS blocks.\n"
    )
    spi = summary["seconds_per_iteration"]
    if spi is not None:
        out.append(f"\nTime per iteration: **{spi:.2f} s** (slope of fit time against iterations; fixed cost per fit "
                   f"{summary['overhead_seconds']:.1f} s).\n")

    def measure_row(sub: pd.DataFrame, table: str, measure: str) -> str:
        hit = sub[sub[C.TABLE] == table]
        return C.fmt(float(hit[measure].iloc[0])) if not hit.empty else "–"

    out.append("\n## From one count to the next\n")
    fits = {(r["iterations"], r["seed"]): r for r in summary["fits"]}
    head = ["from → to", "users Jaccard", "users RBO", "items Jaccard", "items RBO", "recs Jaccard", "recs RBO",
            f"NDCG@{par['top_n']} at to", "Δ NDCG"]
    rows = []
    step_rows = steps[steps["kind"] == STEP] if not steps.empty else steps
    for (a, b), sub in step_rows.groupby(["from_iter", "to_iter"], sort=True):
        na, nb = fits.get((a, summary["seed"]), {}), fits.get((b, summary["seed"]), {})
        delta = (nb.get("ndcg") - na.get("ndcg")) if nb.get("ndcg") is not None and na.get("ndcg") is not None else None
        rows.append([f"{a} → {b}"] + [measure_row(sub, t, m) for t in C.TABLES for m in C.MEASURES]
                    + [C.fmt(nb.get("ndcg"), 4), f"{delta:+.4f}" if delta is not None else "–"])
    seed_rows = steps[steps["kind"] == SEED] if not steps.empty else steps
    if not seed_rows.empty:
        n = summary["iterations"][-1]
        other = fits.get((n, summary["seed_reference"]), {})
        rows.append([f"seed {summary['seed']} vs {summary['seed_reference']} at {n}"]
                    + [measure_row(seed_rows, t, m) for t in C.TABLES for m in C.MEASURES]
                    + [C.fmt(other.get("ndcg"), 4), "–"])
    out.append(C.md_table(head, rows))
    out.append("\nAgreement of the two fits' lists, mean over entities (1 = identical lists). The last row is the seed "
               "noise: two seeds at the largest count.\n")
    settled = summary["settled_at"]
    if summary["seed_reference"]:
        lines = []
        for table in C.TABLES:
            at = settled.get(table)
            lines.append(
                f"- {C.TITLES[table]}: " + (f"from {at} iterations on, each further step moves the lists less than a new seed does."
                                             if at is not None else "the last step still moves the lists more than a new seed does.")
            )
        out.append("\n" + "\n".join(lines) + "\n")

    out.append("\n## Each count against the largest\n")
    last_rows = steps[steps["kind"] == TO_LAST] if not steps.empty else steps
    rows = []
    for a, sub in last_rows.groupby("from_iter", sort=True):
        rows.append([f"{a} vs {summary['iterations'][-1]}"] + [measure_row(sub, t, m) for t in C.TABLES for m in C.MEASURES]
                    + [C.fmt(float(sub["identical"].min()), 3)])
    out.append(C.md_table(["fits", "users Jaccard", "users RBO", "items Jaccard", "items RBO", "recs Jaccard", "recs RBO",
                           "min share identical"], rows))

    out.append("\n## Fits\n")
    out.append(C.md_table(
        ["iterations", "seed", "fit seconds", f"NDCG@{par['top_n']}", f"precision@{par['top_n']}", f"recall@{par['top_n']}",
         f"MAP@{par['top_n']}"],
        [[r["iterations"], r["seed"], f"{r['seconds']:.1f}", C.fmt(r["ndcg"], 4), C.fmt(r["precision"], 4), C.fmt(r["recall"], 4),
          C.fmt(r["map"], 4)] for r in summary["fits"]],
    ))
    columns = [(str(r["run"]), f"{r['iterations']} it" + ("" if r["seed"] == summary["seed"] else f", seed {r['seed']}"))
               for r in summary["fits"]]
    for fr in summary["focus"]:
        out.append(f"\n## {C.focus_heading(fr)}\n")
        out.append(C.lists_table(fr, columns))
    return C.blocks(out)


def _count_axis(ax: Any, counts: Sequence[int]) -> None:
    """A log-scaled iterations axis labelled with the fitted counts only."""
    ax.set_xscale("log")
    ax.set_xticks(list(counts), [str(c) for c in counts])
    ax.minorticks_off()


def plot_png(summary: dict[str, Any]) -> bytes | None:
    """Agreement with the previous count and with the largest, and NDCG, against iterations; ``None`` without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed: converge.png is not written (pip install 'als-spark[plot]')")
        return None
    steps = pd.DataFrame(summary["steps"])
    fig = Figure(figsize=(12.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    colors = {C.SIMILAR_USERS: "tab:blue", C.SIMILAR_ITEMS: "tab:green", C.RECOMMENDATIONS: "tab:red"}
    for ax, kind, title in ((axes[0], STEP, "Jaccard with the previous count"), (axes[1], TO_LAST, "Jaccard with the largest count")):
        for table in C.TABLES:
            sub = steps[(steps["kind"] == kind) & (steps[C.TABLE] == table)] if not steps.empty else steps
            if sub.empty:
                continue
            x = sub["to_iter"] if kind == STEP else sub["from_iter"]
            ax.plot(x, sub["jaccard"], marker="o", color=colors[table], label=C.TITLES[table])
            seed = steps[(steps["kind"] == SEED) & (steps[C.TABLE] == table)]
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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()
