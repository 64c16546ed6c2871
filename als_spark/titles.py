"""Carry item titles into output tables."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import schema as S


def with_title(df: DataFrame, items: DataFrame, *, id_col: str = S.ITEM_ID, title_col: str = S.TITLE) -> DataFrame:
    """Append ``title_col``: the title of ``id_col`` from ``items`` (``item_id, title``), null if unknown."""
    titles = F.broadcast(items.select(F.col(S.ITEM_ID).alias("_tid"), F.col(S.TITLE).alias(title_col)))
    return df.join(titles, df[id_col] == titles["_tid"], "left").drop("_tid")
