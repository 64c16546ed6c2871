"""The Python API: fit on a DataFrame you already have, then ask the notebook's questions.

:func:`fit` validates the ratings exactly as the pipeline does, fits implicit
ALS and returns a :class:`Recommender`, whose :meth:`~Recommender.recommend`,
:meth:`~Recommender.similar_items` and :meth:`~Recommender.similar_users`
return DataFrames in the schemas of the published tables. :func:`run` is the
whole pipeline on a DataFrame, published under an output directory like
``als-spark run`` does. The parallelism comes from the session, and the
checkpoint directory and the caches are handled inside: a
:class:`Recommender` keeps what it needs until :meth:`~Recommender.close`
(or ``with``, or garbage collection) releases it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import uuid
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from als_spark import feedback, ids, ingest, model, publish
from als_spark import schema as S
from als_spark.config import Config, build_config
from als_spark.errors import InputDataError
from als_spark.recommend import popularity_prior, recommend
from als_spark.similarity import similar_items, similar_users

log = logging.getLogger(__name__)

__all__ = ["Recommender", "fit", "load", "run"]

#: What :meth:`Recommender.save` writes under its path, besides ``model/`` (Spark's own writer).
_EXCLUDE, _PRIOR, _CONFIG = "exclude", "item_prior", "config.json"
_USER_INDEX, _ITEM_INDEX = "user_index", "item_index"


Ids = DataFrame | Iterable[Any] | None


def _ids(values: Ids, column: str, id_map: ids.IdMap, spark: SparkSession) -> DataFrame | None:
    """``id`` (the ALS index) of the entities asked for: a frame's ``column``, or a list of ids; ``None`` for all."""
    if values is None:
        return None
    if isinstance(values, DataFrame):
        if column not in values.columns:
            raise InputDataError(f"the frame of ids needs a column {column!r}; it has {', '.join(values.columns)}")
        asked = values.select(F.col(column).cast(id_map.dtype).alias(S.ID))
        return id_map.to_index(asked, S.ID)
    return id_map.ids_frame(spark, list(values))


