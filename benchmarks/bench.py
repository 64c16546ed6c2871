"""Benchmark: our pipeline, the tutorial way, and the `implicit` library, side by side in one process.

``python benchmarks/bench.py`` runs, on one dataset and configuration, ``repeat`` times each
(its peers come with the extra ``bench``: ``pip install -e '.[bench]'``):

* **als-spark**: :func:`als_spark.pipeline.run_all` into a scratch directory, with its stage timings;
* **naive**: the pipeline as tutorials write it — default ALS block counts and 200 shuffle
  partitions, ``recommendForAllUsers(N + most items any user rated)`` exploded, anti-joined with
  the seen items and cut with a window; similarities from a cross join of the factor table with
  itself and a window; the same tables written as Parquet;
* **implicit** (when the optional ``implicit`` package is installed): its CPU ALS fit with the
  same rank, iterations and threads as Spark's cores, then ``recommend`` (seen items filtered),
  ``similar_items`` and ``similar_users``; and those three again on the factors Spark learned, so the
  top-k engines are compared on identical factors.

It reports the median seconds per stage, ratios against als-spark, the time per ALS iteration
(``(fit(max_iter) - fit(1)) / (max_iter - 1)``, which removes the fixed cost of a fit), the peak
resident memory of the driver, the JVM and the Python workers, and the BLAS Spark loaded.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from als_spark import feedback, model, pipeline, runinfo, session
from als_spark import schema as S
from als_spark.analysis.progress import difference_per_iteration
from als_spark.analysis.reports import md_table
from als_spark.config import Config
from als_spark.runinfo import Timer

log = logging.getLogger(__name__)


def _timed(timer: Timer, name: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, timed as stage ``name`` of ``timer``."""
    with timer.stage(name):
        return fn()


# --- the tutorial way ------------------------------------------------------------------------


def _cosine_top_k_cross_join(factors: DataFrame, k: int, id_col: str, other_col: str) -> DataFrame:
    a = factors.select(F.col(S.ID).alias(id_col), F.col(S.FEATURES).alias("a"))
    b = factors.select(F.col(S.ID).alias(other_col), F.col(S.FEATURES).alias("b"))
    dot = F.aggregate(F.zip_with("a", "b", lambda x, y: x * y), F.lit(0.0), lambda acc, v: acc + v)
    norm_a = F.sqrt(F.aggregate("a", F.lit(0.0), lambda acc, v: acc + v * v))
    norm_b = F.sqrt(F.aggregate("b", F.lit(0.0), lambda acc, v: acc + v * v))
    pairs = a.crossJoin(b).where(F.col(id_col) != F.col(other_col))
    scored = pairs.select(id_col, other_col, (dot / (norm_a * norm_b)).alias(S.SIMILARITY))
    order = Window.partitionBy(id_col).orderBy(F.desc(S.SIMILARITY), other_col)
    return scored.withColumn(S.RANK, F.row_number().over(order)).where(F.col(S.RANK) <= k)


