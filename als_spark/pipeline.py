"""The pipeline's stages as jobs: read, call the library, write.

This is the edge where paths are read and tables written; everything between is
``DataFrame -> DataFrame`` library code. The CLI, ``jobs/*.py`` (spark-submit),
the Databricks job and notebooks all call these functions, so they run the same
code. Each stage records its counts and timings in ``run.json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from als_spark import caching, feedback, ingest, model, publish, runinfo, session
from als_spark import schema as S
from als_spark.config import Config
from als_spark.errors import InputDataError
from als_spark.recommend import popularity_prior, recommend
from als_spark.similarity import similar_items, similar_users
from als_spark.titles import with_title

log = logging.getLogger(__name__)

DATASETS = ("synthetic", "ml-100k")


@dataclass(frozen=True)
class Source:
    """Where the ratings come from: a file (``path``) or a built-in ``dataset``."""

    path: str | None = None
    dataset: str | None = None
    items: str | None = None  #: item file with titles; default: the one beside ``path``
    synthetic_seed: int = 42
    synthetic_ratings: int = 100_000  #: size of ``dataset="synthetic"`` (MovieLens-shaped users and items)


class RunLog:
    """One command's run: stages its tables, then publishes them and ``run.json`` together.

    Use :func:`running`; stage functions call :meth:`write_table` and add to
    ``counts``, ``input``, ``spark`` and ``timer``.
    """

    def __init__(self, spark: SparkSession, output: str, command: str, config: Config) -> None:
        self.spark, self.output, self.command, self.config = spark, output, command, config
        self.run_id = uuid.uuid4().hex
        self.started_at = _now()
        self.input: dict[str, Any] = {}
        self.counts: dict[str, Any] = {}
        self.outputs: dict[str, str] = {}
        self.details: dict[str, Any] = {}
        quick = session.jvm_quick_jit(spark)
        if quick is not None:
            self.details["quick_jit"] = quick
        self.timer = runinfo.Timer()
        self.publisher = publish.Publisher(spark, output, self.run_id)
        self.result: dict[str, Any] = {}

    def write_table(self, df: DataFrame, name: str) -> None:
        """Stage ``df`` as table ``name``; it is published when the run succeeds."""
        self.outputs[name] = self.publisher.write_table(df, name)

    def stage_path(self, name: str) -> str:
        """A staging path for a directory written by another writer (the ALS model)."""
        self.outputs[name] = publish.table_path(self.output, name)
        return self.publisher.path(name)

    def finish(self) -> dict[str, Any]:
        """Publish every staged table, then write ``run.json`` (last, so it names what was published)."""
        with self.timer.stage("publish"):
            rows = self.publisher.publish()
        self.counts.update({name: n for name, n in rows.items() if name in PUBLISHED_COUNTS})
        # Stage commands (ingest, train, ...) add to the run.json of the stages before them.
        previous = publish.read_json(self.output, "run.json") or {}
        staged = self.command != "run" and previous.get("command") != "run"
        merge = (lambda key, new: {**previous.get(key, {}), **new}) if staged else (lambda key, new: new)
        published = {name: {"path": self.outputs[name], "rows": n} for name, n in rows.items()}
        self.result = {
            "command": self.command,
            "run_id": self.run_id,
            "status": "succeeded",
            "started_at": self.started_at,
            "finished_at": _now(),
            "input": merge("input", self.input),
            "config": self.config.to_dict(),
            "counts": merge("counts", self.counts),
            "timings_seconds": merge("timings_seconds", self.timer.seconds),
            "outputs": merge("outputs", self.outputs),
            "published": merge("published", published),
            "spark": merge("spark", {"master": session.describe(self.spark), **self.details}),
            "versions": runinfo.versions(self.spark),
        }
        self.publisher.write_file("run.json", publish.to_json(self.result))
        return self.result


#: Published tables whose row counts also go into ``run.json`` ``counts``.
PUBLISHED_COUNTS = ("recommendations", "similar_items", "similar_users")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def running(spark: SparkSession, output: str, command: str, config: Config) -> Iterator[RunLog]:
    """A run that publishes its tables if the block succeeds and publishes nothing if it fails."""
    runlog = RunLog(spark, output, command, config)
    # Every DataFrame cached during the run is released when it ends (see als_spark.caching).
    with caching.scope():
        try:
            yield runlog
        except BaseException:
            runlog.publisher.abort()
            raise
        runlog.finish()


@dataclass
class Ingested:
    ratings: DataFrame  #: validated, de-duplicated input (cached)
    rejected: DataFrame  #: line, reason
    interactions: DataFrame  #: what ALS trains on (cached)
    items: DataFrame | None  #: item_id, title
    summary: DataFrame


def _load_ratings(
    spark: SparkSession, source: Source, cfg: Config, runlog: RunLog, *, with_items: bool = True
) -> tuple[ingest.Ratings, DataFrame | None]:
    """The validated ratings and, with ``with_items``, the item titles (``None`` when there is no item file).

    Commands that write no titles (evaluate, tune, compare, converge) pass ``with_items=False`` and
    skip reading the item file.
    """
    if source.dataset == "synthetic":
        from als_spark import synthetic

        data = synthetic.generate_for_size(source.synthetic_ratings, seed=source.synthetic_seed)
        df = caching.cache(spark.createDataFrame(data.ratings.astype({S.RATING: "float64"}), schema=S.RATINGS))
        n = df.count()
        items = spark.createDataFrame(data.items, schema=S.ITEMS)
        runlog.input.update(
            {"dataset": "synthetic", "seed": source.synthetic_seed, "ratings": source.synthetic_ratings, "format": "synthetic"}
        )
        rejected = spark.createDataFrame([], schema=S.REJECTED)
        ratings = ingest.Ratings(
            df=df, rejected=rejected, rows_read=n, rows_rejected=0, duplicates_dropped=0, rows=n, fmt="synthetic"
        )
        return ratings, items

    path = source.path
    if source.dataset == "ml-100k":
        from als_spark import datasets

        path = str(datasets.fetch_ml_100k() / "u.data")
        runlog.input["dataset"] = "ml-100k"
    if path is None:
        raise InputDataError("no input: pass --input PATH or --dataset synthetic|ml-100k")
    ratings = ingest.read_ratings(
        spark, path, fmt=cfg.ingest.format, rating_range=(cfg.ingest.rating_min, cfg.ingest.rating_max)
    )
    ingest.check_rejected(ratings, cfg.ingest.max_rejected_fraction, path)
    items_path = (source.items or ingest.items_path_beside(path, ratings.fmt)) if with_items else None
    items = None
    if items_path is not None:
        try:
            items = caching.cache(ingest.read_items(spark, items_path))
            items.count()
        except InputDataError:
            if source.items:
                raise
            log.info("no item file at %s: tables will have no titles", items_path)
            items_path = None
    local = publish.local_path(path)
    runlog.input.update(
        {
            "path": os.path.abspath(local) if local else path,
            "format": ratings.fmt,
            "sha256": runinfo.sha256_of(local) if local else None,
            "items_path": items_path,
        }
    )
    return ratings, items


def run_ingest(spark: SparkSession, source: Source, cfg: Config, runlog: RunLog) -> Ingested:
    """Read and validate the ratings, derive the interactions and the summary."""
    with runlog.timer.stage("ingest"):
        ratings, items = _load_ratings(spark, source, cfg, runlog)
        interactions = caching.cache(feedback.to_interactions(ratings.df, cfg.ingest))
        summary = caching.cache(feedback.dataset_summary(interactions))
        row = summary.first()
        if row is None or row["total_users"] == 0:
            raise InputDataError(
                f"no interactions left: none of the {ratings.rows} ratings is >= ingest.min_rating "
                f"({cfg.ingest.min_rating}). Lower it with --set ingest.min_rating=..."
            )
        n_interactions = interactions.count()
        # interactions are a subset of ratings: what is rated but absent had no rating >= min_rating
        rated = ratings.df.agg(F.count_distinct(S.USER_ID), F.count_distinct(S.ITEM_ID)).first()
        users_dropped = rated[0] - row["total_users"]
        items_dropped = rated[1] - row["total_items"]
    runlog.counts.update(
        {
            "rows_read": ratings.rows_read,
            "rows_rejected": ratings.rows_rejected,
            "duplicates_dropped": ratings.duplicates_dropped,
            "ratings": ratings.rows,
            "interactions": n_interactions,
            "users": row["total_users"],
            "items": row["total_items"],
            "users_without_interactions": users_dropped,
            "items_without_interactions": items_dropped,
        }
    )
    if users_dropped or items_dropped:
        log.warning(
            "%d users and %d items have no rating >= %s and get no factors, recommendations or neighbours",
            users_dropped, items_dropped, cfg.ingest.min_rating,
        )
    return Ingested(ratings=ratings.df, rejected=ratings.rejected, interactions=interactions, items=items, summary=summary)


# Tables are sorted within each file (by key, then rank), not globally: a global sort costs a
# sampling job and a shuffle per table and readers do not depend on file order.


def write_ingested(data: Ingested, runlog: RunLog) -> None:
    with runlog.timer.stage("write_ingest"):
        tables = {
            "dataset_summary": publish.conform(data.summary, S.DATASET_SUMMARY),
            "ratings": publish.conform(data.ratings, S.RATINGS).sortWithinPartitions(S.USER_ID, S.ITEM_ID),
            "interactions": publish.conform(data.interactions, S.INTERACTIONS).sortWithinPartitions(S.USER_ID, S.ITEM_ID),
            "rejected": publish.conform(data.rejected, S.REJECTED),
        }
        if data.items is not None:
            tables["items"] = publish.conform(data.items, S.ITEMS).sortWithinPartitions(S.ITEM_ID)
        for name, df in tables.items():
            runlog.write_table(df, name)


def run_train(spark: SparkSession, interactions: DataFrame, cfg: Config, runlog: RunLog) -> tuple[DataFrame, DataFrame]:
    """Fit ALS (checkpointed), write the model and both factor tables; return the factors."""
    blocks = cfg.als.num_blocks or model.parallelism(spark)
    runlog.details.update({"parallelism": model.parallelism(spark), "als_blocks": blocks})
    with runlog.timer.stage("fit"):
        fitted = model.fit(interactions, cfg.als, num_blocks=blocks)
    with runlog.timer.stage("write_model"):
        fitted.write().overwrite().save(runlog.stage_path("model"))
        user_factors, item_factors = model.factors(fitted)
        user_factors = caching.cache(publish.conform(user_factors, S.FACTORS).sortWithinPartitions(S.ID))
        item_factors = caching.cache(publish.conform(item_factors, S.FACTORS).sortWithinPartitions(S.ID))
        runlog.write_table(user_factors, "user_factors")
        runlog.write_table(item_factors, "item_factors")
    runlog.counts.update({"user_factors": user_factors.count(), "item_factors": item_factors.count()})
    return user_factors, item_factors


def run_recommend(
    spark: SparkSession,
    user_factors: DataFrame,
    item_factors: DataFrame,
    ratings: DataFrame,
    interactions: DataFrame,
    items: DataFrame | None,
    cfg: Config,
    runlog: RunLog,
) -> None:
    with runlog.timer.stage("recommend"):
        exclude = feedback.exclusions(ratings, interactions, cfg.recommend.exclude)
        recs = recommend(
            user_factors,
            item_factors,
            top_n=cfg.recommend.top_n,
            exclude=exclude,
            item_prior=popularity_prior(interactions, cfg.recommend.popularity_weight),
            n_users=runlog.counts.get("user_factors"),
            n_items=runlog.counts.get("item_factors"),
            parallelism=model.parallelism(spark),
        )
        recs = publish.conform(recs, S.RECOMMENDATIONS)
        if items is not None:
            recs = with_title(recs, items)
        recs = recs.sortWithinPartitions(S.USER_ID, S.RANK)
        runlog.write_table(recs, "recommendations")


def run_similar(
    spark: SparkSession, user_factors: DataFrame, item_factors: DataFrame, items: DataFrame | None, cfg: Config, runlog: RunLog
) -> None:
    k, par = cfg.similar.top_k, model.parallelism(spark)
    with runlog.timer.stage("similar_items"):
        sim_items = publish.conform(
            similar_items(item_factors, top_k=k, n_items=runlog.counts.get("item_factors"), parallelism=par), S.SIMILAR_ITEMS
        )
        if items is not None:
            sim_items = with_title(sim_items, items).transform(
                with_title, items, id_col=S.SIMILAR_ITEM_ID, title_col=S.SIMILAR_TITLE
            )
        sim_items = sim_items.sortWithinPartitions(S.ITEM_ID, S.RANK)
        runlog.write_table(sim_items, "similar_items")
    with runlog.timer.stage("similar_users"):
        sim_users = publish.conform(
            similar_users(user_factors, top_k=k, n_users=runlog.counts.get("user_factors"), parallelism=par), S.SIMILAR_USERS
        ).sortWithinPartitions(S.USER_ID, S.RANK)
        runlog.write_table(sim_users, "similar_users")


def _optional_table(spark: SparkSession, output: str, name: str) -> DataFrame | None:
    try:
        return publish.read_table(spark, output, name)
    except Exception:  # noqa: BLE001 - a missing optional table is normal
        return None


def _required_table(spark: SparkSession, output: str, name: str, produced_by: str) -> DataFrame:
    table = _optional_table(spark, output, name)
    if table is None:
        raise InputDataError(
            f"{publish.table_path(output, name)} is missing: run `als-spark {produced_by} --output {output}` first "
            "(or `als-spark run` for the whole pipeline)."
        )
    return table


def run_all(spark: SparkSession, source: Source, cfg: Config, output: str) -> dict[str, Any]:
    """The whole pipeline: ingest, train, recommend, similar; returns what ``run.json`` records."""
    with running(spark, output, "run", cfg) as runlog, model.checkpoint_dir(spark, cfg.als.checkpoint_dir) as ckpt:
        runlog.details["checkpoint_dir"] = ckpt
        data = run_ingest(spark, source, cfg, runlog)
        write_ingested(data, runlog)
        user_factors, item_factors = run_train(spark, data.interactions, cfg, runlog)
        run_recommend(spark, user_factors, item_factors, data.ratings, data.interactions, data.items, cfg, runlog)
        run_similar(spark, user_factors, item_factors, data.items, cfg, runlog)
    return runlog.result


def stage_ingest(spark: SparkSession, source: Source, cfg: Config, output: str) -> dict[str, Any]:
    with running(spark, output, "ingest", cfg) as runlog:
        write_ingested(run_ingest(spark, source, cfg, runlog), runlog)
    return runlog.result


def stage_train(spark: SparkSession, cfg: Config, output: str) -> dict[str, Any]:
    with running(spark, output, "train", cfg) as runlog, model.checkpoint_dir(spark, cfg.als.checkpoint_dir) as ckpt:
        interactions = caching.cache(_required_table(spark, output, "interactions", "ingest"))
        runlog.details["checkpoint_dir"] = ckpt
        runlog.counts["interactions"] = interactions.count()
        run_train(spark, interactions, cfg, runlog)
    return runlog.result


def _factors(spark: SparkSession, output: str, runlog: RunLog) -> tuple[DataFrame, DataFrame]:
    user_factors = caching.cache(_required_table(spark, output, "user_factors", "train"))
    item_factors = caching.cache(_required_table(spark, output, "item_factors", "train"))
    runlog.counts.update({"user_factors": user_factors.count(), "item_factors": item_factors.count()})
    return user_factors, item_factors


def stage_recommend(spark: SparkSession, cfg: Config, output: str) -> dict[str, Any]:
    with running(spark, output, "recommend", cfg) as runlog:
        user_factors, item_factors = _factors(spark, output, runlog)
        ratings = _required_table(spark, output, "ratings", "ingest")
        interactions = _required_table(spark, output, "interactions", "ingest")
        items = _optional_table(spark, output, "items")
        run_recommend(spark, user_factors, item_factors, ratings, interactions, items, cfg, runlog)
    return runlog.result


def stage_similar(spark: SparkSession, cfg: Config, output: str) -> dict[str, Any]:
    with running(spark, output, "similar", cfg) as runlog:
        user_factors, item_factors = _factors(spark, output, runlog)
        run_similar(spark, user_factors, item_factors, _optional_table(spark, output, "items"), cfg, runlog)
    return runlog.result


def metrics_markdown(rows: list[dict[str, Any]]) -> str:
    """The metrics rows as a Markdown table (what ``metrics.md`` holds)."""
    from als_spark.evaluate import METRIC_NAMES

    k = rows[0]["k"] if rows else "k"
    head = ["model", *[f"{m}@{k}" if m not in ("coverage",) else m for m in METRIC_NAMES], "users"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join([row["model"], *[f"{row[m]:.4f}" for m in METRIC_NAMES], str(row["users"])]) + " |")
    return "\n".join(lines) + "\n"


def stage_evaluate(
    spark: SparkSession, source: Source, cfg: Config, output: str, *, k: int, test_fraction: float, split: str, seed: int,
    exclude: str = "train",
) -> dict[str, Any]:
    """Hold-out evaluation of ``cfg`` against the baselines; writes ``metrics`` and ``metrics.md``."""
    from als_spark import evaluate

    with running(spark, output, "evaluate", cfg) as runlog:
        with runlog.timer.stage("ingest"):
            ratings, _ = _load_ratings(spark, source, cfg, runlog, with_items=False)
            interactions = evaluate.interactions_with_timestamp(ratings.df, cfg.ingest)
        metrics, rows = evaluate.run_evaluate(
            spark, interactions, cfg, k=k, test_fraction=test_fraction, split=split, seed=seed,
            exclude=exclude, rated=ratings.df, timer=runlog.timer,
        )
        runlog.write_table(metrics, "metrics")
        runlog.counts.update(
            {"rows_read": ratings.rows_read, "rows_rejected": ratings.rows_rejected, "evaluated_users": rows[0]["users"]}
        )
        runlog.input["evaluation"] = {"k": k, "test_fraction": test_fraction, "split": split, "seed": seed, "exclude": exclude}
        runlog.outputs["metrics.md"] = runlog.publisher.stage_file("metrics.md", metrics_markdown(rows))
    return {**runlog.result, "metrics": rows}


def stage_tune(
    spark: SparkSession,
    source: Source,
    cfg: Config,
    output: str,
    *,
    spec: Any,
    k: int,
    test_fraction: float,
    seed: int,
    compare: dict[str, Config],
    evaluate_test: bool = True,
) -> dict[str, Any]:
    """Hyper-parameter search (:func:`als_spark.tune.run_tune`) with ``cfg`` as the base; adds ``run.json``."""
    from als_spark import tune

    with running(spark, output, "tune", cfg) as runlog:
        with runlog.timer.stage("ingest"):
            ratings, _ = _load_ratings(spark, source, cfg, runlog, with_items=False)
        result = tune.run_tune(
            spark, ratings.df, cfg, output, spec=spec, k=k, test_fraction=test_fraction, seed=seed,
            compare=compare, evaluate_test=evaluate_test, timer=runlog.timer,
        )
        runlog.outputs.update(result.outputs)
        runlog.counts.update({
            "rows_read": ratings.rows_read, "rows_rejected": ratings.rows_rejected,
            "trials": len(result.trials), "trials_stopped": result.summary["stopped"],
        })
        runlog.input["tune"] = {
            "spec": spec.to_dict(), "k": k, "test_fraction": test_fraction, "seed": seed, "compare": sorted(compare),
        }
    return {**runlog.result, "metric": spec.metric, "best": result.summary["best"], "test_metrics": result.test_metrics}


def _stage_report(runlog: RunLog, stem: str, report: str, summary: dict[str, Any], png: bytes | None) -> None:
    """Stage ``<stem>.md``, ``<stem>.json`` and ``<stem>.png`` with the run's tables."""
    runlog.outputs[f"{stem}.md"] = runlog.publisher.stage_file(f"{stem}.md", report)
    runlog.outputs[f"{stem}.json"] = runlog.publisher.stage_file(f"{stem}.json", publish.to_json(summary))
    _stage_png(runlog, f"{stem}.png", png)


