"""ALS fitting: checkpointing always on (long runs survive), temporary checkpoints cleaned up, ids kept."""

from __future__ import annotations

import os

import pytest

from als_spark import model
from als_spark.config import ALSConfig
from als_spark.errors import ConfigError

INTERACTIONS = "user_id int, item_id int, rating double, confidence double"


@pytest.fixture
def interactions(spark):
    # Two blocks of taste: users 1-3 like items 100-102, users 4-6 like 200-202 (ids are not 0..n).
    rows = [(u, i, 5.0, 5.0) for u in (1, 2, 3) for i in (100, 101, 102)]
    rows += [(u, i, 4.0, 4.0) for u in (4, 5, 6) for i in (200, 201, 202)]
    rows.remove((3, 102, 5.0, 5.0))
    return spark.createDataFrame(rows, INTERACTIONS).cache()


def test_checkpoint_dir_temporary_then_kept_then_explicit(spark, tmp_path, monkeypatch):
    # The shared test session may already have a directory; Spark cannot unset one, so
    # present a session without one until checkpoint_dir sets it.
    sc = spark.sparkContext
    real_get, real_set, was_set = sc.getCheckpointDir, sc.setCheckpointDir, []
    monkeypatch.setattr(sc, "getCheckpointDir", lambda: real_get() if was_set else None)
    monkeypatch.setattr(sc, "setCheckpointDir", lambda d: (was_set.append(d), real_set(d)))
    with model.checkpoint_dir(spark) as path:
        assert path == spark.sparkContext.getCheckpointDir()
        local = path.removeprefix("file:")
        assert os.path.isdir(local)
        assert os.path.basename(os.path.dirname(local)).startswith("als-spark-checkpoints-")
    assert not os.path.exists(os.path.dirname(local))  # the temporary directory is gone
    # A directory the session already has is used as it is (a notebook may have set it).
    spark.sparkContext.setCheckpointDir(str(tmp_path / "mine"))
    mine = spark.sparkContext.getCheckpointDir()
    with model.checkpoint_dir(spark) as path:
        assert path == mine
    assert os.path.isdir(mine.removeprefix("file:"))
    # An explicit path wins.
    with model.checkpoint_dir(spark, str(tmp_path / "explicit")) as path:
        assert path.startswith(f"file:{tmp_path}/explicit/")


def test_long_run_checkpoints_to_the_configured_dir(spark, interactions, tmp_path):
    # Without checkpoints a fit of these interactions dies with StackOverflowError by 20 iterations
    # (measured 2026-12-02: 12 iterations fit, 20 do not); 40, checkpointed every 10, complete.
    ckpt = tmp_path / "ckpt"
    cfg = ALSConfig(rank=2, max_iter=40, reg_param=0.1, checkpoint_interval=10, checkpoint_dir=str(ckpt))
    with model.checkpoint_dir(spark, cfg.checkpoint_dir):
        fitted = model.fit(interactions, cfg, num_blocks=2)
        users, items = model.factors(fitted)
        got_users = sorted(r.id for r in users.collect())
        got_items = sorted(r.id for r in items.collect())
    # ALS wrote RDD checkpoints under the configured directory (Spark adds a session subdirectory).
    written = [os.path.join(d, f) for d, _, files in os.walk(ckpt) for f in files]
    assert any("/rdd-" in p for p in written)
    # factors are keyed by the input ids, not by internal indexes
    assert got_users == [1, 2, 3, 4, 5, 6]
    assert got_items == [100, 101, 102, 200, 201, 202]


def test_fit_that_would_checkpoint_without_a_checkpoint_dir_is_a_clear_error(
    spark, interactions, monkeypatch, tmp_path
):
    sc = spark.sparkContext
    cfg = ALSConfig(rank=2, max_iter=11, checkpoint_interval=10)
    # No directory at all (a fresh session).
    monkeypatch.setattr(sc, "getCheckpointDir", lambda: None)
    with pytest.raises(
        ConfigError,
        match=r"max_iter=11 checkpoints every 10 iterations, but the Spark session has no "
        r"checkpoint directory: call model.fit inside `with model.checkpoint_dir",
    ):
        model.fit(interactions, cfg, num_blocks=2)
    # Inside the temporary directory of a checkpoint_dir block that has ended (and removed it):
    # Spark would recreate it and nothing would remove it again.
    removed = tmp_path / "als-spark-ckpt-removed"
    monkeypatch.setattr(model, "_REMOVED_TEMPORARIES", {str(removed)})
    monkeypatch.setattr(sc, "getCheckpointDir", lambda: f"file:{removed}/0a1b2c3d-session")
    with pytest.raises(ConfigError, match=r"its last one, .* was removed when its block ended"):
        model.fit(interactions, cfg, num_blocks=2)
    # A fit that never reaches a checkpoint (max_iter <= checkpoint_interval) needs none.
    short = model.fit(interactions, ALSConfig(rank=2, max_iter=10, checkpoint_interval=10), num_blocks=2)
    assert sorted(r.id for r in model.factors(short)[0].collect()) == [1, 2, 3, 4, 5, 6]


def test_fit_is_deterministic_for_a_seed_and_block_count(spark, interactions):
    cfg = ALSConfig(rank=3, max_iter=5, seed=7)
    with model.checkpoint_dir(spark):
        a = {r.id: r.features for r in model.factors(model.fit(interactions, cfg, num_blocks=2))[1].collect()}
        b = {r.id: r.features for r in model.factors(model.fit(interactions, cfg, num_blocks=2))[1].collect()}
    assert a == b


def test_build_als_maps_the_config(spark):
    als = model.build_als(
        ALSConfig(rank=7, max_iter=9, reg_param=0.5, alpha=2.0, seed=3, checkpoint_interval=4), num_blocks=5
    )
    assert (als.getRank(), als.getMaxIter(), als.getRegParam(), als.getAlpha(), als.getSeed()) == (7, 9, 0.5, 2.0, 3)
    assert (als.getImplicitPrefs(), als.getNumUserBlocks(), als.getNumItemBlocks(), als.getCheckpointInterval()) == (
        True,
        5,
        5,
        4,
    )
    assert (als.getUserCol(), als.getItemCol(), als.getRatingCol()) == ("user_id", "item_id", "confidence")
