"""The pipeline's stages as jobs: read, call the library, write.

This is the edge where paths are read and tables written; everything between is
``DataFrame -> DataFrame`` library code. The CLI, ``jobs/*.py`` (spark-submit),
the Databricks job and notebooks all call these functions, so they run the same
code; the analysis commands' jobs are in :mod:`als_spark.analysis.jobs`. Each stage records its counts and timings in ``run.json``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from als_spark import caching, feedback, ingest, model, publish, runinfo, session
from als_spark import schema as S
from als_spark.config import Config
from als_spark.errors import InputDataError
from als_spark.recommend import popularity_prior, recommend
from als_spark.runlog import RunLog, running
from als_spark.similarity import similar_items, similar_users
from als_spark.titles import with_title

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


DATASETS = ("synthetic", "ml-100k")


@dataclass(frozen=True)
class Source:
    """Where the ratings come from: a file (``path``), a built-in ``dataset`` or a caller's ``dataframe``."""

    path: str | None = None
    dataset: str | None = None
    items: str | None = None  #: item file with titles; default: the one beside ``path``
    synthetic_seed: int = 42
    synthetic_ratings: int = 100_000  #: size of ``dataset="synthetic"`` (MovieLens-shaped users and items)
    dataframe: DataFrame | None = None  #: ratings a caller already has (:func:`als_spark.api.run`)
    columns: Mapping[str, str] | None = (
        None  #: role -> column of ``dataframe`` (:func:`~als_spark.ingest.read_dataframe`)
    )
    items_frame: DataFrame | None = None  #: ``item_id, title`` for ``dataframe``


@dataclass
class Ingested:
    ratings: DataFrame  #: validated, de-duplicated input (cached)
    rejected: DataFrame  #: line, reason
    interactions: DataFrame  #: what ALS trains on (cached)
    items: DataFrame | None  #: item_id, title
    summary: DataFrame


def load_ratings(
    spark: SparkSession, source: Source, cfg: Config, runlog: RunLog, *, with_items: bool = True
) -> tuple[ingest.Ratings, DataFrame | None]:
    """The validated ratings and, with ``with_items``, the item titles (``None`` when there is no item file).

    Commands that write no titles (evaluate, tune, compare, converge) pass ``with_items=False`` and
    skip reading the item file.
    """
    if source.dataset == "synthetic":
        from als_spark import synthetic

        data = synthetic.generate_for_size(source.synthetic_ratings, seed=source.synthetic_seed)
        df = caching.cache(
            driver_frame(spark, runlog, data.ratings.astype({S.RATING: "float64"}), S.RATINGS, "ratings")
        )
        n = df.count()
        items: DataFrame | None = driver_frame(spark, runlog, data.items, S.ITEMS, "items")
        runlog.input.update(
            {
                "dataset": "synthetic",
                "seed": source.synthetic_seed,
                "ratings": source.synthetic_ratings,
                "format": "synthetic",
            }
        )
        rejected = spark.createDataFrame([], schema=S.REJECTED)
        ratings = ingest.Ratings(
            df=df, rejected=rejected, rows_read=n, rows_rejected=0, duplicates_dropped=0, rows=n, fmt="synthetic"
        )
        return ratings, items

    if source.dataframe is not None:
        ratings = ingest.read_dataframe(
            source.dataframe, columns=source.columns, rating_range=(cfg.ingest.rating_min, cfg.ingest.rating_max)
        )
        ingest.check_rejected(ratings, cfg.ingest.max_rejected_fraction, "the DataFrame")
        runlog.input.update({"format": ratings.fmt, "columns": dict(source.columns or {})})
        items = None
        if with_items and source.items_frame is not None:
            items = caching.cache(publish.conform(source.items_frame, S.ITEMS))
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


