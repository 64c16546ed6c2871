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
Jaccard@k and extrapolated rank-biased overlap (:mod:`als_spark.agreement`),
in Spark. Each entity then has, per measure, its mean agreement over the
``C(s, 2)`` pairs of A's fits (*within A*), over the pairs of B's fits
(*within B*) and over the ``s²`` A-B pairs (*between*): the per-entity
:data:`AGREEMENT` table.

**Verdict** per table: "different beyond seed noise" when the A-B pairs of
fits agree less than the pairs within A *and* the pairs within B, by the exact
permutation test of the fits' configuration labels
(:func:`~als_spark.agreement.run_label_permutation`, statistic
``min(within A, within B) - between`` of the mean Jaccard@k per pair of fits,
significant at ``p <= max(alpha, smallest attainable p)``), else "not
distinguishable from seed noise". The fit, not the entity, is the unit of the
test: all entities share the same few fits (see :mod:`als_spark.agreement`).
Effect sizes reported with it: the statistic itself (in Jaccard units) and the
paired dominance over entities against each configuration (share of entities
whose lists agree more within than between, minus the opposite share). RBO is
reported with the same test; the verdict is Jaccard's.

**Cost and quality.** Before its seeded fits each configuration is timed at 1
and 3 iterations (after a warm-up fit) (:mod:`als_spark.progress`): the slope is the time per
iteration that the progress log's remaining-time estimates use; with the
seeded fits it gives the reported time per iteration. With ``holdout`` each
configuration is also scored once on a per-user random holdout
(:func:`~als_spark.evaluate.run_evaluate`: NDCG@10 and friends, fit on the
train side with the configuration's own ``als.seed``).

**Focus entities** (:class:`Focus`): a user or item named by its id in the
input file, or by a zero-based *index* into the distinct ids of the
interactions (ratings >= ``ingest.min_rating``) sorted ascending, which is the
index a notebook's ``astype("category").cat.codes``, ``np.unique`` or a pivot
table's row number gives. On MovieLens 100k user index 10 is user id 11. Their
lists under every fit are printed side by side in the report.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import io
import logging
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from als_spark import agreement as A
from als_spark import evaluate, feedback, model, progress
from als_spark import schema as S
from als_spark.config import Config
from als_spark.errors import ConfigError
from als_spark.recommend import popularity_prior, recommend
from als_spark.runinfo import Timer, blas_implementation
from als_spark.similarity import similar_items, similar_users

log = logging.getLogger(__name__)

SIMILAR_USERS, SIMILAR_ITEMS, RECOMMENDATIONS = "similar_users", "similar_items", "recommendations"
TABLES = (SIMILAR_USERS, SIMILAR_ITEMS, RECOMMENDATIONS)
MEASURES = ("jaccard", "rbo")
#: The measure the verdict is taken on.
PRIMARY = "jaccard"
DIFFERENT = "different beyond seed noise"
NOT_DISTINGUISHABLE = "not distinguishable from seed noise"

#: Column names of the lists table (one row per table, run and entity).
TABLE, RUN, ITEMS, SCORES = "table", "run", "items", "scores"

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
TITLES = {SIMILAR_USERS: "similar users", SIMILAR_ITEMS: "similar items", RECOMMENDATIONS: "recommendations"}
MEASURE_TITLES = {"jaccard": "Jaccard", "rbo": "RBO"}


# --- focus entities ---------------------------------------------------------------------


@dataclass(frozen=True)
class Focus:
    """A user or item whose lists the report prints: by input-file ``id`` or zero-based ``index``.

    ``index`` counts the distinct ids of the interactions (ratings >=
    ``ingest.min_rating``) sorted ascending, from 0 (see the module docstring).
    """

    kind: str  #: ``user`` or ``item``
    id: int | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("user", "item"):
            raise ConfigError(f"focus kind must be 'user' or 'item', got {self.kind!r}")
        if (self.id is None) == (self.index is None):
            raise ConfigError(f"a focus {self.kind} needs exactly one of id and index")
        if self.index is not None and self.index < 0:
            raise ConfigError(f"--{self.kind}-index must be >= 0 (zero-based), got {self.index}")

    def describe(self) -> str:
        return f"{self.kind} id {self.id}" if self.id is not None else f"{self.kind} index {self.index}"


def resolve_focus(interactions: DataFrame, focus: Focus) -> int:
    """The input-file id of ``focus``; raises :class:`ConfigError` when it has no interactions or is out of range."""
    col = S.USER_ID if focus.kind == "user" else S.ITEM_ID
    if focus.id is not None:
        if interactions.where(F.col(col) == int(focus.id)).limit(1).count() == 0:
            raise ConfigError(
                f"--{focus.kind}-id {focus.id}: no interaction of this {focus.kind} (rating >= ingest.min_rating), "
                f"so it has no factors and no lists"
            )
        return int(focus.id)
    assert focus.index is not None
    ids = [row[0] for row in interactions.select(col).distinct().orderBy(col).limit(focus.index + 1).collect()]
    if len(ids) <= focus.index:
        raise ConfigError(
            f"--{focus.kind}-index {focus.index} is out of range: the interactions have {len(ids)} distinct {focus.kind}s "
            f"(indices 0..{len(ids) - 1})"
        )
    return int(ids[focus.index])


def focus_lists(lists: DataFrame, resolved: Sequence[tuple[Focus, int]]) -> list[dict[str, Any]]:
    """The focus entities' lists from ``lists`` (:func:`lists_of`): one dict per focus and table, JSON-able.

    A user gets its similar users and its recommendations, an item its similar
    items; ``lists`` maps each run (as a string) to ``[[id, score], ...]``.
    """
    out = []
    for f, entity in resolved:
        for table in (SIMILAR_USERS, RECOMMENDATIONS) if f.kind == "user" else (SIMILAR_ITEMS,):
            got = lists.where((F.col(TABLE) == table) & (F.col(S.ID) == entity)).select(RUN, ITEMS, SCORES).collect()
            out.append({
                "focus": f.describe(), "kind": f.kind, "id": entity, "table": table,
                "lists": {str(r[RUN]): [[int(i), float(s)] for i, s in zip(r[ITEMS], r[SCORES])] for r in got},
            })
    return out


# --- the lists of one fit --------------------------------------------------------------------


def ranked_lists(table: DataFrame, *, key: str, other: str, score: str) -> DataFrame:
    """``id, items, scores``: per ``key``, the ``other`` ids and scores ordered by ``rank``.

    ``sort_array`` on ``(rank, ...)`` structs: the order never relies on row order
    surviving ``collect_list``.
    """
    return table.groupBy(key).agg(F.sort_array(F.collect_list(F.struct(S.RANK, other, score))).alias("_l")).select(
        F.col(key).cast("int").alias(S.ID),
        F.transform("_l", lambda s: s[other]).cast("array<int>").alias(ITEMS),
        F.transform("_l", lambda s: s[score]).cast("array<float>").alias(SCORES),
    )


def lists_of(
    fitted: Any,
    run: int,
    *,
    k: int,
    top_n: int,
    exclude: DataFrame | None,
    item_prior: DataFrame | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
    parallelism: int = 2,
) -> DataFrame:
    """``table, run, id, items, scores``: the three lists of one fitted model (lazy).

    ``similar_users`` and ``similar_items`` (``k`` per entity, self excluded)
    and ``recommendations`` (``top_n`` per user, minus ``exclude``, scores plus
    ``item_prior`` as :func:`~als_spark.recommend.recommend` adds it), computed by
    the pipeline's own functions. ``n_users`` / ``n_items`` (the factor counts)
    save a count job each. Cache and materialise the result before the model
    is dropped.
    """
    user_factors, item_factors = model.factors(fitted)
    parts = [
        ranked_lists(
            similar_users(user_factors, top_k=k, n_users=n_users, parallelism=parallelism),
            key=S.USER_ID, other=S.SIMILAR_USER_ID, score=S.SIMILARITY,
        ).withColumn(TABLE, F.lit(SIMILAR_USERS)),
        ranked_lists(
            similar_items(item_factors, top_k=k, n_items=n_items, parallelism=parallelism),
            key=S.ITEM_ID, other=S.SIMILAR_ITEM_ID, score=S.SIMILARITY,
        ).withColumn(TABLE, F.lit(SIMILAR_ITEMS)),
        ranked_lists(
            recommend(user_factors, item_factors, top_n=top_n, exclude=exclude, item_prior=item_prior,
                      n_users=n_users, n_items=n_items, parallelism=parallelism),
            key=S.USER_ID, other=S.ITEM_ID, score=S.SCORE,
        ).withColumn(TABLE, F.lit(RECOMMENDATIONS)),
    ]
    union = functools.reduce(DataFrame.unionByName, parts)
    return union.select(TABLE, F.lit(run).cast("int").alias(RUN), S.ID, ITEMS, SCORES)


def recommendations_of(lists: DataFrame) -> DataFrame:
    """``user_id, rank, item_id, score``: the recommendation lists of :func:`lists_of` as rows again."""
    return lists.where(F.col(TABLE) == RECOMMENDATIONS).select(
        F.col(S.ID).alias(S.USER_ID), F.posexplode(F.arrays_zip(F.col(ITEMS).alias("i"), F.col(SCORES).alias("s")))
    ).select(
        S.USER_ID, (F.col("pos") + 1).cast("int").alias(S.RANK),
        F.col("col.i").cast("int").alias(S.ITEM_ID), F.col("col.s").cast("float").alias(S.SCORE),
    )


def pair_agreement(lists: DataFrame, pairs: Sequence[tuple[int, int]], *, rbo_p: float = A.DEFAULT_RBO_P) -> DataFrame:
    """``table, id, run_x, run_y, jaccard, rbo, identical`` for each of ``pairs`` of runs and each entity.

    ``lists`` is ``table, run, id, items`` (:func:`lists_of`). Jaccard is over the
    whole lists (their length is the table's k); ``identical`` is 1.0 when the
    two lists are equal in order. Entities missing from either run are left out.
    """
    spark = lists.sparkSession
    wanted = spark.createDataFrame([(int(x), int(y)) for x, y in pairs], "run_x int, run_y int")
    x = lists.select(TABLE, S.ID, F.col(RUN).alias("run_x"), F.col(ITEMS).alias("_x"))
    y = lists.select(TABLE, S.ID, F.col(RUN).alias("run_y"), F.col(ITEMS).alias("_y"))
    joined = F.broadcast(wanted).join(x, "run_x").join(y, [TABLE, S.ID, "run_y"])
    return joined.select(
        TABLE, S.ID, "run_x", "run_y",
        A.jaccard_col(F.col("_x"), F.col("_y")).alias("jaccard"),
        A.rbo_col(F.col("_x"), F.col("_y"), rbo_p).alias("rbo"),
        (F.col("_x") == F.col("_y")).cast("double").alias("identical"),
    )


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


# --- seeds and configurations ------------------------------------------------------------------


def seed_lists(
    cfg_a: Config, cfg_b: Config, seeds: int, seeds_a: Sequence[int] | None = None, seeds_b: Sequence[int] | None = None
) -> tuple[list[int], list[int]]:
    """The seeds of A and B: ``als.seed, als.seed + 1, ...`` of each configuration, ``seeds`` each.

    When B's would repeat one of A's (e.g. both configurations have seed 42),
    B's continue after A's largest. Disjoint seeds keep every fit independent:
    with equal seeds, equal ranks start from identical factors. Explicit lists
    must be disjoint and have at least 2 distinct seeds each.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 2:
        raise ConfigError(f"--seeds must be an integer >= 2 (within-configuration agreement needs two fits), got {seeds!r}")
    sa = list(seeds_a) if seeds_a else [cfg_a.als.seed + i for i in range(seeds)]
    sb = list(seeds_b) if seeds_b else [cfg_b.als.seed + i for i in range(seeds)]
    if not seeds_b and set(sa) & set(sb):
        sb = [max(sa) + 1 + i for i in range(len(sb))]
    for name, values in (("A", sa), ("B", sb)):
        if len(set(values)) != len(values) or len(values) < 2:
            raise ConfigError(f"the seeds of {name} must be at least 2 distinct integers, got {values}")
    if set(sa) & set(sb):
        raise ConfigError(f"the seeds of A {sa} and B {sb} overlap: every fit must be independent")
    return sa, sb


def config_differences(cfg_a: Config, cfg_b: Config) -> list[tuple[str, Any, Any]]:
    """``(section.key, value in A, value in B)`` for every key that differs (seed and checkpoint dir left out)."""
    da, db = cfg_a.to_dict(), cfg_b.to_dict()
    out = []
    for section, values in da.items():
        for key, value in values.items():
            if (section, key) in (("als", "seed"), ("als", "checkpoint_dir")):
                continue
            if db[section][key] != value:
                out.append((f"{section}.{key}", value, db[section][key]))
    return out


def check_comparable(cfg_a: Config, cfg_b: Config) -> None:
    """Raise :class:`ConfigError` unless A and B read the same ratings and keep the same users and items.

    The input is read once (with A's ``ingest`` settings), and the lists of A
    and B can only be compared entity by entity when both keep the same
    ratings as interactions.
    """
    for key in ("format", "rating_min", "rating_max", "min_rating"):
        va, vb = getattr(cfg_a.ingest, key), getattr(cfg_b.ingest, key)
        if va != vb:
            raise ConfigError(
                f"ingest.{key} differs ({va} in A, {vb} in B): compare reads the input once and needs both "
                "configurations to have the same users and items"
            )


def _positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


# --- fitting one configuration with several seeds ---------------------------------------------


@dataclass
class FittedRuns:
    """The lists of one configuration fitted with several seeds (:func:`fit_runs`).

    ``run_lists`` holds one cached DataFrame per seed (``table, run, id, items,
    scores``, ``run`` = position in ``seeds``). Call :meth:`release` when done.
    """

    name: str
    config: Config
    seeds: list[int]
    run_lists: list[DataFrame]
    k: int
    top_n: int
    interactions: int
    users: int
    items: int
    blocks: int
    fit_seconds: list[float]
    calibration: list[progress.FitRecord]
    seconds_per_iteration: float | None
    measured_as: str
    holdout: dict[str, Any] | None = None

    @property
    def lists(self) -> DataFrame:
        """The union of the per-seed lists (reads their caches; deliberately not cached itself:
        unpersisting a cache makes Spark drop or rebuild the caches built on it)."""
        return functools.reduce(DataFrame.unionByName, self.run_lists)

    def release(self) -> None:
        for df in self.run_lists:
            df.unpersist()

    def cost(self) -> dict[str, Any]:
        return {
            "config": self.name, "iterations": self.config.als.max_iter, "rank": self.config.als.rank,
            "blocks": self.blocks, "seconds_per_iteration": self.seconds_per_iteration, "measured_as": self.measured_as,
            "fit_seconds": self.fit_seconds, "calibration": [r.to_dict() for r in self.calibration],
        }


def _seconds_per_iteration(
    calibration: Sequence[progress.FitRecord], fits: Sequence[progress.FitRecord]
) -> tuple[float | None, str]:
    """Seconds per iteration of one configuration and how it was measured.

    When the seeded fits are at least 3 iterations longer than the longest
    calibration fit: (median seeded fit - that fit) / the difference in
    iterations, which cancels the fixed cost of a fit. Else the calibration
    slope.
    """
    if fits and calibration:
        longest = max(calibration, key=lambda r: r.iterations)
        n = fits[0].iterations
        if n >= longest.iterations + 3:
            t = float(np.median([r.seconds for r in fits]))
            return (t - longest.seconds) / (n - longest.iterations), (
                f"(median {n}-iteration fit - {longest.iterations}-iteration fit) / {n - longest.iterations}"
            )
    cost = progress.cost_from(calibration)
    if cost is not None:
        lengths = sorted({r.iterations for r in calibration})
        return cost.seconds_per_iteration, f"slope of fits of {' and '.join(map(str, lengths))} iterations"
    return None, "not measured"


def fit_runs(
    spark: SparkSession,
    ratings: DataFrame,
    cfg: Config,
    seeds: Sequence[int],
    *,
    name: str = "A",
    k: int = 5,
    top_n: int = 10,
    calibration: Sequence[int] = (1, 3),
    warm_up: bool = True,
    holdout: bool = False,
    holdout_k: int = 10,
    test_fraction: float = 0.25,
    split_seed: int = 42,
    progress_interval: float = 30.0,
    timer: Timer | None = None,
) -> FittedRuns:
    """Fit ``cfg`` once per seed and keep each fit's lists; optionally time and score the configuration.

    ``ratings`` has ``user_id, item_id, rating``; the fits train on
    :func:`~als_spark.feedback.to_interactions` with ``cfg.ingest`` and the
    recommendations exclude what ``cfg.recommend.exclude`` says and add the
    ``cfg.recommend.popularity_weight`` prior. Each fit's
    lists (:func:`lists_of`) are cached (one Spark job per fit) and the model
    is dropped, so memory holds lists, never more than one model. With
    ``calibration`` (two or more short lengths) the configuration is first
    timed at those lengths (after an untimed warm-up fit with ``warm_up``),
    for the remaining-time estimates and the reported time per iteration. With ``holdout`` it is also scored once by
    :func:`~als_spark.evaluate.run_evaluate` (``@holdout_k``, its own
    ``als.seed``). Fits run inside :func:`~als_spark.model.checkpoint_dir`.
    """
    _positive(k=k, top_n=top_n, holdout_k=holdout_k)
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"the seeds of {name} must be distinct, got {seeds}")
    timer = timer or Timer()
    par = model.parallelism(spark)
    blocks = cfg.als.num_blocks or par
    interactions = feedback.to_interactions(ratings, cfg.ingest).cache()
    exclude = feedback.exclusions(ratings, interactions, cfg.recommend.exclude)
    exclude = exclude.cache() if exclude is not None else None
    prior = popularity_prior(interactions, cfg.recommend.popularity_weight)
    lists: list[DataFrame] = []
    try:
        row = interactions.agg(F.count(F.lit(1)), F.count_distinct(S.USER_ID), F.count_distinct(S.ITEM_ID)).first()
        n_rows, n_users, n_items = int(row[0]), int(row[1]), int(row[2])
        with model.checkpoint_dir(spark, cfg.als.checkpoint_dir), timer.stage(f"compare_fit_{name}"):
            cost, cal_records = progress.calibrate(interactions, cfg.als, num_blocks=blocks, label=name,
                                                   iterations=calibration, warm_up=warm_up)
            if cost is not None:
                log.info("compare: %s: %d fits of %d iterations, estimated %s", name, len(seeds), cfg.als.max_iter,
                         progress.format_seconds(len(seeds) * cost.seconds(cfg.als.max_iter)))
            records = []
            for run, seed in enumerate(seeds):
                fitted, record = progress.timed_fit(
                    interactions, dataclasses.replace(cfg.als, seed=seed), num_blocks=blocks,
                    label=f"{name} seed {seed} (fit {run + 1} of {len(seeds)})", cost=cost, interval=progress_interval,
                )
                lists.append(lists_of(fitted, run, k=k, top_n=top_n, exclude=exclude, item_prior=prior, n_users=n_users,
                                      n_items=n_items, parallelism=par).cache())
                lists[-1].count()
                del fitted
                gc.collect()  # let the model's JVM object go, so Spark can clean its cached factors
                records.append(record)
        spi, how = _seconds_per_iteration(cal_records, records)
        holdout_row = None
        if holdout:
            with timer.stage(f"compare_holdout_{name}"):
                estimate = progress.FitCost(seconds_per_iteration=spi, overhead_seconds=0.0) if spi else None
                with progress.FitMonitor(spark, f"{name} holdout fit and scoring", iterations=cfg.als.max_iter, cost=estimate,
                                         interval=progress_interval, count_jobs=False):
                    _, rows = evaluate.run_evaluate(
                        spark, interactions, cfg, k=holdout_k, test_fraction=test_fraction,
                        split="random", seed=split_seed, baselines=(),
                    )
            holdout_row = {**rows[0], "split_seed": split_seed, "seed": cfg.als.seed}
    except BaseException:
        for df in lists:
            df.unpersist()
        raise
    finally:
        interactions.unpersist()
        if exclude is not None:
            exclude.unpersist()
    return FittedRuns(
        name=name, config=cfg, seeds=seeds, run_lists=lists, k=k, top_n=top_n, interactions=n_rows, users=n_users,
        items=n_items, blocks=blocks, fit_seconds=[r.seconds for r in records], calibration=cal_records,
        seconds_per_iteration=spi, measured_as=how, holdout=holdout_row,
    )


# --- the comparison -----------------------------------------------------------------------------


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
            "table": self.table, "measure": self.measure, "k": self.k, "verdict": self.verdict,
            "test": self.test.to_dict(), "dominance_a": self.dominance_a, "dominance_b": self.dominance_b,
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
    lists (those of the interactions). Runs a few small Spark jobs; the
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
        raise ConfigError(f"the seeds of {runs_a.name} {runs_a.seeds} and {runs_b.name} {runs_b.seeds} overlap: "
                          "every fit must be independent")
    if len(runs_a.seeds) < 2 or len(runs_b.seeds) < 2:
        raise ConfigError("each configuration needs at least 2 seeds (within-configuration agreement)")
    timer = timer or Timer()
    offset = len(runs_a.seeds)
    runs = [{"run": i, "side": "a", "config": runs_a.name, "seed": s, "fit_seconds": runs_a.fit_seconds[i]}
            for i, s in enumerate(runs_a.seeds)]
    runs += [{"run": offset + i, "side": "b", "config": runs_b.name, "seed": s, "fit_seconds": runs_b.fit_seconds[i]}
             for i, s in enumerate(runs_b.seeds)]
    ids_a, ids_b = list(range(offset)), list(range(offset, len(runs)))
    k, top_n = runs_a.k, runs_a.top_n
    with timer.stage("compare_agreement"):
        all_lists = runs_a.lists.unionByName(runs_b.lists.withColumn(RUN, (F.col(RUN) + offset).cast("int")))
        all_pairs = [(x, y) for x in range(len(runs)) for y in range(x + 1, len(runs))]
        pairwise = pair_agreement(all_lists, all_pairs, rbo_p=rbo_p).cache()
        try:
            per_entity = entity_agreement(pairwise, ids_a, ids_b).orderBy(TABLE, S.ID).toPandas()
            pair_means = (
                pairwise.groupBy(TABLE, "run_x", "run_y")
                .agg(F.count(F.lit(1)).alias("entities"), F.avg("jaccard").alias("jaccard"), F.avg("rbo").alias("rbo"))
                .orderBy(TABLE, "run_x", "run_y")
                .toPandas()
            )
        finally:
            pairwise.unpersist()
        known = {"user": runs_a.run_lists[0].where(F.col(TABLE) == SIMILAR_USERS).select(F.col(S.ID).alias(S.USER_ID)),
                 "item": runs_a.run_lists[0].where(F.col(TABLE) == SIMILAR_ITEMS).select(F.col(S.ID).alias(S.ITEM_ID))}
        resolved = [(f, resolve_focus(known[f.kind], f)) for f in focus]
        focus_rows = focus_lists(all_lists, resolved)
    list_length = {SIMILAR_USERS: min(k, runs_a.users - 1), SIMILAR_ITEMS: min(k, runs_a.items - 1), RECOMMENDATIONS: top_n}

    tests: list[TableVerdict] = []
    verdicts: dict[str, str] = {}
    for table in TABLES:
        rows = per_entity[per_entity[TABLE] == table]
        pm = pair_means[pair_means[TABLE] == table]
        for measure in MEASURES:
            values = {(int(x), int(y)): float(v) for x, y, v in zip(pm["run_x"], pm["run_y"], pm[measure])}
            test = A.run_label_permutation(values, ids_a, ids_b)
            verdict = DIFFERENT if A.significant(test, alpha=alpha) else NOT_DISTINGUISHABLE
            between = rows[f"{measure}_between"].to_numpy()
            tests.append(TableVerdict(
                table, measure, list_length[table], test,
                A.dominance(rows[f"{measure}_within_a"].to_numpy(), between),
                A.dominance(rows[f"{measure}_within_b"].to_numpy(), between),
                verdict,
            ))
            if measure == PRIMARY:
                verdicts[table] = verdict
        log.info("compare: %s: %s", table, verdicts[table])

    by_run = {r["run"]: r for r in runs}

    def kind(x: int, y: int) -> str:
        sides = {by_run[x]["side"], by_run[y]["side"]}
        return "between" if len(sides) == 2 else f"within_{sides.pop()}"

    labelled = pair_means.assign(
        config_x=[by_run[int(x)]["config"] for x in pair_means["run_x"]],
        seed_x=[by_run[int(x)]["seed"] for x in pair_means["run_x"]],
        config_y=[by_run[int(y)]["config"] for y in pair_means["run_y"]],
        seed_y=[by_run[int(y)]["seed"] for y in pair_means["run_y"]],
        kind=[kind(int(x), int(y)) for x, y in zip(pair_means["run_x"], pair_means["run_y"])],
    )[[f.name for f in PAIRS.fields]]
    summary = {
        "names": {"a": runs_a.name, "b": runs_b.name},
        "configs": {"a": runs_a.config.to_dict(), "b": runs_b.config.to_dict()},
        "differences": [list(d) for d in config_differences(runs_a.config, runs_b.config)],
        "seeds": {"a": runs_a.seeds, "b": runs_b.seeds},
        "parameters": {"k": k, "top_n": top_n, "rbo_p": rbo_p, "alpha": alpha, "primary_measure": PRIMARY},
        "data": {"interactions": runs_a.interactions, "users": runs_a.users, "items": runs_a.items},
        "spark": {"parallelism": model.parallelism(spark), "blocks": {"a": runs_a.blocks, "b": runs_b.blocks},
                  "blas": blas_implementation(spark)},
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
        verdicts=verdicts, tests=tests, report=compare_markdown(summary), png=plot_png(per_entity, summary),
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
    recommendation lists ``top_n``. Returns a :class:`CompareResult`; nothing
    is written.
    """
    _positive(k=k, top_n=top_n, holdout_k=holdout_k)
    _check_alpha(alpha)
    if names[0] == names[1]:
        raise ConfigError(f"the two configurations need different names, got {names[0]!r} twice")
    check_comparable(cfg_a, cfg_b)
    seeds_a, seeds_b = seed_lists(cfg_a, cfg_b, seeds, seeds_a, seeds_b)
    if focus:  # fail before the fits, not after
        interactions = feedback.to_interactions(ratings, cfg_a.ingest)
        for f in focus:
            resolve_focus(interactions, f)
    timer = timer or Timer()
    common = dict(k=k, top_n=top_n, calibration=calibration, holdout=holdout, holdout_k=holdout_k,
                  test_fraction=test_fraction, split_seed=split_seed, progress_interval=progress_interval, timer=timer)
    fitted: list[FittedRuns] = []
    try:
        # One warm-up fit (JIT compilation) serves both configurations: B runs in the same, warm JVM.
        fitted.append(fit_runs(spark, ratings, cfg_a, seeds_a, name=names[0], warm_up=True, **common))  # type: ignore[arg-type]
        fitted.append(fit_runs(spark, ratings, cfg_b, seeds_b, name=names[1], warm_up=False, **common))  # type: ignore[arg-type]
        return compare_runs(spark, fitted[0], fitted[1], focus=focus, alpha=alpha, rbo_p=rbo_p, timer=timer)
    finally:
        for runs in fitted:
            runs.release()


# --- the report ------------------------------------------------------------------------------


def blocks(parts: Sequence[str]) -> str:
    """Markdown blocks separated by one blank line (a table or heading must not touch a paragraph)."""
    return "\n".join(p.strip("\n") + "\n" for p in parts if p.strip())


def md_table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, ``–`` for a missing one."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def lists_table(focus: dict[str, Any], columns: Sequence[tuple[str, str]]) -> str:
    """A focus entity's lists side by side: one column per ``(run, heading)``, cells ``id (score)``."""
    length = max((len(v) for v in focus["lists"].values()), default=0)
    rows = []
    for i in range(length):
        row = [str(i + 1)]
        for run, _ in columns:
            entries = focus["lists"].get(run, [])
            row.append(f"{entries[i][0]} ({entries[i][1]:.3f})" if i < len(entries) else "")
        rows.append(row)
    return md_table(["rank", *[heading for _, heading in columns]], rows)


def focus_heading(focus: dict[str, Any]) -> str:
    same = "" if focus["focus"] == f"{focus['kind']} id {focus['id']}" else f" (= {focus['kind']} id {focus['id']} in the input file)"
    return f"{focus['focus']}{same}: {TITLES[focus['table']]}"


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
    out.append(md_table(["setting", na, nb], diffs) if diffs else "The two configurations differ only in their seeds.\n")

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
        + (", whatever the dependence between entities. With this few seeds the observed split must be the most "
           "extreme one; more seeds lower the smallest attainable p (4 seeds each: 0.029)."
           if t0["smallest_p"] > par["alpha"] else ", whatever the dependence between entities.")
        + f" The verdict is on {MEASURE_TITLES[par['primary_measure']]}@k; RBO is tested the same way. "
        f"**Effect sizes**: the statistic (in agreement units) and, per entity, the paired dominance against each "
        f"configuration: the share of entities whose lists agree more within it than between, minus the opposite "
        f"share (+1: every entity agrees less across configurations).\n\n"
    )
    head = ["table", "measure", f"within {na}", f"within {nb}", "between", "effect: min(within) - between",
            "p (fit level)", f"dominance vs {na}", f"dominance vs {nb}", "verdict"]
    rows = []
    for t in tests:
        x = t["test"]
        rows.append((
            TITLES[t["table"]], f"{MEASURE_TITLES[t['measure']]}@{t['k']}", fmt(x["within_a"]), fmt(x["within_b"]),
            fmt(x["between"]), f"{x['statistic']:+.3f}", f"{x['p_value']:.3f}", fmt(t["dominance_a"], 2),
            fmt(t["dominance_b"], 2), t["verdict"],
        ))
    out.append(md_table(head, rows))

    out.append("\n## Cost and quality\n")
    rows = []
    h0 = next(iter(summary["holdout"].values()), {})
    for side in ("a", "b"):
        c, h = summary["costs"][side], summary["holdout"].get(side, {})
        rows.append((
            summary["names"][side], c["rank"], c["iterations"], fmt(c["seconds_per_iteration"], 2),
            ", ".join(f"{s:.1f}" for s in c["fit_seconds"]),
            fmt(h.get("ndcg"), 4), fmt(h.get("precision"), 4), fmt(h.get("recall"), 4), fmt(h.get("map"), 4),
        ))
    hk = h0.get("k", "k")
    out.append(md_table(["config", "rank", "iterations", "s / iteration", "fit seconds (each seed)",
                         f"NDCG@{hk}", f"precision@{hk}", f"recall@{hk}", f"MAP@{hk}"], rows))
    out.append(
        f"\nTime per iteration: {summary['costs']['a']['measured_as']} ({na}); "
        f"{summary['costs']['b']['measured_as']} ({nb}). Fit seconds include the fit's fixed cost. "
        + (f"Holdout: per-user random split, {h0.get('test_fraction', 0):g} of each user's interactions held out "
           f"(split seed {h0.get('split_seed')}), one fit per configuration on the train side with its own als.seed, "
           f"train items excluded from the recommendations.\n"
           if summary["holdout"] else "No holdout evaluation.\n")
    )

    columns = [(str(r["run"]), f"{r['config']} seed {r['seed']}") for r in sorted(summary["runs"], key=lambda r: r["run"])]
    for fr in summary["focus"]:
        out.append(f"\n## {focus_heading(fr)}\n")
        out.append(lists_table(fr, columns))
        out.append("\nCells: id (cosine similarity)." if fr["table"] != RECOMMENDATIONS else "\nCells: item id (score).")

    out.append("\n## Agreement of every pair of fits (mean over entities)\n")
    rows = [
        (TITLES[p["table"]], f"{p['config_x']} seed {p['seed_x']}", f"{p['config_y']} seed {p['seed_y']}",
         p["kind"].replace("within_a", f"within {na}").replace("within_b", f"within {nb}"),
         fmt(p["jaccard"]), fmt(p["rbo"]))
        for p in summary["pairs"]
    ]
    out.append(md_table(["table", "fit", "fit", "kind", "Jaccard", "RBO"], rows))
    out.append(
        f"\nJaccard@k = |A ∩ B| / |A ∪ B| of the two lists; RBO = extrapolated rank-biased overlap, p = {par['rbo_p']} "
        "(Webber et al. 2010, eq. 32; 1 for identical lists).\n"
    )
    return blocks(out)


def plot_png(per_entity: pd.DataFrame, summary: dict[str, Any]) -> bytes | None:
    """Violin plots of the per-entity agreement within A, within B and between, per table and measure.

    ``None`` (with a warning) when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed: compare.png is not written (pip install 'als-spark[plot]')")
        return None
    na, nb = summary["names"]["a"], summary["names"]["b"]
    fig = Figure(figsize=(4.2 * len(TABLES), 7.0), layout="constrained")
    FigureCanvasAgg(fig)
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
                ax.scatter([1, 2, 3], [float(np.mean(d)) for d in data], marker="D", color="k", s=14, zorder=3, label="mean")
            ax.set_xticks([1, 2, 3], [textwrap.fill(f"within {na}", 16), textwrap.fill(f"within {nb}", 16), "between"],
                          fontsize="small")
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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()