def _stage_png(runlog: RunLog, name: str, png: bytes | None) -> None:
    """Stage a PNG with the run's tables (local outputs only; skipped with a warning elsewhere)."""
    if png is None:
        return
    if publish.local_path(runlog.publisher.staging) is None:
        log.warning("%s is written to local outputs only; %s is remote", name, runlog.output)
        return
    local = publish.local_path(runlog.publisher.path(name))
    assert local is not None
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with open(local, "wb") as fh:
        fh.write(png)
    runlog.outputs[name] = publish.table_path(runlog.output, name)


def stage_compare(
    spark: SparkSession,
    source: Source,
    cfg_a: Config,
    cfg_b: Config,
    output: str,
    *,
    names: tuple[str, str] = ("A", "B"),
    seeds: int = 3,
    k: int = 5,
    top_n: int = 10,
    focus: Sequence[Any] = (),
    holdout: bool = True,
    test_fraction: float = 0.25,
    split_seed: int = 42,
    alpha: float = 0.05,
    progress_interval: float = 30.0,
) -> dict[str, Any]:
    """A against B beyond seed noise (:func:`als_spark.compare.run_compare`).

    Publishes ``agreement`` (per table and user / item), ``agreement_pairs``,
    ``compare.md``, ``compare.json`` and ``compare.png`` together, then
    ``run.json`` (its ``config`` is A's; ``input.compare`` holds both).
    """
    from als_spark import compare

    with running(spark, output, "compare", cfg_a) as runlog:
        with runlog.timer.stage("ingest"):
            ratings, _ = _load_ratings(spark, source, cfg_a, runlog, with_items=False)
        result = compare.run_compare(
            spark, ratings.df, cfg_a, cfg_b, seeds=seeds, k=k, top_n=top_n, focus=focus, holdout=holdout,
            test_fraction=test_fraction, split_seed=split_seed, alpha=alpha, names=names,
            progress_interval=progress_interval, timer=runlog.timer,
        )
        runlog.write_table(result.agreement, "agreement")
        runlog.write_table(result.pairs, "agreement_pairs")
        _stage_report(runlog, "compare", result.report, result.summary, result.png)
        data = result.summary["data"]
        runlog.counts.update({
            "rows_read": ratings.rows_read, "rows_rejected": ratings.rows_rejected,
            "interactions": data["interactions"], "users": data["users"], "items": data["items"],
            "fits": len(result.summary["runs"]),
        })
        runlog.input["compare"] = {
            "names": list(names), "config_a": cfg_a.to_dict(), "config_b": cfg_b.to_dict(),
            "seeds": result.summary["seeds"], "k": k, "top_n": top_n, "alpha": alpha, "holdout": holdout,
            "test_fraction": test_fraction, "split_seed": split_seed, "focus": [f.describe() for f in focus],
            "verdicts": result.verdicts,
        }
    return {**runlog.result, "report": result.report, "verdicts": result.verdicts}


