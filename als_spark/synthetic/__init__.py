"""Deterministic MovieLens-shaped ratings with planted taste groups.

Every user and every item belongs to one of ``n_groups`` taste groups. Users
mostly rate (and rate highly) items of their own group, so after keeping
ratings of 4 and 5 the implicit feedback is dominated by the group structure
and a good model's recommendations and nearest neighbours can be checked
against :attr:`SyntheticData.user_groups` and :attr:`SyntheticData.item_groups`.

Pure numpy and pandas (no Spark). Generation is vectorised and works on blocks
of users, so memory grows with the number of ratings, never with
``n_users * n_items``.

The same data as the tables users bring (:func:`interactions`): long or string
ids (:mod:`~als_spark.synthetic.ids`), an event log of ``view``, ``cart`` and
``purchase`` rows instead of ratings (:mod:`~als_spark.synthetic.events`), and
Parquet or CSV files (:func:`write_parquet`, :func:`write_csv`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from als_spark.errors import ConfigError
from als_spark.synthetic.events import (
    EVENT_TYPES,
    EVENT_WEIGHTS,
    MAX_GAP_SECONDS,
    events_from_ratings,
    events_per_rating,
    expand_events,
)
from als_spark.synthetic.export import TABLE_FORMATS, Interactions, interactions, write_csv, write_parquet, write_tables
from als_spark.synthetic.ids import ID_MODES, encode_item_ids, encode_user_ids
from als_spark.synthetic.sampling import apportion, check_int, draw_ratings, draw_timestamps, sample_distinct

__all__ = [
    "EVENT_TYPES",
    "EVENT_WEIGHTS",
    "ID_MODES",
    "MAX_GAP_SECONDS",
    "TABLE_FORMATS",
    "Interactions",
    "SyntheticData",
    "encode_item_ids",
    "encode_user_ids",
    "events_from_ratings",
    "events_per_rating",
    "expand_events",
    "generate",
    "generate_for_size",
    "interactions",
    "write_csv",
    "write_movielens",
    "write_parquet",
    "write_tables",
]

MIN_RATINGS_PER_USER = 20

_ACTIVITY_SIGMA = 1.1  # lognormal sigma of the activity beyond 20 ratings
_POPULARITY_EXPONENT = 0.9  # item weight = popularity_rank ** -exponent
_N_GENRES = 19
_RELEASE_DATE = "01-Jan-1995"
_INT32_MAX = np.iinfo(np.int32).max

# (n_users, n_items) of the MovieLens releases, by number of ratings.
_MOVIELENS_SHAPES = {
    100_000: (943, 1_682),
    1_000_000: (6_040, 3_706),
    10_000_000: (69_878, 10_677),
    20_000_000: (138_493, 26_744),
}


@dataclass(frozen=True)
class SyntheticData:
    """Synthetic ratings plus the planted taste groups they were drawn from.

    Attributes
    ----------
    ratings : :class:`pandas.DataFrame`
        ``user_id`` (int32), ``item_id`` (int32), ``rating`` (int32, 1..5) and
        ``timestamp`` (int64, unix seconds), sorted by ``(user_id, item_id)``
        with no duplicate pairs.
    items : :class:`pandas.DataFrame`
        ``item_id`` (int32) and ``title`` (str) for every item ``1..n_items``.
    user_groups : :class:`pandas.DataFrame`
        ``user_id`` (int32) and ``group`` (int32): the planted user groups.
    item_groups : :class:`pandas.DataFrame`
        ``item_id`` (int32) and ``group`` (int32): the planted item groups.
    """

    ratings: pd.DataFrame
    items: pd.DataFrame
    user_groups: pd.DataFrame
    item_groups: pd.DataFrame


def generate(
    *,
    n_users: int = 943,
    n_items: int = 1682,
    n_ratings: int = 100_000,
    n_groups: int = 8,
    in_group_share: float = 0.8,
    seed: int = 42,
) -> SyntheticData:
    """Generate MovieLens-shaped ratings with planted taste groups.

    Ids are 1-based and contiguous. Every user has at least 20 ratings; user
    activity (20 plus a lognormal extra) and item popularity (Zipf-like) are
    long-tailed. A share ``in_group_share`` of each user's items is drawn
    without replacement, by popularity, from the user's own group and rated
    mostly 4-5; the rest is drawn from the whole catalogue, and items of other
    groups are rated mostly 1-3.

    Parameters
    ----------
    n_users : int, optional
        Number of users, default 943 (as in MovieLens 100k).
    n_items : int, optional
        Number of items, default 1682. At least 20.
    n_ratings : int, optional
        Exact number of ratings, between ``20 * n_users`` and
        ``n_users * n_items``; default 100,000.
    n_groups : int, optional
        Number of taste groups, between 1 and ``n_items``; default 8.
    in_group_share : float, optional
        Share of each user's ratings drawn from their own group, in [0, 1];
        default 0.8. Capped per user at the size of the group, so very active
        users get a lower share.
    seed : int, optional
        Seed for :func:`numpy.random.default_rng`; the output is a pure
        function of the parameters.

    Returns
    -------
    :class:`SyntheticData`

    Raises
    ------
    :class:`als_spark.errors.ConfigError`
        If a parameter is impossible; the message names it.
    """
    n_users = check_int("n_users", n_users, 1, _INT32_MAX)
    n_items = check_int("n_items", n_items, MIN_RATINGS_PER_USER, _INT32_MAX)
    n_ratings = check_int("n_ratings", n_ratings, MIN_RATINGS_PER_USER * n_users, n_users * n_items)
    n_groups = check_int("n_groups", n_groups, 1, n_items)
    seed = check_int("seed", seed, 0, None)
    if isinstance(in_group_share, bool) or not isinstance(in_group_share, Real) or not 0.0 <= in_group_share <= 1.0:
        raise ConfigError(f"in_group_share must be a number in [0, 1], got {in_group_share!r}")

    rng = np.random.default_rng(seed)
    user_group = rng.permutation(n_users) % n_groups
    item_group = rng.permutation(n_items) % n_groups
    weights = (rng.permutation(n_items) + 1.0) ** -_POPULARITY_EXPONENT
    counts = MIN_RATINGS_PER_USER + apportion(
        n_ratings - MIN_RATINGS_PER_USER * n_users,
        rng.lognormal(0.0, _ACTIVITY_SIGMA, n_users),
        n_items - MIN_RATINGS_PER_USER,
    )
    group_size = np.bincount(item_group, minlength=n_groups)
    n_in = np.rint(counts * float(in_group_share)).astype(np.int64)
    np.minimum(n_in, group_size[user_group], out=n_in)

    own = sample_distinct(rng, item_group, weights, user_group, n_in, np.empty(0, np.int64))
    no_pool = np.zeros(n_items, dtype=np.int64)
    rest = sample_distinct(rng, no_pool, weights, np.zeros(n_users, np.int64), counts - n_in, own)
    keys = np.concatenate([own, rest])
    del own, rest
    keys.sort(kind="stable")  # merges the two sorted runs in linear time
    user = (keys // n_items).astype(np.int32)
    item = (keys % n_items).astype(np.int32)
    del keys

    ratings = pd.DataFrame(
        {
            "user_id": user + 1,
            "item_id": item + 1,
            "rating": draw_ratings(rng, item_group[item] == user_group[user]),
            "timestamp": draw_timestamps(rng, user, n_users),
        },
        copy=False,
    )
    item_ids = np.arange(1, n_items + 1, dtype=np.int32)
    width = max(4, len(str(n_items)))
    titles = [f"Synthetic Group {g} Film {i:0{width}d}" for i, g in zip(item_ids, item_group)]
    return SyntheticData(
        ratings=ratings,
        items=pd.DataFrame({"item_id": item_ids, "title": titles}),
        user_groups=pd.DataFrame(
            {
                "user_id": np.arange(1, n_users + 1, dtype=np.int32),
                "group": user_group.astype(np.int32),
            }
        ),
        item_groups=pd.DataFrame({"item_id": item_ids, "group": item_group.astype(np.int32)}),
    )


def generate_for_size(n_ratings: int, *, seed: int = 42) -> SyntheticData:
    """Generate ``n_ratings`` ratings with MovieLens-like user and item counts.

    100k, 1M, 10M and 20M use the user/item counts of the MovieLens release of
    that size; other sizes scale the nearest release (in log scale)
    proportionally.

    Parameters
    ----------
    n_ratings : int
        Exact number of ratings, at least 20.
    seed : int, optional
        Seed passed to :func:`generate`.

    Returns
    -------
    :class:`SyntheticData`
    """
    n_ratings = check_int("n_ratings", n_ratings, MIN_RATINGS_PER_USER, None)
    base = min(_MOVIELENS_SHAPES, key=lambda size: abs(math.log(n_ratings / size)))
    n_users, n_items = _MOVIELENS_SHAPES[base]
    if n_ratings != base:
        scale = n_ratings / base
        n_users = max(1, min(round(n_users * scale), n_ratings // MIN_RATINGS_PER_USER))
        n_items = max(MIN_RATINGS_PER_USER, round(n_items * scale), -(-n_ratings // n_users))
    return generate(n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=seed)


def write_movielens(data: SyntheticData, directory: str | os.PathLike[str]) -> Path:
    """Write ``data`` as MovieLens 100k files ``u.data`` and ``u.item``.

    ``u.data`` is tab-separated ``user item rating timestamp`` without a header.
    ``u.item`` is Latin-1, ``|``-separated with 24 fields: id, title, release
    date, video release date (empty), IMDb URL (empty) and 19 genre flags, of
    which flag ``group % 19`` is set.

    Parameters
    ----------
    data : :class:`SyntheticData`
        The data to write.
    directory : str or path-like
        Target directory; created if needed, existing files are overwritten.

    Returns
    -------
    :class:`pathlib.Path`
        The directory.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    data.ratings[["user_id", "item_id", "rating", "timestamp"]].to_csv(
        path / "u.data", sep="\t", header=False, index=False, lineterminator="\n"
    )
    groups = data.item_groups.set_index("item_id")["group"].reindex(data.items["item_id"])
    lines = []
    for item_id, title, group in zip(data.items["item_id"], data.items["title"], groups):
        flags = ["0"] * _N_GENRES
        flags[int(group) % _N_GENRES] = "1"
        lines.append(f"{item_id}|{title}|{_RELEASE_DATE}|||{'|'.join(flags)}\n")
    with open(path / "u.item", "w", encoding="latin-1", newline="\n") as out:
        out.write("".join(lines))
    return path
