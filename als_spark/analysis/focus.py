"""Focus entities: the users and items whose lists a report prints side by side.

A user or item is named by its id in the input, or by a zero-based *index* in one of two orders:

- ``input`` (the default): the order in which the ids first appear in the input rows that count as
  interactions (rating >= ``ingest.min_rating``), which is what the reference notebook's
  ``pd.factorize`` gives after it keeps the ratings >= 4. On MovieLens 100k user index 10 is user
  id 38, user index 0 is user 298 and item index 100 is movie 360.
- ``sorted``: the distinct ids of the interactions sorted ascending, what
  ``astype("category").cat.codes``, ``np.unique`` or a pivot table's row number give. On
  MovieLens 100k user index 10 is user id 11.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import feedback
from als_spark import schema as S
from als_spark.analysis.lists import ITEMS, RECOMMENDATIONS, RUN, SCORES, SIMILAR_ITEMS, SIMILAR_USERS, TABLE, TITLES
from als_spark.analysis.reports import md_table
from als_spark.config import IngestConfig
from als_spark.errors import ConfigError

log = logging.getLogger(__name__)

#: The orders an index counts in (see the module docstring).
ORDERS = ("input", "sorted")
#: The column of an input row's position (:func:`first_appearance`), increasing in input order.
POSITION = "_position"


@dataclass(frozen=True)
class Focus:
    """A user or item whose lists the report prints: by input-file ``id`` or zero-based ``index``.

    ``index`` counts the ids of the interactions (ratings >= ``ingest.min_rating``) from 0, in
    ``order`` (see the module docstring). ``resolved`` is the id an index names, once
    :func:`resolve_focus` has found it (:meth:`at`).
    """

    kind: str  #: ``user`` or ``item``
    id: int | None = None
    index: int | None = None
    order: str = "input"
    resolved: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("user", "item"):
            raise ConfigError(f"focus kind must be 'user' or 'item', got {self.kind!r}")
        if (self.id is None) == (self.index is None):
            raise ConfigError(f"a focus {self.kind} needs exactly one of id and index")
        if self.index is not None and self.index < 0:
            raise ConfigError(f"--{self.kind}-index must be >= 0 (zero-based), got {self.index}")
        if self.order not in ORDERS:
            raise ConfigError(f"--index-order must be one of {', '.join(ORDERS)}, got {self.order!r}")

    def describe(self) -> str:
        if self.id is not None:
            return f"{self.kind} id {self.id}"
        return f"{self.kind} index {self.index} ({self.order} order)"

    def at(self, resolved: int) -> Focus:
        """This focus with the id it names."""
        return dataclasses.replace(self, resolved=resolved)


def resolve_focus(
    interactions: DataFrame, focus: Focus, *, rows: DataFrame | None = None, ingest: IngestConfig | None = None
) -> int:
    """The input-file id of ``focus``; raises :class:`ConfigError` when it has no interactions or is out of range.

    An index in ``input`` order needs the input's ``rows`` in input order (``user_id``,
    ``item_id``, ``rating``, and :data:`POSITION` where the order is not the rows' own) and the
    ``ingest`` configuration that made ``interactions`` from them.
    """
    col = S.USER_ID if focus.kind == "user" else S.ITEM_ID
    named = focus.id if focus.id is not None else focus.resolved
    if named is not None:
        if interactions.where(F.col(col) == int(named)).limit(1).count() == 0:
            raise ConfigError(
                f"--{focus.kind}-id {named}: no interaction of this {focus.kind} (rating >= ingest.min_rating), "
                f"so it has no factors and no lists"
            )
        return int(named)
    assert focus.index is not None
    if focus.order == "sorted":
        ordered = interactions.select(col).distinct().orderBy(col)
    elif rows is None or ingest is None:
        raise ConfigError(f"{focus.describe()} needs the input rows in their order; give an id or --index-order sorted")
    else:
        ordered = first_appearance(rows, interactions, col, ingest).orderBy(POSITION).select(col)
    ids = [row[0] for row in ordered.limit(focus.index + 1).collect()]
    if len(ids) <= focus.index:
        raise ConfigError(
            f"--{focus.kind}-index {focus.index} is out of range: the interactions have {len(ids)} distinct {focus.kind}s "
            f"(indices 0..{len(ids) - 1})"
        )
    log.info("%s is %s id %s", focus.describe(), focus.kind, ids[focus.index])
    return int(ids[focus.index])


def first_appearance(rows: DataFrame, interactions: DataFrame, col: str, ingest: IngestConfig) -> DataFrame:
    """``col, _position``: each id's first position among the input ``rows`` that count as interactions.

    A row counts when its (user, item) pair is one of ``interactions`` and, for ratings, its own
    rating is at least ``min_rating`` (as the notebook keeps rows; an event's weight counts only
    in its pair's sum). Positions are the rows' own order (``monotonically_increasing_id``)
    unless ``rows`` has a :data:`POSITION` column.
    """
    if POSITION not in rows.columns:
        rows = rows.withColumn(POSITION, F.monotonically_increasing_id())
    if ingest.kind == "rating":
        rows = feedback.filter_min_rating(rows, ingest.min_rating)
    kept = rows.join(interactions.select(S.USER_ID, S.ITEM_ID), [S.USER_ID, S.ITEM_ID], "left_semi")
    return kept.groupBy(col).agg(F.min(POSITION).alias(POSITION))


def focus_lists(lists: DataFrame, resolved: Sequence[tuple[Focus, int]]) -> list[dict[str, Any]]:
    """The focus entities' lists from ``lists`` (:func:`lists_of`): one dict per focus and table, JSON-able.

    A user gets its similar users and its recommendations, an item its similar
    items; ``lists`` maps each run (as a string) to ``[[id, score], ...]``.
    """
    out = []
    for f, entity in resolved:
        for table in (SIMILAR_USERS, RECOMMENDATIONS) if f.kind == "user" else (SIMILAR_ITEMS,):
            got = lists.where((F.col(TABLE) == table) & (F.col(S.ID) == entity)).select(RUN, ITEMS, SCORES).collect()
            out.append(
                {
                    "focus": f.describe(),
                    "kind": f.kind,
                    "id": entity,
                    "table": table,
                    "lists": {str(r[RUN]): [[int(i), float(s)] for i, s in zip(r[ITEMS], r[SCORES])] for r in got},
                }
            )
    return out


def lists_table(focus: dict[str, Any], columns: Sequence[tuple[str, str]]) -> str:
    """A focus entity's lists side by side: one column per ``(run, heading)``, cells ``id (score)``."""
    length = max((len(v) for v in focus["lists"].values()), default=0)
    rows = []
    for i in range(length):
        row = [str(i + 1)]
        for run, _ in columns:
            entries = focus["lists"].get(run, [])
            row.append(f"{entries[i][0]} ({entries[i][1]:.3f})" if i < len(entries) else "")
        rows.append(row)
    return md_table(["rank", *[heading for _, heading in columns]], rows)


def focus_heading(focus: dict[str, Any]) -> str:
    same = (
        ""
        if focus["focus"] == f"{focus['kind']} id {focus['id']}"
        else f" (= {focus['kind']} id {focus['id']} in the input file)"
    )
    return f"{focus['focus']}{same}: {TITLES[focus['table']]}"
