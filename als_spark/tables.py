"""The published tables read back by the commands that continue a run: stages, fold-in, explanations."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession

from als_spark import ids, publish
from als_spark import schema as S
from als_spark.errors import InputDataError


def optional(spark: SparkSession, output: str, name: str) -> DataFrame | None:
    """Table ``name`` under ``output``, or ``None`` when it is not there."""
    try:
        return publish.read_table(spark, output, name)
    except Exception:  # noqa: BLE001 - a missing optional table is normal
        return None


def required(spark: SparkSession, output: str, name: str, produced_by: str) -> DataFrame:
    """Table ``name`` under ``output``; an :class:`InputDataError` naming the command that makes it when missing."""
    table = optional(spark, output, name)
    if table is None:
        raise InputDataError(
            f"{publish.table_path(output, name)} is missing: run `als-spark {produced_by} --output {output}` first "
            "(or `als-spark run` for the whole pipeline)."
        )
    return table


def id_maps(spark: SparkSession, output: str) -> tuple[ids.IdMap, ids.IdMap]:
    """The users' and items' indexes that ``als-spark ingest`` published under ``output``."""
    return (
        ids.from_table(required(spark, output, "user_index", "ingest")),
        ids.from_table(required(spark, output, "item_index", "ingest")),
    )


def typed(schema: Any, user_ids: ids.IdMap, item_ids: ids.IdMap) -> Any:
    """``schema`` with the user and item id columns of the ids' own types."""
    return S.with_id_types(schema, user=user_ids.dtype, item=item_ids.dtype)
