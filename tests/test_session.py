"""session.get_spark: an existing session is reused, never silently reconfigured."""

from __future__ import annotations

import logging

from als_spark.session import get_spark, is_connect, local_cores, local_driver_memory


def test_an_existing_session_is_reused_with_runtime_settings_applied_and_core_ones_reported(spark, caplog):
    # getOrCreate() on a running session keeps its core settings whatever the builder says;
    # get_spark applies what can still change and says what it could not.
    before = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        with caplog.at_level(logging.WARNING, logger="als_spark.session"):
            got = get_spark(conf={"spark.sql.shuffle.partitions": "3", "spark.executor.memory": "9g"})
        assert got is spark
        assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    assert "spark.executor.memory=9g is ignored" in caplog.text
    assert "shuffle.partitions" not in caplog.text
    assert not is_connect(spark)


def test_local_cores_of_a_master():
    assert (local_cores("local"), local_cores("local[3]"), local_cores("local[2,4]")) == (1, 3, 2)
    assert local_cores("local[*]") >= 1
    assert local_cores("spark://127.0.0.1:7077") is None and local_cores("yarn") is None


def test_local_driver_memory_is_half_the_machine_within_1g_and_16g():
    gib = 2**30
    assert local_driver_memory(int(23.5 * gib)) == "11g"  # this 24 GB development machine
    assert local_driver_memory(8 * gib) == "4g"
    assert local_driver_memory(1 * gib) == "1g"  # never below Spark's own default
    assert local_driver_memory(128 * gib) == "16g"
    assert local_driver_memory(None) is None
