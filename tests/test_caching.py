"""Runs release what they cache: a second run in the same session sees the input as it is now."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark import StorageLevel

from als_spark import caching, pipeline
from als_spark import schema as S
from als_spark.config import build_config


def _is_cached(df) -> bool:
    return df.storageLevel != StorageLevel.NONE


def test_scope_unpersists_what_was_cached_inside_it(spark):
    with caching.scope() as held:
        a = caching.cache(spark.range(3))
        b = caching.cache(spark.range(4))
        assert held == [a, b]
        assert _is_cached(a) and _is_cached(b)
    assert not _is_cached(a)
    assert not _is_cached(b)


def test_scope_unpersists_on_failure(spark):
    with pytest.raises(RuntimeError, match="boom"), caching.scope():
        df = caching.cache(spark.range(5))
        raise RuntimeError("boom")
    assert not _is_cached(df)


def test_inner_scope_releases_only_its_own(spark):
    with caching.scope():
        outer = caching.cache(spark.range(6))
        with caching.scope():
            inner = caching.cache(spark.range(7))
        assert not _is_cached(inner)
        assert _is_cached(outer)
    assert not _is_cached(outer)


def test_outside_a_scope_the_cache_is_kept(spark):
    df = caching.cache(spark.range(8))
    try:
        assert _is_cached(df)
    finally:
        df.unpersist()


@pytest.mark.integration  # a pipeline stage, twice
def test_a_second_ingest_in_the_same_session_reads_the_changed_file(spark, tmp_path):
    """Spark matches cached data by plan, not file contents: without the run's scope the second
    ingest of the same path returned the first file's rows (checked before the fix)."""
    data = tmp_path / "u.data"
    out = tmp_path / "out"
    cfg = build_config(None, [])
    data.write_text("1\t10\t5\t100\n1\t11\t4\t101\n")
    pipeline.stage_ingest(spark, pipeline.Source(path=str(data)), cfg, str(out))
    data.write_text("2\t20\t5\t200\n")
    pipeline.stage_ingest(spark, pipeline.Source(path=str(data)), cfg, str(out))

    expected = spark.createDataFrame([(2, 20, 5.0, 200)], S.RATINGS)
    assert_df_equality(spark.read.parquet(str(out / "ratings")), expected, ignore_nullable=True)