def driver_frame(spark: SparkSession, runlog: RunLog, frame: pd.DataFrame, schema: StructType, name: str) -> DataFrame:
    """A pandas frame made on the driver as a Spark DataFrame of ``schema``.

    In local mode it goes through a Parquet file in the run's scratch directory: ``createDataFrame``
    ships the rows inside the tasks, and Spark warns "contains a task of very large size" at every
    stage that reads them. Elsewhere (a cluster, Spark Connect) the scratch directory is not
    visible to the executors, and ``createDataFrame`` is used.
    """
    if not session.describe(spark).startswith("local"):
        return spark.createDataFrame(frame, schema=schema)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(runlog.scratch(), f"{name}.parquet")
    pq.write_table(pa.Table.from_pandas(frame[schema.fieldNames()], preserve_index=False), path)
    return spark.read.parquet(path).select(*[F.col(f.name).cast(f.dataType) for f in schema.fields])


def run_ingest(spark: SparkSession, source: Source, cfg: Config, runlog: RunLog) -> Ingested:
    """Read and validate the ratings, derive the interactions and the summary."""
    with runlog.timer.stage("ingest"):
        ratings, items = load_ratings(spark, source, cfg, runlog)
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
        assert rated is not None  # a global aggregate has one row
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
            users_dropped,
            items_dropped,
            cfg.ingest.min_rating,
        )
    return Ingested(
        ratings=ratings.df, rejected=ratings.rejected, interactions=interactions, items=items, summary=summary
    )


# Tables are sorted within each file (by key, then rank), not globally: a global sort costs a
# sampling job and a shuffle per table and readers do not depend on file order.


def write_ingested(data: Ingested, runlog: RunLog) -> None:
    with runlog.timer.stage("write_ingest"):
        tables = {
            "dataset_summary": publish.conform(data.summary, S.DATASET_SUMMARY),
            "ratings": publish.conform(data.ratings, S.RATINGS).sortWithinPartitions(S.USER_ID, S.ITEM_ID),
            "interactions": publish.conform(data.interactions, S.INTERACTIONS).sortWithinPartitions(
                S.USER_ID, S.ITEM_ID
            ),
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
    spark: SparkSession,
    user_factors: DataFrame,
    item_factors: DataFrame,
    items: DataFrame | None,
    cfg: Config,
    runlog: RunLog,
) -> None:
    k, par = cfg.similar.top_k, model.parallelism(spark)
    with runlog.timer.stage("similar_items"):
        sim_items = publish.conform(
            similar_items(item_factors, top_k=k, n_items=runlog.counts.get("item_factors"), parallelism=par),
            S.SIMILAR_ITEMS,
        )
        if items is not None:
            sim_items = with_title(sim_items, items).transform(
                with_title, items, id_col=S.SIMILAR_ITEM_ID, title_col=S.SIMILAR_TITLE
            )
        sim_items = sim_items.sortWithinPartitions(S.ITEM_ID, S.RANK)
        runlog.write_table(sim_items, "similar_items")
    with runlog.timer.stage("similar_users"):
        sim_users = publish.conform(
            similar_users(user_factors, top_k=k, n_users=runlog.counts.get("user_factors"), parallelism=par),
            S.SIMILAR_USERS,
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


def show(
    spark: SparkSession, output: str, *, user: int | None = None, item: int | None = None
) -> list[tuple[str, Any]]:
    """The notebook's questions for one id, as ``(title, pandas DataFrame)`` pairs read from ``output``."""

    def rows(name: str, key: str, value: int, produced_by: str) -> Any:
        table = _required_table(spark, output, name, produced_by)
        return table.where(F.col(key).eqNullSafe(value)).orderBy(S.RANK).drop(key).toPandas()

    if user is not None:
        return [
            (f"recommendations for user {user}", rows("recommendations", S.USER_ID, user, "recommend")),
            (f"users most similar to user {user}", rows("similar_users", S.USER_ID, user, "similar")),
        ]
    assert item is not None, "show needs a user or an item"
    title = ""
    items = _optional_table(spark, output, "items")
    if items is not None:
        found = items.where(F.col(S.ITEM_ID).eqNullSafe(item)).select(S.TITLE).first()
        title = f" ({found[0]})" if found else ""
    similar = rows("similar_items", S.ITEM_ID, item, "similar").drop(columns=[S.TITLE], errors="ignore")
    return [(f"items most similar to item {item}{title}", similar)]
