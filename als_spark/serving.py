"""Recommendation tables that answer every user: ALS's lists, fold-in for new users, a popularity fallback.

:func:`write_recommendations` is the recommend step of ``als-spark run`` and of
``als-spark recommend``; :func:`fold_in_run` is ``als-spark recommend --model DIR --input EVENTS``:
the users of EVENTS get vectors solved from the model's item factors (:mod:`als_spark.foldin`),
without a refit, and the same tables a run writes for its own users.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from als_spark import caching, feedback, foldin, ids, model, publish, sources, tables
from als_spark import schema as S
from als_spark.config import Config
from als_spark.errors import InputDataError
from als_spark.inputs import Source, load_ratings, read_filters
from als_spark.recommend import candidates, popularity, popularity_prior, serve
from als_spark.runlog import RunLog, running
from als_spark.titles import with_title

log = logging.getLogger(__name__)


@dataclass
class Served:
    """The users one recommendations table answers, by ALS index."""

    users: DataFrame  #: id: every user to answer
    vectors: DataFrame  #: id, features: the users with a vector (the others fall back to popularity)
    source: str  #: als or fold_in: what the vectors are
    ratings: DataFrame  #: user_id, item_id: what each user rated (recommend.exclude: rated)
    interactions: DataFrame  #: user_id, item_id, confidence: what each vector was solved from
    n_vectors: int | None = None


def write_recommendations(
    spark: SparkSession,
    served: Served,
    item_factors: DataFrame,
    trained: DataFrame,
    items: DataFrame | None,
    user_ids: ids.IdMap,
    item_ids: ids.IdMap,
    cfg: Config,
    runlog: RunLog,
) -> None:
    """Write ``recommendations`` (and ``explanations`` when ``recommend.explain`` > 0) for ``served``.

    ``trained`` is the model's own interactions (by index): the items' popularity. The candidate
    filters of ``recommend`` apply to both sources; ``run.json`` counts users and rows per source.
    """
    rc = cfg.recommend
    filters = read_filters(spark, rc, user_ids, item_ids)
    exclude = feedback.exclusions(served.ratings, served.interactions, rc.exclude, deny=filters.deny_pairs)
    recs, n_cold = serve(
        served.users,
        served.vectors,
        candidates(item_factors, allow=filters.allow, deny=filters.deny_items),
        candidates(popularity(trained), allow=filters.allow, deny=filters.deny_items),
        top_n=rc.top_n,
        exclude=exclude,
        item_prior=popularity_prior(trained, rc.popularity_weight),
        source=served.source,
        n_users=served.n_vectors,
        parallelism=model.parallelism(spark),
    )
    if rc.explain:
        recs = caching.cache(recs)
        why = foldin.explain(
            served.interactions,
            recs.where(F.col(S.SOURCE) != "popularity"),
            item_factors,
            alpha=cfg.als.alpha,
            reg_param=cfg.als.reg_param,
            top=rc.explain,
        )
        why = item_ids.to_ids(item_ids.to_ids(user_ids.to_ids(why, S.USER_ID), S.ITEM_ID), S.BECAUSE_ITEM_ID)
        why = publish.conform(why, tables.typed(S.EXPLANATIONS, user_ids, item_ids))
        runlog.write_table(why.sortWithinPartitions(S.USER_ID, S.RANK, F.col(S.CONTRIBUTION).desc()), "explanations")
    recs = item_ids.to_ids(user_ids.to_ids(recs, S.USER_ID), S.ITEM_ID)
    recs = publish.conform(recs, tables.typed(S.RECOMMENDATIONS, user_ids, item_ids))
    if items is not None:
        recs = with_title(recs, items)
    runlog.write_table(recs.sortWithinPartitions(S.USER_ID, S.RANK), "recommendations")
    written = spark.read.parquet(runlog.publisher.path("recommendations"))
    by_source = written.groupBy(S.SOURCE).agg(
        F.count_distinct(S.USER_ID).alias("users"), F.count(F.lit(1)).alias("rows")
    )
    runlog.counts["recommendations_by_source"] = {
        r[S.SOURCE]: {"users": r["users"], "rows": r["rows"]} for r in by_source.collect()
    }
    if n_cold:
        log.info("%d users have no vector and get the most popular items", n_cold)


#: The ALS settings a fold-in must share with the fit it folds into.
FIT_KEYS = ("rank", "reg_param", "alpha")


def model_config(model_dir: str) -> dict[str, Any]:
    """The configuration ``run.json`` under ``model_dir`` records (the fit's), as nested dicts."""
    recorded = publish.read_json(model_dir, "run.json")
    if not recorded or "config" not in recorded:
        raise InputDataError(
            f"{publish.table_path(model_dir, 'run.json')} is missing or records no configuration: --model must be "
            "the output directory of `als-spark run` (or of its train stage)."
        )
    return dict(recorded["config"])


def check_fit_settings(cfg: Config, fitted: dict[str, Any]) -> None:
    """Refuse ALS settings that differ from the fit's: fold-in solves the fit's own equations."""
    changed = [k for k in FIT_KEYS if k in fitted.get("als", {}) and getattr(cfg.als, k) != fitted["als"][k]]
    if changed:
        from als_spark.errors import ConfigError

        shown = ", ".join(f"als.{k}={getattr(cfg.als, k)!r} (the model's: {fitted['als'][k]!r})" for k in changed)
        raise ConfigError(
            f"fold-in solves users with the model's own ALS settings, and {shown} differs. Leave als.* unset: "
            "`recommend --model` reads them from the model's run.json."
        )


def fold_in_run(spark: SparkSession, model_dir: str, source: Source, cfg: Config, output: str) -> dict[str, Any]:
    """Recommendations (and ``user_factors``) for the users of ``source``, folded into the model in ``model_dir``.

    ``source`` is read like a run's input with ``cfg`` (the model's configuration, with the
    command's overrides), and is each user's whole history: a user the model knows is solved
    again from it. Items the model has no factors for are left out of the solve (counted in
    ``run.json``); a user left with no known item, or with no interaction kept, gets the
    popular items. Writes ``recommendations``, ``user_factors`` and, with ``recommend.explain``,
    ``explanations`` under ``output``.
    """
    with running(spark, output, "recommend", cfg) as runlog:
        with runlog.timer.stage("ingest"):
            ratings, items = load_ratings(spark, source, cfg, runlog)
            model_users, item_ids = tables.id_maps(spark, model_dir)
            # The events' items as the model's id type: an id that is not of it is an unknown item.
            item_type = item_ids.dtype.simpleString()
            events = caching.cache(ratings.df.withColumn(S.ITEM_ID, sources.try_cast(S.ITEM_ID, item_type)))
            users = ids.build(events, S.USER_ID)  # this output's own numbering of the events' users
            item_factors = tables.required(spark, model_dir, "item_factors", "train")
            item_factors = caching.cache(publish.conform(item_ids.to_index(item_factors, S.ID), S.FACTORS))
            trained = item_ids.to_index(tables.required(spark, model_dir, "interactions", "ingest"), S.ITEM_ID)
            if items is None:
                items = tables.optional(spark, model_dir, "items")

            def indexed(df: DataFrame) -> DataFrame:
                return ids.to_indexes(df.where(F.col(S.ITEM_ID).isNotNull()), users, item_ids)

            rated = caching.cache(indexed(events))
            with_factors = item_factors.select(F.col(S.ID).alias(S.ITEM_ID))
            n_events, n_known = events.count(), rated.join(with_factors, S.ITEM_ID, "left_semi").count()
            new_users = users.table.join(model_users.table.select(S.ID), S.ID, "left_anti").count()

        with runlog.timer.stage("fold_in"):
            known = caching.cache(indexed(feedback.to_interactions(events, cfg.ingest)))
            vectors = caching.cache(
                foldin.fold_in(known, item_factors, alpha=cfg.als.alpha, reg_param=cfg.als.reg_param)
            )
            n_vectors = vectors.count()
            own = publish.conform(users.to_ids(vectors, S.ID), S.with_id_types(S.FACTORS, user=users.dtype))
            runlog.write_table(own.sortWithinPartitions(S.ID), "user_factors")
        runlog.input["model"] = model_dir
        runlog.counts.update(
            {
                "ratings": n_events,
                "ratings_of_items_without_factors": n_events - n_known,
                "users": users.table.count(),
                "users_new_to_the_model": new_users,
                "users_folded_in": n_vectors,
            }
        )
        with runlog.timer.stage("recommend"):
            write_recommendations(
                spark,
                Served(
                    users=users.table.select(F.col(ids.INDEX).alias(S.ID)),
                    vectors=vectors,
                    source="fold_in",
                    ratings=rated,
                    interactions=known,
                    n_vectors=n_vectors,
                ),
                item_factors,
                trained,
                items,
                users,
                item_ids,
                cfg,
                runlog,
            )
    return runlog.result
