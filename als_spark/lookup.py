"""One id's published rows, read with pyarrow: ``als-spark show`` without a SparkSession or a JVM.

:func:`show` answers the same questions as :func:`als_spark.pipeline.show` (same titles, columns
and row order) from a local or FUSE-mounted (``/dbfs``, ``/Volumes``) output directory. Each
table is read with :mod:`pyarrow.dataset`: only the columns shown, and a filter on the id that
Parquet's row-group statistics can skip by, so a large table is not read whole.

Nothing here imports Spark (the CLI's ``show`` stays JVM-free), so the few column names used are
spelled out below rather than taken from :mod:`als_spark.schema`; tests/test_lookup.py checks that
they agree.
"""

from __future__ import annotations

import os
import posixpath

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from als_spark import snapshots
from als_spark.errors import InputDataError
from als_spark.paths import local_path

__all__ = ["local_path", "show"]

# The column names of als_spark.schema (which imports pyspark).
USER_ID, ITEM_ID, RANK, TITLE = "user_id", "item_id", "rank", "title"
#: A column of the ``explanations`` table: how much ``because_item_id`` adds to the item's score.
CONTRIBUTION = "contribution"

#: Names a table's reader skips: Spark's markers (``_SUCCESS``, ``_committed_*``, ``_temporary``)
#: and hidden files and directories (``.crc`` checksums, ``.staging-*``).
IGNORED_PREFIXES = ["_", "."]

#: The command that writes each table :func:`show` reads.
WRITTEN_BY = {"recommendations": "recommend", "similar_users": "similar", "similar_items": "similar"}


def show(
    output: str, *, user: int | str | None = None, item: int | str | None = None
) -> list[tuple[str, pd.DataFrame]]:
    """The notebook's questions for one id, as ``(title, pandas DataFrame)`` pairs read from ``output``.

    Returns what :func:`als_spark.pipeline.show` returns: for a user, the recommendations and the
    similar users (and, when ``output`` has an ``explanations`` table, why each item is
    recommended); for an item, the similar items, with the item's title in the caption when the
    ``items`` table has it. Rows are ordered by rank and the id's own column is left out. The id
    is matched as text, so ``"38"`` finds the integer id 38 and a string id is given as is.

    A table the question needs that ``output`` lacks (a fold-in output has only
    ``recommendations``) gives a caption saying so and a frame without columns; when none of them
    is there, :class:`~als_spark.errors.InputDataError`. ``output`` must be a local path
    (:func:`local_path`); a remote one raises ``ValueError``.
    """
    root = local_path(output)
    if root is None:
        raise ValueError(f"{output} is not a local path: read it with als_spark.pipeline.show and a SparkSession")
    root = snapshots.snapshot(os.path.abspath(root))  # every table from one run, even if one is published meanwhile
    if user is not None:
        recs, similar = _table(root, "recommendations"), _table(root, "similar_users")
        _require_one(output, {"recommendations": recs, "similar_users": similar})
        answers = [
            _answer(output, "recommendations", recs, USER_ID, user, f"recommendations for user {user}"),
            _answer(output, "similar_users", similar, USER_ID, user, f"users most similar to user {user}"),
        ]
        explanations = _table(root, "explanations")
        if explanations is not None:
            why = _rows(explanations, USER_ID, user, order=[(RANK, "ascending"), (CONTRIBUTION, "descending")])
            answers.append((f"why these items for user {user}", why))
        return answers
    assert item is not None, "show needs a user or an item"
    similar = _table(root, "similar_items")
    _require_one(output, {"similar_items": similar})
    assert similar is not None
    title = _title(_table(root, "items"), item)
    caption = f"items most similar to item {item}{f' ({title})' if title is not None else ''}"
    return [(caption, _rows(similar, ITEM_ID, item, drop=(TITLE,)))]


def _table(root: str, name: str) -> ds.Dataset | None:
    """The published table ``root/name``, or ``None`` when it is absent (no directory, or no data file in it)."""
    path = os.path.join(root, name)
    if not os.path.isdir(path):
        return None
    table = ds.dataset(path, format="parquet", ignore_prefixes=IGNORED_PREFIXES)
    return table if table.files else None


def _require_one(output: str, tables: dict[str, ds.Dataset | None]) -> None:
    """Raise :class:`InputDataError` when none of ``tables`` is in ``output``."""
    if any(table is not None for table in tables.values()):
        return
    names = f"no {next(iter(tables))}" if len(tables) == 1 else "neither a " + " nor a ".join(tables)
    commands = " and ".join(f"`als-spark {c} --output {output}`" for c in dict.fromkeys(WRITTEN_BY[n] for n in tables))
    missing = "" if os.path.isdir(local_path(output) or output) else " (the directory does not exist)"
    raise InputDataError(
        f"{output} has {names} table{missing}: run {commands} first (or `als-spark run --output {output}` for "
        "the whole pipeline)."
    )


def _answer(
    output: str, name: str, table: ds.Dataset | None, key: str, value: int | str, caption: str
) -> tuple[str, pd.DataFrame]:
    """``(caption, rows)``, or a caption saying the table is missing and a frame without columns."""
    if table is None:
        path = posixpath.join(output.rstrip("/"), name)
        return f"{caption}: skipped, {path} is missing (`als-spark {WRITTEN_BY[name]}` writes it)", pd.DataFrame()
    return caption, _rows(table, key, value)


def _rows(
    table: ds.Dataset,
    key: str,
    value: int | str,
    *,
    drop: tuple[str, ...] = (),
    order: list[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """The rows whose ``key`` is ``value`` (as text), sorted by ``order`` (default: rank), without ``key`` and ``drop``."""
    columns = [c for c in table.schema.names if c != key and c not in drop]
    rows = table.to_table(columns=columns, filter=_matches(table.schema, key, value))
    return rows.sort_by(order or [(RANK, "ascending")]).to_pandas()  # a stable sort


def _matches(schema: pa.Schema, column: str, value: int | str) -> ds.Expression:
    """``column`` read as text equals ``value``'s text: Spark's ``CAST(column AS STRING) = value``.

    For an integer column the text is turned into a number of the column's type instead, so that
    the filter compares numbers and row groups can be skipped by their min/max: ``"38"`` is 38,
    while ``"038"``, ``"+38"``, ``" 38"`` and a number out of the type's range match nothing, as
    their text is no integer's.
    """
    text, dtype = str(value), schema.field(column).type
    if pa.types.is_integer(dtype):
        try:
            number = int(text)
            if str(number) != text:
                return ds.scalar(False)
            return ds.field(column) == pa.scalar(number, type=dtype)
        except (ValueError, OverflowError, pa.ArrowInvalid):
            return ds.scalar(False)
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return ds.field(column) == text
    return ds.field(column).cast(pa.string()) == text


def _title(items: ds.Dataset | None, item: int | str) -> str | None:
    """The item's title from the ``items`` table, ``None`` without the table, the item or a title."""
    if items is None or TITLE not in items.schema.names:
        return None
    found = items.to_table(columns=[TITLE], filter=_matches(items.schema, ITEM_ID, item))
    titles = [t for t in found.column(TITLE).to_pylist() if t is not None]
    return titles[0] if titles else None
