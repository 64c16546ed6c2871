"""The synthetic data as the interaction tables users bring: other id types, event logs, Parquet and CSV.

:func:`interactions` re-expresses :class:`~als_spark.synthetic.SyntheticData`
with the ids of :mod:`~als_spark.synthetic.ids` and, optionally, as the event
log of :mod:`~als_spark.synthetic.events`, keeping the maps back to the
generator's int ids (and so to the planted groups). :func:`write_parquet` and
:func:`write_csv` write any such frame in pieces, so memory stays proportional
to the rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from als_spark.errors import ConfigError
from als_spark.synthetic.events import events_from_ratings
from als_spark.synthetic.ids import ID_MODES, encode_item_ids, encode_user_ids
from als_spark.synthetic.sampling import check_int

if TYPE_CHECKING:
    from als_spark.synthetic import SyntheticData

__all__ = ["TABLE_FORMATS", "Interactions", "interactions", "write_csv", "write_parquet", "write_tables"]

#: The formats of :func:`write_tables`.
TABLE_FORMATS = ("parquet", "csv")

_ROWS_PER_FILE = 5_000_000
_ROW_GROUP = 1_000_000
_CSV_CHUNK = 1_000_000


@dataclass(frozen=True)
class Interactions:
    """An interaction table and the maps from its ids back to the generator's.

    Attributes
    ----------
    frame : :class:`pandas.DataFrame`
        ``user_id``, ``item_id`` (of mode :attr:`ids`), then ``rating`` (int32)
        or, with :attr:`events`, ``event`` (str), then ``timestamp`` (int64).
    users : :class:`pandas.DataFrame`
        ``user_id`` (int32, the generator's) and ``user`` (the id in :attr:`frame`), one row per user.
    items : :class:`pandas.DataFrame`
        ``item_id`` (int32, the generator's) and ``item`` (the id in :attr:`frame`), one row per item.
    ids : str
        ``int``, ``long`` or ``string``.
    events : bool
        Whether :attr:`frame` is an event log rather than ratings.
    """

    frame: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    ids: str
    events: bool

    def to_int_ids(self) -> pd.DataFrame:
        """:attr:`frame` with ``user_id`` and ``item_id`` mapped back to the generator's int32 ids."""
        frame = self.frame.copy()
        for column, table, key in (("user_id", self.users, "user"), ("item_id", self.items, "item")):
            position = pd.Index(table[key]).get_indexer(frame[column])
            if (position < 0).any():
                raise ConfigError(f"{column} holds ids that are not in the {key} map")
            frame[column] = table[column].to_numpy()[position]
        return frame


def interactions(data: SyntheticData, *, ids: str = "int", events: bool = False, seed: int = 42) -> Interactions:
    """``data``'s ratings with ids of mode ``ids``, or as an event log.

    Parameters
    ----------
    data : :class:`~als_spark.synthetic.SyntheticData`
        What :func:`~als_spark.synthetic.generate` returns, or any with the same columns.
    ids : {"int", "long", "string"}, optional
        See :mod:`als_spark.synthetic.ids`: the generator's int32 ids (default),
        63-bit longs above ``2**32``, or UUID users and ``SKU-`` items.
    events : bool, optional
        Replace each rating by its events (:func:`~als_spark.synthetic.events_from_ratings`).
    seed : int, optional
        Seed of the id bijection and of the events; default 42.

    Returns
    -------
    :class:`Interactions`
        With ``ids="int", events=False`` the frame equals ``data.ratings``.

    Raises
    ------
    :class:`als_spark.errors.ConfigError`
        For an unknown ``ids``, a bad seed, or a rating of a user or item that ``data`` does not list.
    """
    if ids not in ID_MODES:
        raise ConfigError(f"ids must be one of {', '.join(ID_MODES)}, got {ids!r}")
    if not isinstance(events, bool):
        raise ConfigError(f"events must be True or False, got {events!r}")
    seed = check_int("seed", seed, 0, None)
    user_ids = data.user_groups["user_id"].to_numpy()
    item_ids = data.items["item_id"].to_numpy()
    users = pd.DataFrame({"user_id": user_ids, "user": encode_user_ids(user_ids, ids=ids, seed=seed)})
    items = pd.DataFrame({"item_id": item_ids, "item": encode_item_ids(item_ids, ids=ids, seed=seed)})
    frame = data.ratings.copy()
    if ids != "int":  # before the events: translating ratings is cheaper than translating their events
        frame["user_id"] = _translate(frame["user_id"].to_numpy(), users, "user")
        frame["item_id"] = _translate(frame["item_id"].to_numpy(), items, "item")
    if events:
        frame = events_from_ratings(frame, seed=seed)
    return Interactions(frame=frame, users=users, items=items, ids=ids, events=events)


def _translate(values: np.ndarray, table: pd.DataFrame, key: str) -> np.ndarray:
    """``table[key]`` of each of ``values`` (ids of ``table[key + "_id"]``)."""
    known = table[f"{key}_id"].to_numpy()
    lo = int(known[0]) if known.size else 0
    if np.array_equal(known, np.arange(lo, lo + known.size)):  # the generator's contiguous ids: no search
        position = values.astype(np.int64) - lo
        position[(position < 0) | (position >= known.size)] = -1
    else:
        position = pd.Index(known).get_indexer(values)
    if (position < 0).any():
        raise ConfigError(f"ratings name {key}s the {key} table does not list, e.g. {values[position < 0][0]}")
    return table[key].to_numpy()[position]


def write_parquet(
    frame: pd.DataFrame, directory: str | os.PathLike[str], *, rows_per_file: int = _ROWS_PER_FILE
) -> Path:
    """Write ``frame`` as a folder of Parquet files that Spark and pyarrow read as one table.

    The files are ``part-00000.parquet``, ``part-00001.parquet``, ... of at most
    ``rows_per_file`` rows each (one file for an empty frame), in row order,
    with row groups of a million rows. Object columns are written as strings,
    numpy columns with their own type (int32 stays int32). One file is
    converted at a time, so the extra memory is that of one file.

    Parameters
    ----------
    frame : :class:`pandas.DataFrame`
        The table, e.g. :attr:`Interactions.frame`.
    directory : str or path-like
        Created if needed; ``part-*.parquet`` files already in it are removed first.
    rows_per_file : int, optional
        Default 5,000,000.

    Returns
    -------
    :class:`pathlib.Path`
        The directory.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows_per_file = check_int("rows_per_file", rows_per_file, 1, None)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("part-*.parquet"):
        old.unlink()
    # One schema for every file, from the first row (an empty object column would be "null": make it string).
    schema = pa.Schema.from_pandas(frame.head(1), preserve_index=False)
    for i, field in enumerate(schema):
        if pa.types.is_null(field.type):
            schema = schema.set(i, field.with_type(pa.string()))
    for number, lo in enumerate(range(0, max(len(frame), 1), rows_per_file)):
        chunk = frame.iloc[lo : lo + rows_per_file]
        table = pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)
        pq.write_table(table, path / f"part-{number:05d}.parquet", row_group_size=_ROW_GROUP)
    return path


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str], *, chunk_rows: int = _CSV_CHUNK) -> Path:
    """Write ``frame`` as one UTF-8 CSV file with a header line, ``\\n`` line ends and no index.

    Written ``chunk_rows`` rows at a time (default a million), so the extra
    memory is that of one chunk's text.

    Parameters
    ----------
    frame : :class:`pandas.DataFrame`
        The table, e.g. :attr:`Interactions.frame`.
    path : str or path-like
        The file; its directory is created if needed, an existing file is overwritten.
    chunk_rows : int, optional
        Rows formatted at a time; does not change the file.

    Returns
    -------
    :class:`pathlib.Path`
        The file.
    """
    chunk_rows = check_int("chunk_rows", chunk_rows, 1, None)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8", newline="") as out:
        for lo in range(0, max(len(frame), 1), chunk_rows):
            frame.iloc[lo : lo + chunk_rows].to_csv(out, header=lo == 0, index=False, lineterminator="\n")
    return target


def write_tables(result: Interactions, directory: str | os.PathLike[str], *, fmt: str) -> dict[str, Path]:
    """Write ``result``'s frame and id maps under ``directory`` as ``interactions``, ``users`` and ``items``.

    ``fmt="parquet"`` writes three Parquet folders (:func:`write_parquet`),
    ``fmt="csv"`` three files ``interactions.csv``, ``users.csv`` and
    ``items.csv`` (:func:`write_csv`). Returns the paths by table name.
    """
    if fmt not in TABLE_FORMATS:
        raise ConfigError(f"fmt must be one of {', '.join(TABLE_FORMATS)}, got {fmt!r}")
    base = Path(directory)
    tables = {"interactions": result.frame, "users": result.users, "items": result.items}
    if fmt == "parquet":
        return {name: write_parquet(table, base / name) for name, table in tables.items()}
    return {name: write_csv(table, base / f"{name}.csv") for name, table in tables.items()}
