"""Focus entities: the users and items whose lists a report prints side by side.

A user or item is named by its id in the input, or by a zero-based *index*
into the distinct ids of the interactions (ratings >= ``ingest.min_rating``)
sorted ascending, which is the index a notebook's
``astype("category").cat.codes``, ``np.unique`` or a pivot table's row number
gives. On MovieLens 100k user index 10 is user id 11.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import schema as S
from als_spark.analysis.lists import ITEMS, RECOMMENDATIONS, RUN, SCORES, SIMILAR_ITEMS, SIMILAR_USERS, TABLE, TITLES
from als_spark.analysis.reports import md_table
from als_spark.errors import ConfigError


@dataclass(frozen=True)
class Focus:
    """A user or item whose lists the report prints: by input-file ``id`` or zero-based ``index``.

    ``index`` counts the distinct ids of the interactions (ratings >=
    ``ingest.min_rating``) sorted ascending, from 0 (see the module docstring).
    """

    kind: str  #: ``user`` or ``item``
    id: int | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("user", "item"):
            raise ConfigError(f"focus kind must be 'user' or 'item', got {self.kind!r}")
        if (self.id is None) == (self.index is None):
            raise ConfigError(f"a focus {self.kind} needs exactly one of id and index")
        if self.index is not None and self.index < 0:
            raise ConfigError(f"--{self.kind}-index must be >= 0 (zero-based), got {self.index}")

    def describe(self) -> str:
        return f"{self.kind} id {self.id}" if self.id is not None else f"{self.kind} index {self.index}"


def resolve_focus(interactions: DataFrame, focus: Focus) -> int:
    """The input-file id of ``focus``; raises :class:`ConfigError` when it has no interactions or is out of range."""
    col = S.USER_ID if focus.kind == "user" else S.ITEM_ID
    if focus.id is not None:
        if interactions.where(F.col(col) == int(focus.id)).limit(1).count() == 0:
            raise ConfigError(
                f"--{focus.kind}-id {focus.id}: no interaction of this {focus.kind} (rating >= ingest.min_rating), "
                f"so it has no factors and no lists"
            )
        return int(focus.id)
    assert focus.index is not None
    ids = [row[0] for row in interactions.select(col).distinct().orderBy(col).limit(focus.index + 1).collect()]
    if len(ids) <= focus.index:
        raise ConfigError(
            f"--{focus.kind}-index {focus.index} is out of range: the interactions have {len(ids)} distinct {focus.kind}s "
            f"(indices 0..{len(ids) - 1})"
        )
    return int(ids[focus.index])


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