def stage_converge(
    spark: SparkSession,
    source: Source,
    cfg: Config,
    output: str,
    *,
    iterations: Sequence[int],
    k: int = 5,
    top_n: int = 10,
    focus: Sequence[Any] = (),
    holdout: bool = True,
    test_fraction: float = 0.25,
    split_seed: int = 42,
    seed_reference: bool = True,
    progress_interval: float = 30.0,
) -> dict[str, Any]:
    """``cfg`` at several iteration counts (:func:`als_spark.converge.run_converge`).

    Publishes ``converge_steps``, ``converge_fits``, ``converge.md``,
    ``converge.json`` and ``converge.png`` together, then ``run.json``.
    """
    from als_spark import converge

    with running(spark, output, "converge", cfg) as runlog:
        with runlog.timer.stage("ingest"):
            ratings, _ = _load_ratings(spark, source, cfg, runlog, with_items=False)
        result = converge.run_converge(
            spark, ratings.df, cfg, iterations=iterations, k=k, top_n=top_n, holdout=holdout,
            test_fraction=test_fraction, split_seed=split_seed, seed_reference=seed_reference, focus=focus,
            progress_interval=progress_interval, timer=runlog.timer,
        )
        runlog.write_table(result.steps, "converge_steps")
        runlog.write_table(result.fits, "converge_fits")
        _stage_report(runlog, "converge", result.report, result.summary, result.png)
        data = result.summary["data"]
        runlog.counts.update({
            "rows_read": ratings.rows_read, "rows_rejected": ratings.rows_rejected,
            "interactions": data["interactions"], "users": data["users"], "items": data["items"],
            "fits": len(result.summary["fits"]),
        })
        runlog.input["converge"] = {
            "iterations": list(iterations), "k": k, "top_n": top_n, "holdout": holdout, "test_fraction": test_fraction,
            "split_seed": split_seed, "seed_reference": seed_reference, "focus": [f.describe() for f in focus],
        }
    return {**runlog.result, "report": result.report}


def show(spark: SparkSession, output: str, *, user: int | None = None, item: int | None = None) -> list[tuple[str, Any]]:
    """The notebook's questions for one id, as ``(title, pandas DataFrame)`` pairs read from ``output``."""
    def rows(name: str, key: str, value: int, produced_by: str) -> Any:
        table = _required_table(spark, output, name, produced_by)
        return table.where(F.col(key) == value).orderBy(S.RANK).drop(key).toPandas()

    if user is not None:
        return [
            (f"recommendations for user {user}", rows("recommendations", S.USER_ID, user, "recommend")),
            (f"users most similar to user {user}", rows("similar_users", S.USER_ID, user, "similar")),
        ]
    title = ""
    items = _optional_table(spark, output, "items")
    if items is not None:
        found = items.where(F.col(S.ITEM_ID) == item).select(S.TITLE).first()
        title = f" ({found[0]})" if found else ""
    similar = rows("similar_items", S.ITEM_ID, item, "similar").drop(columns=[S.TITLE], errors="ignore")
    return [(f"items most similar to item {item}{title}", similar)]