class Recommender:
    """A fitted implicit-ALS model with the pipeline's exact top-k, exclusions and scores.

    Made by :func:`fit` or :func:`load`. ``user_factors`` and ``item_factors``
    are ``id, features`` frames with the users' and items' own ids; ``user_ids``
    and ``item_ids`` map those ids to the model's indexes (:mod:`als_spark.ids`);
    ``config`` is the configuration it was fitted with, whose ``recommend`` and
    ``similar`` sections are the defaults of the methods below.
    """

    def __init__(
        self,
        als_model: ALSModel,
        config: Config,
        *,
        exclude: DataFrame | None,
        item_prior: DataFrame | None,
        user_ids: ids.IdMap,
        item_ids: ids.IdMap,
        resources: contextlib.ExitStack | None = None,
    ) -> None:
        self.model, self.config = als_model, config
        self.user_ids, self.item_ids = user_ids, item_ids
        factors = model.factors(als_model)
        held = (*factors, *(x for x in (exclude, item_prior) if x is not None), user_ids.table, item_ids.table)
        self._cached = [df.cache() for df in held]
        self._user_factors, self._item_factors = self._cached[0], self._cached[1]
        self._exclude, self._prior = exclude, item_prior
        self.spark = self._user_factors.sparkSession
        self._n_users, self._n_items = self._user_factors.count(), self._item_factors.count()
        stack = resources or contextlib.ExitStack()
        for df in self._cached:
            stack.callback(_unpersist, df)
        # Released by close(), or when the object is collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, stack.close)

    @property
    def user_factors(self) -> DataFrame:
        """``id, features`` of every user the model knows, by the user's own id."""
        return self.user_ids.to_ids(self._user_factors, S.ID)

    @property
    def item_factors(self) -> DataFrame:
        """``id, features`` of every item the model knows, by the item's own id."""
        return self.item_ids.to_ids(self._item_factors, S.ID)

    def _typed(self, df: DataFrame, schema: StructType) -> DataFrame:
        """``df`` (by index) with its user and item columns mapped to their own ids, in ``schema``'s order."""
        for column in df.columns:
            if column in S.USER_COLUMNS:
                df = self.user_ids.to_ids(df, column)
            elif column in S.ITEM_COLUMNS:
                df = self.item_ids.to_ids(df, column)
        return publish.conform(df, S.with_id_types(schema, user=self.user_ids.dtype, item=self.item_ids.dtype))

    # --- the notebook's questions ---------------------------------------------------------------

    def recommend(self, users: Ids = None, *, top_n: int | None = None) -> DataFrame:
        """``user_id, rank, item_id, score``: each user's ``top_n`` items (default ``recommend.top_n``).

        ``users``: a frame with a ``user_id`` column or a list of ids (default: every user
        with factors); unknown users get no rows. Items are excluded as
        ``recommend.exclude`` says, and scores are ``u·v`` plus the configured popularity prior
        (float32: for a subset of users a score can differ from the full table's in its last
        bit, as BLAS sums blocks of other sizes in another order).
        """
        wanted = _ids(users, S.USER_ID, self.user_ids, self.spark)
        factors = self._user_factors
        queries = factors if wanted is None else factors.join(wanted.distinct(), S.ID, "left_semi")
        recs = recommend(
            queries,
            self._item_factors,
            top_n=top_n or self.config.recommend.top_n,
            exclude=self._exclude,
            item_prior=self._prior,
            n_users=self._n_users if wanted is None else None,
            n_items=self._n_items,
            parallelism=model.parallelism(self.spark),
        ).withColumn(S.SOURCE, F.lit("als"))
        return self._typed(recs, S.RECOMMENDATIONS)

    def similar_items(self, items: Ids = None, *, top_k: int | None = None) -> DataFrame:
        """``item_id, rank, similar_item_id, similarity``: the ``top_k`` items most like each of ``items`` (cosine)."""
        got = similar_items(
            self._item_factors,
            top_k=top_k or self.config.similar.top_k,
            n_items=self._n_items,
            parallelism=model.parallelism(self.spark),
            of=_ids(items, S.ITEM_ID, self.item_ids, self.spark),
        )
        return self._typed(got, S.SIMILAR_ITEMS)

    def similar_users(self, users: Ids = None, *, top_k: int | None = None) -> DataFrame:
        """``user_id, rank, similar_user_id, similarity``: the ``top_k`` users most like each of ``users`` (cosine)."""
        got = similar_users(
            self._user_factors,
            top_k=top_k or self.config.similar.top_k,
            n_users=self._n_users,
            parallelism=model.parallelism(self.spark),
            of=_ids(users, S.USER_ID, self.user_ids, self.spark),
        )
        return self._typed(got, S.SIMILAR_USERS)

    # --- lifecycle ----------------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """Write the model, its exclusions, prior and configuration under ``path``, replacing what is there.

        Everything is staged first and swapped into place together (:class:`~als_spark.publish.Publisher`),
        so a failed save leaves an earlier one intact.
        """
        publisher = publish.Publisher(self.spark, path, uuid.uuid4().hex, drop=(_EXCLUDE, _PRIOR))
        try:
            self.model.write().overwrite().save(publisher.path("model"))
            if self._exclude is not None:
                publisher.write_table(self._exclude, _EXCLUDE)
            if self._prior is not None:
                publisher.write_table(self._prior, _PRIOR)
            publisher.write_table(self.user_ids.table, _USER_INDEX)
            publisher.write_table(self.item_ids.table, _ITEM_INDEX)
            publisher.stage_file(_CONFIG, publish.to_json(self.config.to_dict()))
            publisher.publish()
        except BaseException:
            publisher.abort()
            raise
        publisher.release()

    @classmethod
    def load(cls, path: str, *, spark: SparkSession | None = None) -> Recommender:
        """A :class:`Recommender` from what :meth:`save` wrote."""
        from als_spark.session import get_spark

        spark = spark or get_spark()
        local = publish.local_path(path)
        path = os.path.abspath(local) if local is not None else path  # as save() resolved it
        path = publish.snapshot(path)  # the tables of one save, even if another replaces it meanwhile
        text = spark.read.text(posixpath.join(path, _CONFIG), wholetext=True).first()
        if text is None:
            raise InputDataError(f"{path} has no {_CONFIG}: it was not written by Recommender.save")
        config = build_config(json.loads(text[0]))

        def optional(name: str) -> DataFrame | None:
            try:
                return publish.read_table(spark, path, name)
            except Exception:  # noqa: BLE001 - absent when the configuration needs none
                return None

        als_model = ALSModel.load(posixpath.join(path, "model"))

        def id_map(name: str, factors: DataFrame) -> ids.IdMap:
            table = optional(name)
            if table is None:  # saved before ids were mapped: the ids are the indexes
                table = factors.select(S.ID, F.col(S.ID).alias(ids.INDEX))
            return ids.from_table(table)

        user_factors, item_factors = model.factors(als_model)
        return cls(
            als_model,
            config,
            exclude=optional(_EXCLUDE),
            item_prior=optional(_PRIOR),
            user_ids=id_map(_USER_INDEX, user_factors),
            item_ids=id_map(_ITEM_INDEX, item_factors),
        )

    def close(self) -> None:
        """Release the cached factors and the model's temporary checkpoint directory (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unpersist(df: DataFrame) -> None:
    with contextlib.suppress(Exception):  # a stopped session has nothing left to release
        df.unpersist()


