"""The samplers behind :mod:`als_spark.synthetic`: vectorised, block by block, deterministic for a seed."""

from __future__ import annotations

from numbers import Integral
from typing import NamedTuple

import numpy as np

from als_spark.errors import ConfigError

# First and last timestamps of MovieLens 100k (1997-09-20 .. 1998-04-22).
_T_START = 874_724_710
_T_END = 893_286_638
# P(rating = 1, 2, 3, 4, 5) for items inside / outside the user's taste group.
_IN_GROUP_PROBS = (0.01, 0.03, 0.11, 0.40, 0.45)
_OUT_GROUP_PROBS = (0.20, 0.35, 0.30, 0.12, 0.03)
_BLOCK = 1 << 21  # ratings (or user x item keys) handled per block
_STREAM_ROUNDS = 3


def check_int(name: str, value: object, minimum: int, maximum: int | None) -> int:
    """Return ``value`` as an int, or raise ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    number = int(value)  # numpy integers too
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return number


def apportion(total: int, weights: np.ndarray, cap: int) -> np.ndarray:
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


def sample_distinct(
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
    """:func:`sample_distinct` for a contiguous block of users."""
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
        picked.append(_sample_dense(rng, pools, users[dense], user_pool[dense], remaining[dense], excluded))
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


def draw_ratings(rng: np.random.Generator, in_group: np.ndarray) -> np.ndarray:
    """Ratings 1..5: mostly 4-5 for in-group items, mostly 1-3 otherwise."""
    u = rng.random(in_group.size)
    rating = np.empty(in_group.size, dtype=np.int32)
    for mask, probs in ((in_group, _IN_GROUP_PROBS), (~in_group, _OUT_GROUP_PROBS)):
        cum = np.cumsum(probs)
        cum[-1] = 1.0
        rating[mask] = np.searchsorted(cum, u[mask], side="right") + 1
    return rating


def draw_timestamps(rng: np.random.Generator, user: np.ndarray, n_users: int) -> np.ndarray:
    """Unix seconds in the MovieLens 100k period; each user rates within a window."""
    first = _T_START + np.floor(rng.random(n_users) * (_T_END - _T_START))
    length = np.floor((_T_END - first) * rng.random(n_users) ** 3)
    return (first[user] + np.floor(rng.random(user.size) * (length[user] + 1))).astype(np.int64)
