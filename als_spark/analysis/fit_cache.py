"""Finished fits kept on disk, so that a long ``converge`` can stop and go on where it stopped.

A rank-500 fit of 200 iterations takes about an hour on two cores. ``converge --fit-cache DIR``
keeps what each finished fit produced: its lists (``table, run, id, items, scores``), its time and
its holdout metrics. A rerun with the same key finds them and does not fit again. The key is a
SHA-256 of everything the lists depend on:

* the fingerprint of the training rows (their count and an order-free sum of row hashes, one Spark job);
* the ALS settings with the fit's own iteration count and seed, and the block count;
* the list and scoring parameters (``k``, ``top_n``, the exclusion, the popularity weight, the split).

Each entry is a folder ``DIR/<key>/`` with ``lists/`` (Parquet) and ``fit.json``, written under a
temporary name and renamed into place, so an entry is whole or absent: a run stopped mid-fit
leaves nothing that a rerun would take for a finished fit. ``fit.json`` repeats the key's inputs
for a reader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from als_spark import caching
from als_spark import schema as S
from als_spark.analysis.progress import FitRecord
from als_spark.config import ALSConfig, Config

log = logging.getLogger(__name__)

#: Bumped when what an entry holds, or how a key is made, changes: older entries are then not found.
VERSION = 1
#: ALS settings that do not change a fit's factors (where checkpoints go), left out of the key.
_NOT_IN_KEY = ("checkpoint_dir",)


def fingerprint(data: DataFrame, columns: tuple[str, ...] = (S.USER_ID, S.ITEM_ID, S.CONFIDENCE)) -> dict[str, int]:
    """``rows`` and ``hash`` of ``data``'s ``columns``: equal for the same rows in any order, else almost surely not."""
    row = data.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.xxhash64(*columns).cast("decimal(38,0)")).alias("hash"),
    ).first()
    assert row is not None  # a global aggregate has one row
    return {"rows": int(row["rows"]), "hash": int(row["hash"] or 0)}


def key_inputs(als: ALSConfig, *, blocks: int, data: dict[str, Any], lists: dict[str, Any]) -> dict[str, Any]:
    """What a fit's lists depend on, as JSON-able values (the key is their hash)."""
    settings = {k: v for k, v in dataclasses.asdict(als).items() if k not in _NOT_IN_KEY}
    return {"version": VERSION, "als": settings, "blocks": blocks, "data": data, "lists": lists}


def key_of(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Cached:
    """One entry: the fit's lists (as fit ``run`` of this invocation), its record and its metrics."""

    lists: DataFrame
    record: FitRecord
    metrics: dict[str, Any]


class FitCache:
    """Entries under ``root`` (a local folder); ``root`` ``None`` keeps nothing and finds nothing."""

    def __init__(self, spark: SparkSession, root: str | None) -> None:
        self.spark, self.root = spark, root
        if root is not None:
            os.makedirs(root, exist_ok=True)

    def get(self, inputs: dict[str, Any], run: int) -> Cached | None:
        """The entry of ``inputs``, its lists renumbered as ``run`` and cached; ``None`` if there is none."""
        if self.root is None:
            return None
        where = os.path.join(self.root, key_of(inputs))
        meta_path = os.path.join(where, "fit.json")
        if not os.path.isfile(meta_path):
            return None
        with open(meta_path) as f:
            meta = json.load(f)
        lists = self.spark.read.parquet(os.path.join(where, "lists")).withColumn("run", F.lit(run))
        lists = caching.cache(lists)
        lists.count()
        record = FitRecord(**meta["record"])
        log.info("reused the fit %s from %s (%.1f s when it ran)", record.label, where, record.seconds)
        return Cached(lists=lists, record=record, metrics=meta["metrics"])

    def put(self, inputs: dict[str, Any], lists: DataFrame, record: FitRecord, metrics: dict[str, Any]) -> None:
        """Keep a finished fit: written under a temporary name, then renamed into place."""
        if self.root is None:
            return
        final = os.path.join(self.root, key_of(inputs))
        partial = os.path.join(self.root, f".partial-{uuid.uuid4().hex}")
        try:
            lists.drop("run").coalesce(1).write.parquet(os.path.join(partial, "lists"))
            with open(os.path.join(partial, "fit.json"), "w") as f:
                json.dump({"record": record.to_dict(), "metrics": metrics, "key": inputs}, f, indent=2, default=str)
            if os.path.isdir(final):  # kept by another run meanwhile: theirs stands
                return
            os.rename(partial, final)
            log.info("kept the fit %s in %s", record.label, final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)


def plan_keys(
    cfg: Config,
    plan: Sequence[tuple[int, int]],
    blocks: int,
    data: DataFrame,
    ratings: DataFrame,
    holdout: bool,
    k: int,
    top_n: int,
    test_fraction: float,
    split_seed: int,
    fit_cache: str | None,
) -> list[dict[str, Any]]:
    """The key inputs of each ``(max_iter, seed)`` fit of a converge ``plan``; without ``fit_cache``, empty ones
    (the fingerprints cost a Spark job each, for nothing when no cache is read)."""
    if not fit_cache:
        return [{} for _ in plan]
    # The training rows decide the fit; without a holdout, the ratings decide the exclusions too.
    rows = {"train": fingerprint(data)}
    if not holdout:
        rows["ratings"] = fingerprint(ratings, (S.USER_ID, S.ITEM_ID, S.RATING))
    params = {
        "k": k,
        "top_n": top_n,
        "holdout": holdout,
        "test_fraction": test_fraction if holdout else None,
        "split_seed": split_seed if holdout else None,
        "exclude": "train" if holdout else cfg.recommend.exclude,
        "popularity_weight": cfg.recommend.popularity_weight,
    }
    return [
        key_inputs(dataclasses.replace(cfg.als, max_iter=n, seed=s), blocks=blocks, data=rows, lists=params)
        for n, s in plan
    ]
