"""Deterministic MovieLens-shaped ratings with planted taste groups.

Every user and every item belongs to one of ``n_groups`` taste groups. Users
mostly rate (and rate highly) items of their own group, so after keeping
ratings of 4 and 5 the implicit feedback is dominated by the group structure
and a good model's recommendations and nearest neighbours can be checked
against :attr:`SyntheticData.user_groups` and :attr:`SyntheticData.item_groups`.

Pure numpy and pandas (no Spark). Generation is vectorised and works on blocks
of users, so memory grows with the number of ratings, never with
``n_users * n_items``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from als_spark.errors import ConfigError

__all__ = ["SyntheticData", "generate", "generate_for_size", "write_movielens"]

MIN_RATINGS_PER_USER = 20

# First and last timestamps of MovieLens 100k (1997-09-20 .. 1998-04-22).
_T_START = 874_724_710
_T_END = 893_286_638
_ACTIVITY_SIGMA = 1.1  # lognormal sigma of the activity beyond 20 ratings
_POPULARITY_EXPONENT = 0.9  # item weight = popularity_rank ** -exponent
# P(rating = 1, 2, 3, 4, 5) for items inside / outside the user's taste group.
_IN_GROUP_PROBS = (0.01, 0.03, 0.11, 0.40, 0.45)
_OUT_GROUP_PROBS = (0.20, 0.35, 0.30, 0.12, 0.03)
_N_GENRES = 19
_RELEASE_DATE = "01-Jan-1995"
_BLOCK = 1 << 21  # ratings (or user x item keys) handled per block
_STREAM_ROUNDS = 3
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
    n_users = _check_int("n_users", n_users, 1, _INT32_MAX)
    n_items = _check_int("n_items", n_items, MIN_RATINGS_PER_USER, _INT32_MAX)
    n_ratings = _check_int(
        "n_ratings", n_ratings, MIN_RATINGS_PER_USER * n_users, n_users * n_items
    )
    n_groups = _check_int("n_groups", n_groups, 1, n_items)
    seed = _check_int("seed", seed, 0, None)
    if (
        isinstance(in_group_share, bool)
        or not isinstance(in_group_share, Real)
        or not 0.0 <= in_group_share <= 1.0
    ):
        raise ConfigError(f"in_group_share must be a number in [0, 1], got {in_group_share!r}")

    rng = np.random.default_rng(seed)
    user_group = rng.permutation(n_users) % n_groups
    item_group = rng.permutation(n_items) % n_groups
    weights = (rng.permutation(n_items) + 1.0) ** -_POPULARITY_EXPONENT
    counts = MIN_RATINGS_PER_USER + _apportion(
        n_ratings - MIN_RATINGS_PER_USER * n_users,
        rng.lognormal(0.0, _ACTIVITY_SIGMA, n_users),
        n_items - MIN_RATINGS_PER_USER,
    )
    group_size = np.bincount(item_group, minlength=n_groups)
    n_in = np.rint(counts * float(in_group_share)).astype(np.int64)
    np.minimum(n_in, group_size[user_group], out=n_in)

    own = _sample_distinct(rng, item_group, weights, user_group, n_in, np.empty(0, np.int64))
    no_pool = np.zeros(n_items, dtype=np.int64)
    rest = _sample_distinct(rng, no_pool, weights, np.zeros(n_users, np.int64), counts - n_in, own)
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
            "rating": _draw_ratings(rng, item_group[item] == user_group[user]),
            "timestamp": _draw_timestamps(rng, user, n_users),
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
    n_ratings = _check_int("n_ratings", n_ratings, MIN_RATINGS_PER_USER, None)
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


def _check_int(name: str, value: object, minimum: int, maximum: int | None) -> int:
    """Return ``value`` as an int, or raise ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return int(value)