def run_naive(spark: SparkSession, ratings: DataFrame, cfg: Config, output: str) -> dict[str, float]:
    """The tutorial pipeline on already-read ``ratings``; returns seconds per stage."""
    timer = Timer()
    t = timer.seconds
    previous = spark.conf.get("spark.sql.shuffle.partitions") or "200"
    spark.conf.set("spark.sql.shuffle.partitions", "200")  # what a tutorial session has
    try:
        interactions = feedback.to_interactions(ratings, cfg.ingest)
        from pyspark.ml.recommendation import ALS

        als = ALS(
            rank=cfg.als.rank,
            maxIter=cfg.als.max_iter,
            regParam=cfg.als.reg_param,
            alpha=cfg.als.alpha,
            seed=cfg.als.seed,
            implicitPrefs=True,
            userCol=S.USER_ID,
            itemCol=S.ITEM_ID,
            ratingCol=S.CONFIDENCE,
        )
        with model.checkpoint_dir(spark, cfg.als.checkpoint_dir):
            fitted = _timed(timer, "fit", lambda: als.fit(interactions))
            n = cfg.recommend.top_n

            def recs() -> None:
                seen = ratings.select(S.USER_ID, S.ITEM_ID)
                most_seen = seen.groupBy(S.USER_ID).count().agg(F.max("count")).first()
                assert most_seen is not None  # a global aggregate has one row
                raw = (
                    fitted.recommendForAllUsers(n + int(most_seen[0]))
                    .select(S.USER_ID, F.explode("recommendations").alias("r"))
                    .select(S.USER_ID, F.col("r.item_id").alias(S.ITEM_ID), F.col("r.rating").alias(S.SCORE))
                )
                unseen = raw.join(seen, [S.USER_ID, S.ITEM_ID], "left_anti")
                order = Window.partitionBy(S.USER_ID).orderBy(F.desc(S.SCORE), S.ITEM_ID)
                top = unseen.withColumn(S.RANK, F.row_number().over(order)).where(F.col(S.RANK) <= n)
                top.write.mode("overwrite").parquet(f"{output}/recommendations")

            _timed(timer, "recommend", recs)
            k = cfg.similar.top_k
            items = fitted.itemFactors.select(F.col("id").alias(S.ID), F.col("features").alias(S.FEATURES))
            users = fitted.userFactors.select(F.col("id").alias(S.ID), F.col("features").alias(S.FEATURES))
            _timed(
                timer,
                "similar_items",
                lambda: (
                    _cosine_top_k_cross_join(items, k, S.ITEM_ID, S.SIMILAR_ITEM_ID)
                    .write.mode("overwrite")
                    .parquet(f"{output}/similar_items")
                ),
            )
            _timed(
                timer,
                "similar_users",
                lambda: (
                    _cosine_top_k_cross_join(users, k, S.USER_ID, S.SIMILAR_USER_ID)
                    .write.mode("overwrite")
                    .parquet(f"{output}/similar_users")
                ),
            )
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous)
    t["total"] = round(sum(t.values()), 3)
    return t


# --- implicit ----------------------------------------------------------------------------------