def fit(
    ratings: DataFrame, config: Config | None = None, *, columns: Mapping[str, str | None] | None = None
) -> Recommender:
    """Validate ``ratings``, fit implicit ALS on its positive interactions, and return a :class:`Recommender`.

    ``ratings`` needs a user and an item column, a rating column unless ``ingest.columns.rating``
    is null (every row one interaction) or ``ingest.event_weights`` weighs an event column, and
    may have a timestamp. ``columns`` maps the roles ``user``, ``item``, ``rating``,
    ``timestamp`` and ``event`` to its column names, over ``ingest.columns`` (whose defaults
    are ``user_id``, ``item_id``, ``rating``, ``timestamp``, ``event``). Ids may be strings or
    any integer type, and come back as they went in. Rows are validated and combined as
    ``als-spark ingest`` does (more than ``ingest.max_rejected_fraction`` rejected is an
    :class:`~als_spark.errors.InputDataError`). ``config`` defaults to the built-in
    configuration (``conf/default.yaml``).
    """
    cfg = config or Config()
    ratings_checked = ingest.read_dataframe(ratings, cfg.ingest, columns=columns)
    ingest.check_rejected(ratings_checked, cfg.ingest.max_rejected_fraction, "the DataFrame")
    ingest_cfg = ingest.with_columns(cfg.ingest, columns)
    spark = ratings.sparkSession
    interactions = feedback.to_interactions(ratings_checked.df, ingest_cfg).cache()
    stack = contextlib.ExitStack()
    stack.callback(_unpersist, ratings_checked.df)
    stack.callback(_unpersist, interactions)
    try:
        if interactions.limit(1).count() == 0:
            raise InputDataError(
                f"no interactions: none of the {ratings_checked.rows} (user, item) rows is kept by "
                f"ingest.min_rating ({cfg.ingest.min_rating:g}) or ingest.min_weight ({cfg.ingest.min_weight:g})"
            )
        user_ids, item_ids = ids.build(interactions, S.USER_ID), ids.build(interactions, S.ITEM_ID)

        def indexed(df: DataFrame) -> DataFrame:
            return ids.to_indexes(df, user_ids, item_ids)

        known = indexed(interactions)
        # The checkpoint directory lives as long as the Recommender: its factors may be read back from it.
        stack.enter_context(model.checkpoint_dir(spark, cfg.als.checkpoint_dir))
        fitted = model.fit(known, cfg.als, num_blocks=cfg.als.num_blocks or model.parallelism(spark))
        exclude = feedback.exclusions(indexed(ratings_checked.df), known, cfg.recommend.exclude)
        prior = popularity_prior(known, cfg.recommend.popularity_weight)
        recommender = Recommender(
            fitted, cfg, exclude=exclude, item_prior=prior, user_ids=user_ids, item_ids=item_ids, resources=stack
        )
    except BaseException:
        stack.close()
        raise
    return recommender


def load(path: str, *, spark: SparkSession | None = None) -> Recommender:
    """:meth:`Recommender.load`."""
    return Recommender.load(path, spark=spark)


def run(
    ratings: DataFrame,
    output: str,
    config: Config | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    items: DataFrame | None = None,
) -> dict[str, Any]:
    """The whole pipeline on a DataFrame: the tables of ``als-spark run`` published under ``output``.

    ``ratings`` and ``columns`` as for :func:`fit`; ``items`` (``item_id, title``) adds titles.
    Returns what ``run.json`` records.
    """
    from als_spark import pipeline

    source = pipeline.Source(dataframe=ratings, columns=columns, items_frame=items)
    return pipeline.run_all(ratings.sparkSession, source, config or Config(), output)