def _apportion(total: int, weights: np.ndarray, cap: int) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights``, each at most ``cap``.

    Water-filling: the heaviest entries are capped and the rest scaled up so the
    shares sum to ``total``; the fractions are then rounded by largest remainder.
    Requires ``0 <= total <= weights.size * cap``.
    """
    if total == 0:
        return np.zeros(weights.size, dtype=np.int64)
    order = np.argsort(-weights, kind="stable")
    w = weights[order]
    tail = np.cumsum(w[::-1])[::-1]  # tail[k] = sum of w[k:]
    scale = (total - np.arange(w.size) * cap) / tail  # if the k heaviest are capped
    k = int(np.argmax(scale * w <= cap))  # fewest capped entries that fit
    share = np.minimum(scale[k] * w, cap)
    share[:k] = cap
    base = np.floor(share).astype(np.int64)
    short = total - int(base.sum())  # in [0, n) up to float error
    remainder = share - base
    if short > 0:
        remainder[base >= cap] = -1.0
        base[np.argsort(-remainder, kind="stable")[:short]] += 1
    elif short < 0:
        remainder[base <= 0] = 2.0
        base[np.argsort(remainder, kind="stable")[:-short]] -= 1
    counts = np.empty_like(base)
    counts[order] = base
    return counts


class _Pools(NamedTuple):
    """A partition of the catalogue into pools, sampled by item weight."""

    item_pool: np.ndarray  # pool of each item
    weights: np.ndarray  # sampling weight of each item
    order: np.ndarray  # items sorted by pool
    cum: np.ndarray  # pool p's cumulative weights over [p, p + 1], in ``order``
    end: np.ndarray  # end of each pool in ``order``
    size: np.ndarray  # number of items in each pool


def _sample_distinct(
    rng: np.random.Generator,
    item_pool: np.ndarray,
    weights: np.ndarray,
    user_pool: np.ndarray,
    need: np.ndarray,
    taken: np.ndarray,
) -> np.ndarray:
    """Draw ``need[u]`` new items per user, without replacement, by weight.

    The catalogue is partitioned into pools (``item_pool[i]`` is item ``i``'s
    pool) and user ``u`` draws from pool ``user_pool[u]``, skipping the pairs in
    ``taken``. Pairs are encoded as keys ``user * n_items + item``; ``taken`` must
    be sorted. Returns the new keys, sorted.
    """
    n_items = item_pool.size
    order = np.argsort(item_pool, kind="stable")
    pool_of = item_pool[order]
    n_pools = int(pool_of[-1]) + 1
    end = np.searchsorted(pool_of, np.arange(n_pools), side="right")
    # Pool p covers [p, p + 1) of the cumulative weights, in item order within the pool.
    w = weights[order]
    cum = np.cumsum(w)
    offset = np.concatenate([[0.0], cum[end[:-1] - 1]])
    cum = pool_of + (cum - offset[pool_of]) / (cum[end - 1] - offset)[pool_of]
    cum[end - 1] = np.arange(1, n_pools + 1)
    pools = _Pools(item_pool, weights, order, cum, end, np.diff(end, prepend=0))

    bounds = np.searchsorted(np.cumsum(need), np.arange(_BLOCK, int(need.sum()), _BLOCK))
    starts = np.unique(np.concatenate([[0], bounds + 1]))
    starts = starts[starts < need.size]
    out = []
    for lo, hi in zip(starts, np.append(starts[1:], need.size)):
        users = np.arange(lo, hi, dtype=np.int64)
        t_lo, t_hi = np.searchsorted(taken, [lo * n_items, hi * n_items])
        block_taken = taken[t_lo:t_hi]
        out.append(_sample_block(rng, pools, users, user_pool[lo:hi], need[lo:hi], block_taken))
    return np.concatenate(out) if out else np.empty(0, np.int64)  # blocks are in user order


def _sample_block(
    rng: np.random.Generator,
    pools: _Pools,
    users: np.ndarray,
    user_pool: np.ndarray,
    need: np.ndarray,
    taken: np.ndarray,
) -> np.ndarray:
    """:func:`_sample_distinct` for a contiguous block of users."""
    n_items = pools.order.size
    base = int(users[0]) * n_items
    remaining = need.astype(np.int64)
    # Users needing most of their pool go straight to the exact dense draw.
    stream = np.flatnonzero((remaining > 0) & (2 * remaining <= pools.size[user_pool]))
    picked: list[np.ndarray] = []
    factor = 1.5
    for _ in range(_STREAM_ROUNDS):
        if stream.size == 0:
            break
        # The distinct items of an i.i.d. weighted stream, in order of first
        # draw, are a weighted sample without replacement.
        draws = np.ceil(remaining[stream] * factor).astype(np.int64) + 4
        local = np.repeat(stream, draws)
        pool = user_pool[local]
        pos = np.searchsorted(pools.cum, pool + rng.random(local.size), side="right")
        np.minimum(pos, pools.end[pool] - 1, out=pos)
        key, draw = _first_draws(local * n_items + pools.order[pos])
        key += base
        new = np.ones(key.size, dtype=bool)
        for run in (taken, *picked):  # each sorted
            new &= ~_isin_sorted(key, run)
        key, draw = key[new], draw[new]
        # Keep each user's first `remaining` new pairs, in draw order.
        is_new = np.zeros(local.size, dtype=bool)
        is_new[draw] = True
        seen = np.cumsum(is_new)
        first = np.cumsum(draws) - draws
        before = np.zeros(remaining.size, dtype=np.int64)
        before[stream] = seen[first] - is_new[first]
        user = local[draw]
        keep = seen[draw] - before[user] <= remaining[user]
        picked.append(key[keep])
        remaining -= np.bincount(user[keep], minlength=remaining.size)
        stream = stream[remaining[stream] > 0]
        factor *= 2
    dense = np.flatnonzero(remaining > 0)
    if dense.size:
        excluded = np.sort(np.concatenate([taken, *picked]), kind="stable")
        picked.append(
            _sample_dense(rng, pools, users[dense], user_pool[dense], remaining[dense], excluded)
        )
    if not picked:
        return np.empty(0, np.int64)
    return np.sort(np.concatenate(picked), kind="stable")  # merges the sorted runs


def _first_draws(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``key`` values, sorted, with the index of their first occurrence."""
    shift = key.size.bit_length()
    if int(key.max()).bit_length() + shift <= 63:
        # One plain sort of (key, index) packed into an int64.
        packed = np.sort((key << shift) | np.arange(key.size))
        key, index = packed >> shift, packed & ((1 << shift) - 1)
    else:
        index = np.argsort(key, kind="stable")
        key = key[index]
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return key[first], index[first]