def _csr(users: np.ndarray, items: np.ndarray, values: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    from scipy.sparse import csr_matrix

    uids, urow = np.unique(users, return_inverse=True)
    iids, icol = np.unique(items, return_inverse=True)
    return csr_matrix((values.astype(np.float32), (urow, icol)), shape=(len(uids), len(iids))), uids, iids


def run_implicit(
    interactions: Any, seen: Any, cfg: Config, threads: int, spark_factors: tuple[Any, Any] | None
) -> dict[str, float]:
    """``implicit``'s fit, recommend and similar on pandas ``interactions``; seconds per stage."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    timer = Timer()
    t = timer.seconds
    n, k = cfg.recommend.top_n, cfg.similar.top_k
    # implicit's own threads do the parallel work; it asks for a single-threaded BLAS beside them
    # (and warns otherwise), so this is implicit at its best.
    with threadpool_limits(limits=1, user_api="blas"):
        conf, uids, iids = _csr(
            interactions[S.USER_ID].to_numpy(),
            interactions[S.ITEM_ID].to_numpy(),
            interactions[S.CONFIDENCE].to_numpy(),
        )
        # the user's rated items, in the same user/item index space, for filtering
        index_u = {u: i for i, u in enumerate(uids)}
        index_i = {v: i for i, v in enumerate(iids)}
        keep = seen[S.USER_ID].isin(index_u) & seen[S.ITEM_ID].isin(index_i)
        from scipy.sparse import csr_matrix

        rated = csr_matrix(
            (
                np.ones(int(keep.sum()), dtype=np.float32),
                (seen.loc[keep, S.USER_ID].map(index_u).to_numpy(), seen.loc[keep, S.ITEM_ID].map(index_i).to_numpy()),
            ),
            shape=conf.shape,
        )
        als = AlternatingLeastSquares(
            factors=cfg.als.rank,
            regularization=cfg.als.reg_param,
            alpha=cfg.als.alpha,
            iterations=cfg.als.max_iter,
            random_state=cfg.als.seed,
            num_threads=threads,
        )
        _timed(timer, "fit", lambda: als.fit(conf, show_progress=False))
        everyone = np.arange(conf.shape[0])
        _timed(
            timer, "recommend", lambda: als.recommend(everyone, rated[everyone], N=n, filter_already_liked_items=True)
        )
        _timed(timer, "similar_items", lambda: als.similar_items(np.arange(conf.shape[1]), N=k + 1))
        _timed(timer, "similar_users", lambda: als.similar_users(everyone, N=k + 1))
        t["total"] = round(sum(t[s] for s in ("fit", "recommend", "similar_items", "similar_users")), 3)
        if spark_factors is not None:
            # the same top-k work on the factors Spark learned (rows aligned to implicit's indexes)
            user_f, item_f = spark_factors
            als.user_factors = np.ascontiguousarray(user_f.loc[uids].to_numpy().tolist(), dtype=np.float32)
            als.item_factors = np.ascontiguousarray(item_f.loc[iids].to_numpy().tolist(), dtype=np.float32)
            als._user_norms = als._item_norms = None  # noqa: SLF001 - cached norms belong to the old factors
            _timed(
                timer,
                "recommend_same_factors",
                lambda: als.recommend(everyone, rated[everyone], N=n, filter_already_liked_items=True),
            )
            _timed(timer, "similar_items_same_factors", lambda: als.similar_items(np.arange(conf.shape[1]), N=k + 1))
            _timed(timer, "similar_users_same_factors", lambda: als.similar_users(everyone, N=k + 1))
    return t


# --- memory ------------------------------------------------------------------------------------


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return found


def peak_memory_mb() -> dict[str, float | None]:
    """Peak resident memory (VmHWM) of this process, its JVM child and the JVM's Python workers."""
    me = os.getpid()
    jvms = [c for c in _children(me) if "java" in _cmdline(c)]
    workers = [w for j in jvms for w in _descendants(j) if "python" in _cmdline(w)]
    return {
        "driver_python": _peak_rss_mb(me),
        "jvm": max((_peak_rss_mb(j) or 0 for j in jvms), default=None),
        "python_workers_max": max((_peak_rss_mb(w) or 0 for w in workers), default=None),
    }


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


# --- the benchmark -----------------------------------------------------------------------------


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


def run_bench(
    spark: SparkSession,
    source: pipeline.Source,
    cfg: Config,
    *,
    repeat: int = 3,
    systems: tuple[str, ...] = ("als-spark", "naive", "implicit"),
    scratch: str | None = None,
) -> dict[str, Any]:
    """Run each system ``repeat`` times on the same data; return medians, ratios and the environment."""
    scratch_dir = scratch or tempfile.mkdtemp(prefix="als-spark-bench-")
    results: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    per_iteration: list[float] = []
    info: dict[str, Any] = {}
    try:
        for r in range(repeat):
            log.info("bench: repeat %d/%d", r + 1, repeat)
            out = os.path.join(scratch_dir, f"als-spark-{r}")
            result = pipeline.run_all(spark, source, cfg, out)
            results.setdefault("als-spark", []).append(
                {**result["timings_seconds"], "total": round(sum(result["timings_seconds"].values()), 3)}
            )
            info = {
                "counts": result["counts"],
                "input": result["input"],
                "versions": result["versions"],
                "spark": result["spark"],
            }
            ratings = spark.read.parquet(f"{out}/ratings").cache()
            if "naive" in systems:
                naive = run_naive(spark, ratings, cfg, os.path.join(scratch_dir, f"naive-{r}"))
                # Reading and validating the input is the same work for both: count ours for the naive total.
                naive["ingest"] = result["timings_seconds"]["ingest"]
                naive["total"] = round(naive["total"] + naive["ingest"], 3)
                results["naive"].append(naive)
            # time per iteration: the difference between a full fit and a one-iteration fit
            interactions = spark.read.parquet(f"{out}/interactions").cache()
            interactions.count()
            one_fit = Timer()
            with model.checkpoint_dir(spark, cfg.als.checkpoint_dir), one_fit.stage("fit_1_iteration"):
                model.fit(interactions, replace(cfg.als, max_iter=1))
            full = result["timings_seconds"]["fit"]
            if cfg.als.max_iter > 1:
                spi = difference_per_iteration(1, one_fit.seconds["fit_1_iteration"], cfg.als.max_iter, full)
                per_iteration.append(round(spi, 3))
            if "implicit" in systems:
                try:
                    import implicit  # noqa: F401
                except ImportError:
                    log.warning("bench: the implicit package is not installed; skipping it (pip install implicit)")
                    results.pop("implicit")
                    systems = tuple(s for s in systems if s != "implicit")
                else:
                    pdf = interactions.toPandas()
                    seen = (
                        (ratings if cfg.recommend.exclude == "rated" else interactions)
                        .select(S.USER_ID, S.ITEM_ID)
                        .toPandas()
                    )
                    uf: Any = spark.read.parquet(f"{out}/user_factors").toPandas()
                    itf: Any = spark.read.parquet(f"{out}/item_factors").toPandas()
                    uf, itf = uf.set_index(S.ID)[S.FEATURES], itf.set_index(S.ID)[S.FEATURES]
                    results["implicit"].append(run_implicit(pdf, seen, cfg, model.parallelism(spark), (uf, itf)))
            ratings.unpersist()
            interactions.unpersist()
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if scratch is None:
            shutil.rmtree(scratch_dir, ignore_errors=True)
    medians = {s: _median(runs) for s, runs in results.items() if runs}
    ours = medians["als-spark"]
    ratios: dict[str, dict[str, float]] = {}
    for system, m in medians.items():
        if system == "als-spark":
            continue
        ratios[system] = {
            str(stage): round(ours[stage] / m[stage], 3)
            for stage in ("fit", "recommend", "similar_items", "similar_users", "total")
            if stage in m and stage in ours and m[stage] > 0
        }
        if system == "implicit":
            for stage in ("recommend", "similar_items", "similar_users"):
                same = m.get(f"{stage}_same_factors")
                if same:
                    ratios[system][f"{stage}_same_factors"] = round(ours[stage] / same, 3)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "memory_gb": _memory_gb(),
            "python": platform.python_version(),
        },
        "config": cfg.to_dict(),
        "repeat": repeat,
        "median_seconds": medians,
        "ratio_als_spark_to": ratios,
        "als_seconds_per_iteration_median": statistics.median(per_iteration) if per_iteration else None,
        "peak_memory_mb": peak_memory_mb(),
        "blas": runinfo.blas_implementation(spark),
        "quick_jit": session.jvm_quick_jit(spark),
        **info,
    }


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        return None


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table: median seconds per stage and system, and ratios."""
    medians = report["median_seconds"]
    systems = list(medians)
    stages = [
        "ingest",
        "write_ingest",
        "fit",
        "write_model",
        "recommend",
        "similar_items",
        "similar_users",
        "publish",
        "total",
    ]
    lines = [
        f"{report['date']}, {report['machine']['cpus']} cores, {report['machine']['memory_gb']} GB, "
        f"Spark {report.get('versions', {}).get('spark')}, BLAS {report['blas']}, median of {report['repeat']}:",
        "",
    ]

    def cells(key: str) -> list[str]:
        return [f"{medians[s][key]:.2f}" if key in medians[s] else "" for s in systems]

    rows = [[stage, *cells(stage)] for stage in stages if any(stage in medians[s] for s in systems)]
    rows += [
        [f"{stage} (implicit on Spark's factors)", *cells(f"{stage}_same_factors")]
        for stage in ("recommend", "similar_items", "similar_users")
        if "implicit" in medians and f"{stage}_same_factors" in medians["implicit"]
    ]
    lines.append(md_table(["stage", *systems], rows).rstrip("\n"))
    lines += ["", "als-spark seconds / other system's seconds (below 1 = als-spark faster):", ""]
    for system, ratio in report["ratio_als_spark_to"].items():
        lines.append(f"- vs {system}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
    lines.append("")
    lines.append(
        f"ALS seconds per iteration (median): {report['als_seconds_per_iteration_median']}; "
        f"peak memory MB: {json.dumps(report['peak_memory_mb'])}"
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/bench.py (--input PATH | --dataset ...) --output DIR [--repeat 3] [--systems ...]``."""
    import argparse
    import sys

    from als_spark.cli import options
    from als_spark.errors import AlsSparkError, ConfigError

    parser = argparse.ArgumentParser(prog="benchmarks/bench.py", description=__doc__.split("\n\n")[0])
    options.add_input(parser)
    options.add_common(parser)
    parser.add_argument("--repeat", type=int, default=3, help="runs per system; medians are reported (default 3)")
    parser.add_argument(
        "--systems",
        default="als-spark,naive,implicit",
        help="comma-separated subset of als-spark,naive,implicit (default: all)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        systems = tuple(x.strip() for x in args.systems.split(",") if x.strip())
        if set(systems) - {"als-spark", "naive", "implicit"} or "als-spark" not in systems:
            raise ConfigError(
                f"--systems must include als-spark and only als-spark, naive, implicit; got {args.systems!r}"
            )
        cfg = options.config(args)
        # bench keeps the JVM's default JIT: its repeats warm one JVM anyway, and the quick JIT would
        # slow the naive pipeline's cross joins it compares against (ML-100k similar_items 20.7 s vs 12.1 s).
        spark = options.spark(args, sized=False)
        report = run_bench(spark, options.source(args), cfg, repeat=args.repeat, systems=systems)
    except AlsSparkError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return exc.exit_code
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from machine import write_report

    write_report(args.output, "bench", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
