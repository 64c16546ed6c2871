"""Do two ALS configurations give different answers, beyond what the random seed alone changes?

Matrix-factorisation neighbours move with the random seed alone, so a
difference between two configurations means something only against the
seed-to-seed variation of each. :func:`run_compare` fits configuration A with
``s`` seeds and configuration B with ``s`` other seeds (all ``2s`` fits on the
same interactions and block count), and for every fit computes, with the
pipeline's own code (:mod:`als_spark.similarity`, :mod:`als_spark.recommend`):

* ``similar_users``: each user's ``k`` most similar users (cosine, self
  excluded, equal similarities to the smaller id);
* ``similar_items``: the same for items;
* ``recommendations``: each user's top ``top_n`` items, excluding what
  ``recommend.exclude`` of that configuration excludes and scored with its
  ``recommend.popularity_weight``.

For every pair of fits and every entity the two lists are compared with
Jaccard@k and extrapolated rank-biased overlap (:mod:`als_spark.analysis.agreement`),
in Spark. Each entity then has, per measure, its mean agreement over the
``C(s, 2)`` pairs of A's fits (*within A*), over the pairs of B's fits
(*within B*) and over the ``s²`` A-B pairs (*between*): the per-entity
:data:`AGREEMENT` table.

**Verdict** per table: "different beyond seed noise" when the A-B pairs of
fits agree less than the pairs within A *and* the pairs within B, by the exact
permutation test of the fits' configuration labels
(:func:`~als_spark.analysis.agreement.run_label_permutation`, statistic
``min(within A, within B) - between`` of the mean Jaccard@k per pair of fits,
significant at ``p <= max(alpha, smallest attainable p)``), else "not
distinguishable from seed noise". The fit, not the entity, is the unit of the
test: all entities share the same few fits (see :mod:`als_spark.analysis.agreement`).
Effect sizes reported with it: the statistic itself (in Jaccard units) and the
paired dominance over entities against each configuration (share of entities
whose lists agree more within than between, minus the opposite share). RBO is
reported with the same test; the verdict is Jaccard's.

**Cost and quality.** Before its seeded fits each configuration is timed at 1
and 3 iterations (after a warm-up fit) (:mod:`als_spark.analysis.progress`): the slope is the time per
iteration that the progress log's remaining-time estimates use; with the
seeded fits it gives the reported time per iteration. With ``holdout`` each
configuration is also scored once on a per-user random holdout
(:func:`~als_spark.analysis.evaluate.run_evaluate`: NDCG@10 and friends, fit on the
train side with the configuration's own ``als.seed``).

Focus entities (:mod:`als_spark.analysis.focus`) have their lists printed side by side in the
report (:mod:`als_spark.analysis.compare_report`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from als_spark import feedback, model
from als_spark import schema as S
from als_spark.analysis import agreement as A
from als_spark.analysis.compare_report import DIFFERENT, NOT_DISTINGUISHABLE, compare_markdown, plot_png
from als_spark.analysis.fits import (
    FittedRuns,
    check_comparable,
    check_positive,
    config_differences,
    fit_runs,
    seed_lists,
)
from als_spark.analysis.focus import Focus, focus_lists, resolve_focus
from als_spark.analysis.lists import (
    MEASURES,
    RECOMMENDATIONS,
    RUN,
    SIMILAR_ITEMS,
    SIMILAR_USERS,
    TABLE,
    TABLES,
    pair_agreement,
    pair_means,
)
from als_spark.config import Config
from als_spark.errors import ConfigError
from als_spark.runinfo import Timer, blas_implementation

log = logging.getLogger(__name__)


#: The per-entity agreement table ``run_compare`` returns (written as Parquet).
AGREEMENT = StructType(
    [
        StructField(TABLE, StringType(), False),
        StructField(S.ID, IntegerType(), False),
        StructField("jaccard_within_a", DoubleType(), True),
        StructField("jaccard_within_b", DoubleType(), True),
        StructField("jaccard_between", DoubleType(), True),
        StructField("rbo_within_a", DoubleType(), True),
        StructField("rbo_within_b", DoubleType(), True),
        StructField("rbo_between", DoubleType(), True),
    ]
)


#: Mean agreement of every pair of fits (one row per table and pair).
PAIRS = StructType(
    [
        StructField(TABLE, StringType(), False),
        StructField("run_x", IntegerType(), False),
        StructField("config_x", StringType(), False),
        StructField("seed_x", IntegerType(), False),
        StructField("run_y", IntegerType(), False),
        StructField("config_y", StringType(), False),
        StructField("seed_y", IntegerType(), False),
        StructField("kind", StringType(), False),
        StructField("entities", LongType(), False),
        StructField("jaccard", DoubleType(), True),
        StructField("rbo", DoubleType(), True),
    ]
)


#: The measure the verdict is taken on.
PRIMARY = "jaccard"


def entity_agreement(pairwise: DataFrame, runs_a: Sequence[int], runs_b: Sequence[int]) -> DataFrame:
    """:data:`AGREEMENT`: per table and entity, mean agreement within A, within B and between (of ``pairwise``)."""
    a, b = [int(r) for r in runs_a], [int(r) for r in runs_b]
    kind = (
        F.when(F.col("run_x").isin(a) & F.col("run_y").isin(a), "within_a")
        .when(F.col("run_x").isin(b) & F.col("run_y").isin(b), "within_b")
        .otherwise("between")
    )
    aggs = [
        F.avg(F.when(F.col("_kind") == k, F.col(measure))).alias(f"{measure}_{k}")
        for measure in MEASURES
        for k in ("within_a", "within_b", "between")
    ]
    per_entity = pairwise.withColumn("_kind", kind).groupBy(TABLE, S.ID).agg(*aggs)
    return per_entity.select(*[F.col(f.name).cast(f.dataType) for f in AGREEMENT.fields])


@dataclass
class TableVerdict:
    """The test of one table and measure."""

    table: str
    measure: str
    k: int  #: list length
    test: A.PermutationTest  #: fit level: min(within A, within B) against between
    dominance_a: float  #: entity level: within A against between
    dominance_b: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "measure": self.measure,
            "k": self.k,
            "verdict": self.verdict,
            "test": self.test.to_dict(),
            "dominance_a": self.dominance_a,
            "dominance_b": self.dominance_b,
        }


@dataclass
class CompareResult:
    """What :func:`compare_runs` / :func:`run_compare` produced; nothing is written."""

    agreement: DataFrame  #: :data:`AGREEMENT`, one row per table and entity
    pairs: DataFrame  #: :data:`PAIRS`
    verdicts: dict[str, str]  #: table -> verdict
    tests: list[TableVerdict]
    report: str  #: Markdown
    png: bytes | None  #: the agreement distributions (``None`` without matplotlib)
    summary: dict[str, Any] = field(default_factory=dict)  #: JSON-able: everything in the report


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be strictly between 0 and 1, got {alpha!r}")


def compare_runs(
    spark: SparkSession,
    runs_a: FittedRuns,
    runs_b: FittedRuns,
    *,
    focus: Sequence[Focus] = (),
    alpha: float = A.DEFAULT_ALPHA,
    rbo_p: float = A.DEFAULT_RBO_P,
    timer: Timer | None = None,
) -> CompareResult:
    """The agreement tables, tests, verdicts and report of two :class:`FittedRuns` (see the module docstring).

    Both must have the same ``k``, ``top_n``, users and items, and disjoint
    seeds. ``focus`` entities are resolved against the users / items that have
    lists (those of the interactions); an index in input order must be resolved
    already (:meth:`Focus.at`), which :func:`run_compare` does. Runs a few small Spark jobs; the
    per-entity table (one row per entity and table) is collected to the driver
    for the effect sizes and the plot.
    """
    _check_alpha(alpha)
    if (runs_a.k, runs_a.top_n) != (runs_b.k, runs_b.top_n):
        raise ConfigError(f"{runs_a.name} and {runs_b.name} were fitted with different k / top_n")
    if (runs_a.users, runs_a.items) != (runs_b.users, runs_b.items) or (
        runs_a.config.ingest.min_rating != runs_b.config.ingest.min_rating
    ):
        raise ConfigError(
            f"{runs_a.name} and {runs_b.name} do not have the same users and items (ingest.min_rating "
            f"{runs_a.config.ingest.min_rating:g} vs {runs_b.config.ingest.min_rating:g})"
        )
    if set(runs_a.seeds) & set(runs_b.seeds):
        raise ConfigError(
            f"the seeds of {runs_a.name} {runs_a.seeds} and {runs_b.name} {runs_b.seeds} overlap: "
            "every fit must be independent"
        )
    if len(runs_a.seeds) < 2 or len(runs_b.seeds) < 2:
        raise ConfigError("each configuration needs at least 2 seeds (within-configuration agreement)")
    timer = timer or Timer()
    offset = len(runs_a.seeds)
    runs = [
        {"run": i, "side": "a", "config": runs_a.name, "seed": s, "fit_seconds": runs_a.fit_seconds[i]}
        for i, s in enumerate(runs_a.seeds)
    ]
    runs += [
        {"run": offset + i, "side": "b", "config": runs_b.name, "seed": s, "fit_seconds": runs_b.fit_seconds[i]}
        for i, s in enumerate(runs_b.seeds)
    ]
    ids_a, ids_b = list(range(offset)), list(range(offset, len(runs)))
    k, top_n = runs_a.k, runs_a.top_n
    with timer.stage("compare_agreement"):
        all_lists = runs_a.lists.unionByName(runs_b.lists.withColumn(RUN, (F.col(RUN) + offset).cast("int")))
        all_pairs = [(x, y) for x in range(len(runs)) for y in range(x + 1, len(runs))]
        pairwise = pair_agreement(all_lists, all_pairs, rbo_p=rbo_p).cache()
        try:
            per_entity: pd.DataFrame = entity_agreement(pairwise, ids_a, ids_b).orderBy(TABLE, S.ID).toPandas()
            means: pd.DataFrame = pair_means(pairwise, "jaccard", "rbo").orderBy(TABLE, "run_x", "run_y").toPandas()
        finally:
            pairwise.unpersist()
        known = {
            "user": runs_a.run_lists[0].where(F.col(TABLE) == SIMILAR_USERS).select(F.col(S.ID).alias(S.USER_ID)),
            "item": runs_a.run_lists[0].where(F.col(TABLE) == SIMILAR_ITEMS).select(F.col(S.ID).alias(S.ITEM_ID)),
        }
        resolved = [(f, resolve_focus(known[f.kind], f)) for f in focus]
        focus_rows = focus_lists(all_lists, resolved)
    list_length = {
        SIMILAR_USERS: min(k, runs_a.users - 1),
        SIMILAR_ITEMS: min(k, runs_a.items - 1),
        RECOMMENDATIONS: top_n,
    }

    tests: list[TableVerdict] = []
    verdicts: dict[str, str] = {}
    for table in TABLES:
        rows = per_entity[per_entity[TABLE] == table]
        pm = means[means[TABLE] == table]
        for measure in MEASURES:
            values = {(int(x), int(y)): float(v) for x, y, v in zip(pm["run_x"], pm["run_y"], pm[measure])}
            test = A.run_label_permutation(values, ids_a, ids_b)
            verdict = DIFFERENT if A.significant(test, alpha=alpha) else NOT_DISTINGUISHABLE
            between = rows[f"{measure}_between"].to_numpy()
            tests.append(
                TableVerdict(
                    table,
                    measure,
                    list_length[table],
                    test,
                    A.dominance(rows[f"{measure}_within_a"].to_numpy(), between),
                    A.dominance(rows[f"{measure}_within_b"].to_numpy(), between),
                    verdict,
                )
            )
            if measure == PRIMARY:
                verdicts[table] = verdict
        log.info("compare: %s: %s", table, verdicts[table])

    by_run = {r["run"]: r for r in runs}

    def kind(x: int, y: int) -> str:
        sides = {by_run[x]["side"], by_run[y]["side"]}
        return "between" if len(sides) == 2 else f"within_{sides.pop()}"

    labelled = means.assign(
        config_x=[by_run[int(x)]["config"] for x in means["run_x"]],
        seed_x=[by_run[int(x)]["seed"] for x in means["run_x"]],
        config_y=[by_run[int(y)]["config"] for y in means["run_y"]],
        seed_y=[by_run[int(y)]["seed"] for y in means["run_y"]],
        kind=[kind(int(x), int(y)) for x, y in zip(means["run_x"], means["run_y"])],
    )[[f.name for f in PAIRS.fields]]
    summary = {
        "names": {"a": runs_a.name, "b": runs_b.name},
        "configs": {"a": runs_a.config.to_dict(), "b": runs_b.config.to_dict()},
        "differences": [list(d) for d in config_differences(runs_a.config, runs_b.config)],
        "seeds": {"a": runs_a.seeds, "b": runs_b.seeds},
        "parameters": {"k": k, "top_n": top_n, "rbo_p": rbo_p, "alpha": alpha, "primary_measure": PRIMARY},
        "data": {"interactions": runs_a.interactions, "users": runs_a.users, "items": runs_a.items},
        "spark": {
            "parallelism": model.parallelism(spark),
            "blocks": {"a": runs_a.blocks, "b": runs_b.blocks},
            "blas": blas_implementation(spark),
        },
        "runs": runs,
        "costs": {"a": runs_a.cost(), "b": runs_b.cost()},
        "holdout": {side: r.holdout for side, r in (("a", runs_a), ("b", runs_b)) if r.holdout is not None},
        "verdicts": verdicts,
        "tests": [t.to_dict() for t in tests],
        "pairs": labelled.to_dict(orient="records"),
        "focus": focus_rows,
        "timings_seconds": dict(timer.seconds),
    }
    return CompareResult(
        agreement=spark.createDataFrame(per_entity[[f.name for f in AGREEMENT.fields]], AGREEMENT),
        pairs=spark.createDataFrame(labelled, PAIRS),
        verdicts=verdicts,
        tests=tests,
        report=compare_markdown(summary),
        png=plot_png(per_entity, summary),
        summary=summary,
    )


def run_compare(
    spark: SparkSession,
    ratings: DataFrame,
    cfg_a: Config,
    cfg_b: Config,
    *,
    seeds: int = 3,
    seeds_a: Sequence[int] | None = None,
    seeds_b: Sequence[int] | None = None,
    k: int = 5,
    top_n: int = 10,
    focus: Sequence[Focus] = (),
    input_rows: DataFrame | None = None,
    holdout: bool = True,
    holdout_k: int = 10,
    test_fraction: float = 0.25,
    split_seed: int = 42,
    alpha: float = A.DEFAULT_ALPHA,
    rbo_p: float = A.DEFAULT_RBO_P,
    calibration: Sequence[int] = (1, 3),
    names: tuple[str, str] = ("A", "B"),
    progress_interval: float = 30.0,
    timer: Timer | None = None,
) -> CompareResult:
    """Fit both configurations with several seeds and test whether their lists differ beyond seed noise.

    :func:`fit_runs` for A and for B (seeds from :func:`seed_lists`), then
    :func:`compare_runs`. ``ratings`` has ``user_id, item_id, rating`` (the
    validated input, ``Ratings.df``); both configurations must read it alike
    (:func:`check_comparable`). Neighbour lists have ``k`` entries (self excluded),
    recommendation lists ``top_n``. ``input_rows``: the input's rows in input order,
    for a focus index in input order (default ``ratings`` in its own order;
    :func:`~als_spark.analysis.focus.resolve_focus`). Returns a :class:`CompareResult`;
    nothing is written.
    """
    check_positive(k=k, top_n=top_n, holdout_k=holdout_k)
    _check_alpha(alpha)
    if names[0] == names[1]:
        raise ConfigError(f"the two configurations need different names, got {names[0]!r} twice")
    check_comparable(cfg_a, cfg_b)
    seeds_a, seeds_b = seed_lists(cfg_a, cfg_b, seeds, seeds_a, seeds_b)
    if focus:  # resolved before the fits, so that a bad one fails first
        interactions = feedback.to_interactions(ratings, cfg_a.ingest)
        rows = ratings if input_rows is None else input_rows
        focus = [f.at(resolve_focus(interactions, f, rows=rows, ingest=cfg_a.ingest)) for f in focus]
    timer = timer or Timer()
    common = dict(
        k=k,
        top_n=top_n,
        calibration=calibration,
        holdout=holdout,
        holdout_k=holdout_k,
        test_fraction=test_fraction,
        split_seed=split_seed,
        progress_interval=progress_interval,
        timer=timer,
    )
    fitted: list[FittedRuns] = []
    try:
        # One warm-up fit (JIT compilation) serves both configurations: B runs in the same, warm JVM.
        fitted.append(fit_runs(spark, ratings, cfg_a, seeds_a, name=names[0], warm_up=True, **common))  # type: ignore[arg-type]
        fitted.append(fit_runs(spark, ratings, cfg_b, seeds_b, name=names[1], warm_up=False, **common))  # type: ignore[arg-type]
        return compare_runs(spark, fitted[0], fitted[1], focus=focus, alpha=alpha, rbo_p=rbo_p, timer=timer)
    finally:
        for runs in fitted:
            runs.release()
