"""The pipeline's stages as jobs: read, call the library, write.

This is the edge where paths are read and tables written; everything between is
``DataFrame -> DataFrame`` library code. The CLI, ``jobs/*.py`` (spark-submit),
the Databricks job and notebooks all call these functions, so they run the same
code. Each stage records its counts and timings in ``run.json``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from als_spark import feedback, ingest, model, publish, runinfo, session
from als_spark import schema as S
from als_spark.config import Config
from als_spark.errors import InputDataError
from als_spark.recommend import recommend
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


@dataclass
class RunLog:
    """What ``run.json`` records; stages add to it."""

    command: str
    config: Config
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    input: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    spark: dict[str, Any] = field(default_factory=dict)
    timer: runinfo.Timer = field(default_factory=runinfo.Timer)

    def write(self, spark: SparkSession, output: str) -> dict[str, Any]:
        # Stage commands (ingest, train, ...) add to the run.json of the stages before them.
        previous = publish.read_json(output, "run.json") or {}
        staged = self.command != "run" and previous.get("command") != "run"
        merge = (lambda key, new: {**previous.get(key, {}), **new}) if staged else (lambda key, new: new)
        payload = {
            "command": self.command,
            "run_id": self.run_id,
            "status": "succeeded",
            "started_at": self.started_at,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "input": merge("input", self.input),
            "config": self.config.to_dict(),
            "counts": merge("counts", self.counts),
            "timings_seconds": merge("timings_seconds", self.timer.seconds),
            "outputs": merge("outputs", self.outputs),
            "spark": merge("spark", {"master": session.describe(spark), **self.spark}),
            "versions": runinfo.versions(spark),
        }
        publish.write_json(spark, output, "run.json", payload)
        return payload


@dataclass
class Ingested:
    ratings: DataFrame  #: validated, de-duplicated input (cached)
    rejected: DataFrame  #: line, reason
    interactions: DataFrame  #: what ALS trains on (cached)
    items: DataFrame | None  #: item_id, title
    summary: DataFrame


def _load_ratings(spark: SparkSession, source: Source, cfg: Config, runlog: RunLog) -> tuple[ingest.Ratings, DataFrame | None]:
    if source.dataset == "synthetic":
        from als_spark import synthetic

        data = synthetic.generate(seed=source.synthetic_seed)
        df = spark.createDataFrame(data.ratings.astype({S.RATING: "float64"}), schema=S.RATINGS).cache()
        n = df.count()
        items = spark.createDataFrame(data.items, schema=S.ITEMS)
        runlog.input.update({"dataset": "synthetic", "seed": source.synthetic_seed, "format": "synthetic"})
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
    items_path = source.items or ingest.items_path_beside(path, ratings.fmt)
    items = None
    try:
        items = ingest.read_items(spark, items_path).cache()
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
        interactions = feedback.to_interactions(ratings.df, cfg.ingest).cache()
        summary = feedback.dataset_summary(interactions).cache()
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


def write_ingested(data: Ingested, output: str, runlog: RunLog) -> None:
    with runlog.timer.stage("write_ingest"):
        tables = {
            "dataset_summary": publish.conform(data.summary, S.DATASET_SUMMARY),
            "ratings": publish.conform(data.ratings, S.RATINGS).orderBy(S.USER_ID, S.ITEM_ID),
            "interactions": publish.conform(data.interactions, S.INTERACTIONS).orderBy(S.USER_ID, S.ITEM_ID),
            "rejected": publish.conform(data.rejected, S.REJECTED),
        }
        if data.items is not None:
            tables["items"] = publish.conform(data.items, S.ITEMS).orderBy(S.ITEM_ID)
        for name, df in tables.items():
            runlog.outputs[name] = publish.write_table(df, output, name)


def run_train(spark: SparkSession, interactions: DataFrame, cfg: Config, output: str, runlog: RunLog) -> tuple[DataFrame, DataFrame]:
    """Fit ALS (checkpointed), write the model and both factor tables; return the factors."""
    blocks = cfg.als.num_blocks or model.parallelism(spark)
    runlog.spark.update({"parallelism": model.parallelism(spark), "als_blocks": blocks})
    with runlog.timer.stage("fit"):
        fitted = model.fit(interactions, cfg.als, num_blocks=blocks)
    with runlog.timer.stage("write_model"):
        model_path = publish.table_path(output, "model")
        fitted.write().overwrite().save(model_path)
        runlog.outputs["model"] = model_path
        user_factors, item_factors = model.factors(fitted)
        user_factors = publish.conform(user_factors, S.FACTORS).orderBy(S.ID).cache()
        item_factors = publish.conform(item_factors, S.FACTORS).orderBy(S.ID).cache()
        runlog.outputs["user_factors"] = publish.write_table(user_factors, output, "user_factors")
        runlog.outputs["item_factors"] = publish.write_table(item_factors, output, "item_factors")
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
    output: str,
    runlog: RunLog,
) -> None:
    with runlog.timer.stage("recommend"):
        exclude = feedback.exclusions(ratings, interactions, cfg.recommend.exclude)
        recs = recommend(
            user_factors,
            item_factors,
            top_n=cfg.recommend.top_n,
            exclude=exclude,
            n_users=runlog.counts.get("user_factors"),
            n_items=runlog.counts.get("item_factors"),
            parallelism=model.parallelism(spark),
        )
        recs = publish.conform(recs, S.RECOMMENDATIONS)
        if items is not None:
            recs = with_title(recs, items)
        recs = recs.orderBy(S.USER_ID, S.RANK)
        runlog.outputs["recommendations"] = publish.write_table(recs, output, "recommendations")
    runlog.counts["recommendations"] = publish.read_table(spark, output, "recommendations").count()


def run_similar(
    spark: SparkSession, user_factors: DataFrame, item_factors: DataFrame, items: DataFrame | None, cfg: Config, output: str, runlog: RunLog
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
        sim_items = sim_items.orderBy(S.ITEM_ID, S.RANK)
        runlog.outputs["similar_items"] = publish.write_table(sim_items, output, "similar_items")
    with runlog.timer.stage("similar_users"):
        sim_users = publish.conform(
            similar_users(user_factors, top_k=k, n_users=runlog.counts.get("user_factors"), parallelism=par), S.SIMILAR_USERS
        ).orderBy(S.USER_ID, S.RANK)
        runlog.outputs["similar_users"] = publish.write_table(sim_users, output, "similar_users")
    runlog.counts["similar_items"] = publish.read_table(spark, output, "similar_items").count()
    runlog.counts["similar_users"] = publish.read_table(spark, output, "similar_users").count()


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


def run_all(spark: SparkSession, source: Source, cfg: Config, output: str, *, command: str = "run") -> dict[str, Any]:
    """The whole pipeline: ingest, train, recommend, similar; returns what ``run.json`` records."""
    runlog = RunLog(command=command, config=cfg)
    with model.checkpoint_dir(spark, cfg.als.checkpoint_dir) as ckpt:
        runlog.spark["checkpoint_dir"] = ckpt
        data = run_ingest(spark, source, cfg, runlog)
        write_ingested(data, output, runlog)
        user_factors, item_factors = run_train(spark, data.interactions, cfg, output, runlog)
        run_recommend(spark, user_factors, item_factors, data.ratings, data.interactions, data.items, cfg, output, runlog)
        run_similar(spark, user_factors, item_factors, data.items, cfg, output, runlog)
    return runlog.write(spark, output)


def stage_ingest(spark: SparkSession, source: Source, cfg: Config, output: str) -> dict[str, Any]:
    runlog = RunLog(command="ingest", config=cfg)
    write_ingested(run_ingest(spark, source, cfg, runlog), output, runlog)
    return runlog.write(spark, output)


def stage_train(spark: SparkSession, cfg: Config, output: str) -> dict[str, Any]:
    runlog = RunLog(command="train", config=cfg)
    interactions = _required_table(spark, output, "interactions", "ingest").cache()
    with model.checkpoint_dir(spark, cfg.als.checkpoint_dir) as ckpt:
        runlog.spark["checkpoint_dir"] = ckpt
        runlog.counts["interactions"] = interactions.count()
        run_train(spark, interactions, cfg, output, runlog)
    return runlog.write(spark, output)


def _factors(spark: SparkSession, output: str, runlog: RunLog) -> tuple[DataFrame, DataFrame]:
    user_factors = _required_table(spark, output, "user_factors", "train").cache()
    item_factors = _required_table(spark, output, "item_factors", "train").cache()
    runlog.counts.update({"user_factors": user_factors.count(), "item_factors": item_factors.count()})
    return user_factors, item_factors


def stage_recommend(spark: SparkSession, cfg: Config, output: str) -> dict[str, Any]:
    runlog = RunLog(command="recommend", config=cfg)
    user_factors, item_factors = _factors(spark, output, runlog)
    ratings = _required_table(spark, output, "ratings", "ingest")
    interactions = _required_table(spark, output, "interactions", "ingest")
    items = _optional_table(spark, output, "items")
    run_recommend(spark, user_factors, item_factors, ratings, interactions, items, cfg, output, runlog)
    return runlog.write(spark, output)


def stage_similar(spark: SparkSession, cfg: Config, output: str) -> dict[str, Any]:
    runlog = RunLog(command="similar", config=cfg)
    user_factors, item_factors = _factors(spark, output, runlog)
    run_similar(spark, user_factors, item_factors, _optional_table(spark, output, "items"), cfg, output, runlog)
    return runlog.write(spark, output)


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
    spark: SparkSession, source: Source, cfg: Config, output: str, *, k: int, test_fraction: float, split: str, seed: int
) -> dict[str, Any]:
    """Hold-out evaluation of ``cfg`` against the baselines; writes ``metrics`` and ``metrics.md``."""
    from als_spark import evaluate

    runlog = RunLog(command="evaluate", config=cfg)
    with runlog.timer.stage("ingest"):
        ratings, _ = _load_ratings(spark, source, cfg, runlog)
        interactions = evaluate.interactions_with_timestamp(ratings.df, cfg.ingest)
    metrics, rows = evaluate.run_evaluate(
        spark, interactions, cfg, k=k, test_fraction=test_fraction, split=split, seed=seed, timer=runlog.timer
    )
    runlog.outputs["metrics"] = publish.write_table(metrics, output, "metrics")
    runlog.outputs["metrics.md"] = publish.write_text(spark, output, "metrics.md", metrics_markdown(rows))
    runlog.counts.update({"rows_read": ratings.rows_read, "rows_rejected": ratings.rows_rejected, "evaluated_users": rows[0]["users"]})
    runlog.input["evaluation"] = {"k": k, "test_fraction": test_fraction, "split": split, "seed": seed}
    result = runlog.write(spark, output)
    result["metrics"] = rows
    return result


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