def _sample_dense(
    rng: np.random.Generator,
    pools: _Pools,
    users: np.ndarray,
    user_pool: np.ndarray,
    need: np.ndarray,
    excluded: np.ndarray,
) -> np.ndarray:
    """Exact weighted sampling without replacement by exponential races.

    Each user gets a key ``Exp(1) / weight`` per item of its pool (``inf``
    elsewhere and for ``excluded`` pairs) and takes its ``need`` smallest keys.
    Works on ``users x n_items`` blocks of at most ``_BLOCK`` keys.
    """
    n_items = pools.item_pool.size
    rows = max(1, _BLOCK // n_items)
    out = []
    for s in range(0, users.size, rows):
        u, k = users[s : s + rows], need[s : s + rows]
        w = np.where(pools.item_pool == user_pool[s : s + rows, None], pools.weights, 0.0)
        with np.errstate(divide="ignore"):
            race = rng.standard_exponential(w.shape) / w
        lo, hi = np.searchsorted(excluded, [u * n_items, (u + 1) * n_items])
        n_ex = hi - lo
        row = np.repeat(np.arange(u.size), n_ex)
        ex = excluded[np.arange(row.size) + np.repeat(lo - np.cumsum(n_ex) + n_ex, n_ex)]
        race[row, ex - u[row] * n_items] = np.inf
        ranked = np.argsort(race, axis=1)
        out.append((u[:, None] * n_items + ranked)[np.arange(n_items) < k[:, None]])
    return np.concatenate(out)


def _isin_sorted(values: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Element-wise membership of ``values`` in the sorted array ``sorted_values``."""
    if sorted_values.size == 0:
        return np.zeros(values.size, dtype=bool)
    idx = np.searchsorted(sorted_values, values)
    np.minimum(idx, sorted_values.size - 1, out=idx)
    return sorted_values[idx] == values


def _draw_ratings(rng: np.random.Generator, in_group: np.ndarray) -> np.ndarray:
    """Ratings 1..5: mostly 4-5 for in-group items, mostly 1-3 otherwise."""
    u = rng.random(in_group.size)
    rating = np.empty(in_group.size, dtype=np.int32)
    for mask, probs in ((in_group, _IN_GROUP_PROBS), (~in_group, _OUT_GROUP_PROBS)):
        cum = np.cumsum(probs)
        cum[-1] = 1.0
        rating[mask] = np.searchsorted(cum, u[mask], side="right") + 1
    return rating


def _draw_timestamps(rng: np.random.Generator, user: np.ndarray, n_users: int) -> np.ndarray:
    """Unix seconds in the MovieLens 100k period; each user rates within a window."""
    first = _T_START + np.floor(rng.random(n_users) * (_T_END - _T_START))
    length = np.floor((_T_END - first) * rng.random(n_users) ** 3)
    return (first[user] + np.floor(rng.random(user.size) * (length[user] + 1))).astype(np.int64)
