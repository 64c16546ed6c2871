"""The pipeline's stages as jobs: read, call the library, write.

This is the edge where paths are read and tables written; everything between is
``DataFrame -> DataFrame`` library code. The CLI, ``jobs/*.py`` (spark-submit),
the Databricks job and notebooks all call these functions, so they run the same
code; the analysis commands' jobs are in :mod:`als_spark.analysis.jobs`. Each stage records its counts and timings in ``run.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from als_spark import caching, feedback, ids, model, publish, tables
from als_spark import schema as S
from als_spark.config import Config
from als_spark.errors import InputDataError
from als_spark.inputs import DATASETS, Source, load_ratings
from als_spark.runlog import RunLog, running
from als_spark.serving import Served, write_recommendations
from als_spark.similarity import similar_items, similar_users
from als_spark.titles import with_title

__all__ = ["DATASETS", "Source", "load_ratings", "run_all", "show"]

log = logging.getLogger(__name__)


@dataclass
class Ingested:
    ratings: DataFrame  #: validated input, one row per (user, item), the source's ids (cached)
    rejected: DataFrame  #: line, reason
    interactions: DataFrame  #: what ALS trains on, the source's ids (cached)
    items: DataFrame | None  #: item_id, title
    summary: DataFrame
    user_ids: ids.IdMap  #: the users' ALS indexes
    item_ids: ids.IdMap  #: the items' ALS indexes


def run_ingest(spark: SparkSession, source: Source, cfg: Config, runlog: RunLog) -> Ingested:
    """Read and validate the ratings, derive the interactions and the summary."""
    with runlog.timer.stage("ingest"):
        ratings, items = load_ratings(spark, source, cfg, runlog)
        interactions = caching.cache(feedback.to_interactions(ratings.df, cfg.ingest))
        summary = caching.cache(feedback.dataset_summary(interactions))
        row = summary.first()
        if row is None or row["total_users"] == 0:
            raise InputDataError(_nothing_left(ratings.rows, cfg))
        n_interactions = interactions.count()
        # Every rated user gets an index (those without interactions get no factors but are answered),
        # every item with an interaction one.
        user_ids, item_ids = ids.build(ratings.df, S.USER_ID), ids.build(interactions, S.ITEM_ID)
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
        kept = (
            f"rating >= {cfg.ingest.min_rating:g}"
            if cfg.ingest.kind == "rating"
            else f"weight >= {cfg.ingest.min_weight:g}"
        )
        log.warning(
            "%d users and %d items have no %s and get no factors, recommendations or neighbours",
            users_dropped,
            items_dropped,
            kept,
        )
    runlog.input["ids"] = {
        kind: {"type": m.dtype.simpleString(), "indexed": not m.identity}
        for kind, m in (("user", user_ids), ("item", item_ids))
    }
    if items is not None:
        items = items.withColumn(S.ITEM_ID, F.col(S.ITEM_ID).cast(item_ids.dtype))
    return Ingested(
        ratings=ratings.df,
        rejected=ratings.rejected,
        interactions=interactions,
        items=items,
        summary=summary,
        user_ids=user_ids,
        item_ids=item_ids,
    )


# Tables are sorted within each file (by key, then rank), not globally: a global sort costs a
# sampling job and a shuffle per table and readers do not depend on file order.


def _nothing_left(rows: int, cfg: Config) -> str:
    if cfg.ingest.kind == "rating":
        return (
            f"no interactions left: none of the {rows} ratings is >= ingest.min_rating "
            f"({cfg.ingest.min_rating:g}). Lower it with --set ingest.min_rating=..."
        )
    return (
        f"no interactions left: none of the {rows} (user, item) weights is positive and >= ingest.min_weight "
        f"({cfg.ingest.min_weight:g}). Lower it with --set ingest.min_weight=..., or check ingest.event_weights."
    )


def write_ingested(data: Ingested, runlog: RunLog) -> None:
    with runlog.timer.stage("write_ingest"):
        users, items = data.user_ids, data.item_ids
        written = {
            "dataset_summary": publish.conform(data.summary, S.DATASET_SUMMARY),
            "ratings": publish.conform(data.ratings, tables.typed(S.RATINGS, users, items)).sortWithinPartitions(
                S.USER_ID, S.ITEM_ID
            ),
            "interactions": publish.conform(
                data.interactions, tables.typed(S.INTERACTIONS, users, items)
            ).sortWithinPartitions(S.USER_ID, S.ITEM_ID),
            "rejected": publish.conform(data.rejected, S.REJECTED),
            "user_index": publish.conform(users.table, ids.index_schema(users.dtype)).sortWithinPartitions(ids.INDEX),
            "item_index": publish.conform(items.table, ids.index_schema(items.dtype)).sortWithinPartitions(ids.INDEX),
        }
        if data.items is not None:
            written["items"] = publish.conform(data.items, tables.typed(S.ITEMS, users, items)).sortWithinPartitions(
                S.ITEM_ID
            )
        for name, df in written.items():
            runlog.write_table(df, name)


def run_train(
    spark: SparkSession, interactions: DataFrame, user_ids: ids.IdMap, item_ids: ids.IdMap, cfg: Config, runlog: RunLog
) -> tuple[DataFrame, DataFrame]:
    """Fit ALS (checkpointed) on the indexed interactions, write the model and both factor tables.

    Returns the factors by ALS index (``id`` int), which the top-k stages work on; the published
    factor tables carry the users' and items' own ids.
    """
    blocks = cfg.als.num_blocks or model.parallelism(spark)
    runlog.details.update({"parallelism": model.parallelism(spark), "als_blocks": blocks})
    indexed = ids.to_indexes(interactions, user_ids, item_ids)
    with runlog.timer.stage("fit"):
        fitted = model.fit(indexed, cfg.als, num_blocks=blocks)
    with runlog.timer.stage("write_model"):
        fitted.write().overwrite().save(runlog.stage_path("model"))
        user_factors, item_factors = model.factors(fitted)
        user_factors = caching.cache(publish.conform(user_factors, S.FACTORS).sortWithinPartitions(S.ID))
        item_factors = caching.cache(publish.conform(item_factors, S.FACTORS).sortWithinPartitions(S.ID))
        for name, factors, id_map in (
            ("user_factors", user_factors, user_ids),
            ("item_factors", item_factors, item_ids),
        ):
            own = publish.conform(id_map.to_ids(factors, S.ID), S.with_id_types(S.FACTORS, user=id_map.dtype))
            runlog.write_table(own if id_map.identity else own.sortWithinPartitions(S.ID), name)
    runlog.counts.update({"user_factors": user_factors.count(), "item_factors": item_factors.count()})
    return user_factors, item_factors


def run_recommend(
    spark: SparkSession,
    user_factors: DataFrame,
    item_factors: DataFrame,
    ratings: DataFrame,
    interactions: DataFrame,
    items: DataFrame | None,
    user_ids: ids.IdMap,
    item_ids: ids.IdMap,
    cfg: Config,
    runlog: RunLog,
) -> None:
    """Recommendations for every rated user; ``ratings`` and ``interactions`` carry the source's ids.

    Users with factors get ALS's list; those without (no interaction kept) the popular items.
    """

    def indexed(df: DataFrame) -> DataFrame:
        return ids.to_indexes(df, user_ids, item_ids)

    with runlog.timer.stage("recommend"):
        known = indexed(interactions)
        write_recommendations(
            spark,
            Served(
                users=user_ids.table.select(F.col(ids.INDEX).alias(S.ID)),
                vectors=user_factors,
                source="als",
                ratings=indexed(ratings),
                interactions=known,
                n_vectors=runlog.counts.get("user_factors"),
            ),
            item_factors,
            known,
            items,
            user_ids,
            item_ids,
            cfg,
            runlog,
        )


def run_similar(
    spark: SparkSession,
    user_factors: DataFrame,
    item_factors: DataFrame,
    items: DataFrame | None,
    user_ids: ids.IdMap,
    item_ids: ids.IdMap,
    cfg: Config,
    runlog: RunLog,
) -> None:
    k, par = cfg.similar.top_k, model.parallelism(spark)
    with runlog.timer.stage("similar_items"):
        sim_items = similar_items(item_factors, top_k=k, n_items=runlog.counts.get("item_factors"), parallelism=par)
        sim_items = item_ids.to_ids(item_ids.to_ids(sim_items, S.ITEM_ID), S.SIMILAR_ITEM_ID)
        sim_items = publish.conform(sim_items, tables.typed(S.SIMILAR_ITEMS, user_ids, item_ids))
        if items is not None:
            sim_items = with_title(sim_items, items).transform(
                with_title, items, id_col=S.SIMILAR_ITEM_ID, title_col=S.SIMILAR_TITLE
            )
        sim_items = sim_items.sortWithinPartitions(S.ITEM_ID, S.RANK)
        runlog.write_table(sim_items, "similar_items")
    with runlog.timer.stage("similar_users"):
        sim_users = similar_users(user_factors, top_k=k, n_users=runlog.counts.get("user_factors"), parallelism=par)
        sim_users = user_ids.to_ids(user_ids.to_ids(sim_users, S.USER_ID), S.SIMILAR_USER_ID)
        sim_users = publish.conform(sim_users, tables.typed(S.SIMILAR_USERS, user_ids, item_ids)).sortWithinPartitions(
            S.USER_ID, S.RANK
        )
        runlog.write_table(sim_users, "similar_users")


def run_all(spark: SparkSession, source: Source, cfg: Config, output: str) -> dict[str, Any]:
    """The whole pipeline: ingest, train, recommend, similar; returns what ``run.json`` records."""
    with running(spark, output, "run", cfg) as runlog, model.checkpoint_dir(spark, cfg.als.checkpoint_dir) as ckpt:
        runlog.details["checkpoint_dir"] = ckpt
        data = run_ingest(spark, source, cfg, runlog)
        write_ingested(data, runlog)
        users, items = data.user_ids, data.item_ids
        user_factors, item_factors = run_train(spark, data.interactions, users, items, cfg, runlog)
        run_recommend(
            spark, user_factors, item_factors, data.ratings, data.interactions, data.items, users, items, cfg, runlog
        )
        run_similar(spark, user_factors, item_factors, data.items, users, items, cfg, runlog)
    return runlog.result


def stage_ingest(spark: SparkSession, source: Source, cfg: Config, output: str) -> dict[str, Any]:
    with running(spark, output, "ingest", cfg) as runlog:
        write_ingested(run_ingest(spark, source, cfg, runlog), runlog)
    return runlog.result


def stage_train(spark: SparkSession, cfg: Config, output: str) -> dict[str, Any]:
    with running(spark, output, "train", cfg) as runlog, model.checkpoint_dir(spark, cfg.als.checkpoint_dir) as ckpt:
        interactions = caching.cache(tables.required(spark, output, "interactions", "ingest"))
        runlog.details["checkpoint_dir"] = ckpt
        runlog.counts["interactions"] = interactions.count()
        run_train(spark, interactions, *tables.id_maps(spark, output), cfg, runlog)
    return runlog.result


def _factors(spark: SparkSession, output: str, runlog: RunLog) -> tuple[DataFrame, DataFrame, ids.IdMap, ids.IdMap]:
    """The published factor tables, by ALS index, and the id maps."""
    user_factors = tables.required(spark, output, "user_factors", "train")
    item_factors = tables.required(spark, output, "item_factors", "train")
    user_ids, item_ids = tables.id_maps(spark, output)
    user_factors = caching.cache(publish.conform(user_ids.to_index(user_factors, S.ID), S.FACTORS))
    item_factors = caching.cache(publish.conform(item_ids.to_index(item_factors, S.ID), S.FACTORS))
    runlog.counts.update({"user_factors": user_factors.count(), "item_factors": item_factors.count()})
    return user_factors, item_factors, user_ids, item_ids


def stage_recommend(spark: SparkSession, cfg: Config, output: str) -> dict[str, Any]:
    with running(spark, output, "recommend", cfg) as runlog:
        user_factors, item_factors, users, items = _factors(spark, output, runlog)
        ratings = tables.required(spark, output, "ratings", "ingest")
        interactions = tables.required(spark, output, "interactions", "ingest")
        titles = tables.optional(spark, output, "items")
        run_recommend(spark, user_factors, item_factors, ratings, interactions, titles, users, items, cfg, runlog)
    return runlog.result


def stage_similar(spark: SparkSession, cfg: Config, output: str) -> dict[str, Any]:
    with running(spark, output, "similar", cfg) as runlog:
        user_factors, item_factors, users, items = _factors(spark, output, runlog)
        titles = tables.optional(spark, output, "items")
        run_similar(spark, user_factors, item_factors, titles, users, items, cfg, runlog)
    return runlog.result


def show(
    spark: SparkSession, output: str, *, user: int | str | None = None, item: int | str | None = None
) -> list[tuple[str, Any]]:
    """The notebook's questions for one id, as ``(title, pandas DataFrame)`` pairs read from ``output``.

    The id is matched as text, so ``"38"`` finds the integer id 38 and a string id is given as is.
    """
    output = publish.snapshot(output)  # every table from one run, even if one is published meanwhile

    def rows(name: str, key: str, value: int | str, produced_by: str) -> Any:
        table = tables.required(spark, output, name, produced_by)
        return table.where(F.col(key).cast("string") == F.lit(str(value))).orderBy(S.RANK).drop(key).toPandas()

    if user is not None:
        return [
            (f"recommendations for user {user}", rows("recommendations", S.USER_ID, user, "recommend")),
            (f"users most similar to user {user}", rows("similar_users", S.USER_ID, user, "similar")),
        ]
    assert item is not None, "show needs a user or an item"
    title = ""
    items = tables.optional(spark, output, "items")
    if items is not None:
        found = items.where(F.col(S.ITEM_ID).cast("string") == F.lit(str(item))).select(S.TITLE).first()
        title = f" ({found[0]})" if found else ""
    similar = rows("similar_items", S.ITEM_ID, item, "similar").drop(columns=[S.TITLE], errors="ignore")
    return [(f"items most similar to item {item}{title}", similar)]
