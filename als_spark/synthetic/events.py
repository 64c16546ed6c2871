"""An event log derived from ratings: ``view``, ``cart`` and ``purchase`` rows, several per pair.

The rule, per rating (one extra ``view`` with probability 1/2 for ratings 3-5;
with :data:`EVENT_WEIGHTS` ``view`` 1, ``cart`` 3, ``purchase`` 5):

====== ====== ===== ========== ===== ===== ===== =====
rating views  carts purchases  rows  sum   max   count
====== ====== ===== ========== ===== ===== ===== =====
1      1      0     0          1     1     1     1
2      2      0     0          2     2     1     2
3      1-2    1     0          2-3   4-5   3     2-3
4      3-4    1     0          4-5   6-7   3     4-5
5      1-2    1     1          3-4   9-10  5     3-4
====== ====== ===== ========== ===== ===== ===== =====

So ``sum`` is strictly increasing in the rating (the ranges do not overlap),
``max`` and ``latest`` (the weight of the last event) are non-decreasing
(1, 1, 3, 3, 5), and ``count`` is not monotone (a 4 has more rows than a 5).

Within a pair the rows come in funnel order (the views, then the cart, then
the purchase) with strictly increasing timestamps: the last row is at the
rating's timestamp and each earlier one 1 to :data:`MAX_GAP_SECONDS` seconds
(uniform) before the next. Rows are sorted like the ratings, then by time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from als_spark.errors import ConfigError
from als_spark.synthetic.sampling import check_int

__all__ = [
    "EVENT_TYPES",
    "EVENT_WEIGHTS",
    "MAX_GAP_SECONDS",
    "events_from_ratings",
    "events_per_rating",
    "expand_events",
]

#: Event types in funnel order; ``event`` holds these strings.
EVENT_TYPES = ("view", "cart", "purchase")
#: The weights the rule is designed for: with them ``sum`` and ``max`` rank pairs as the ratings do.
EVENT_WEIGHTS = {"view": 1.0, "cart": 3.0, "purchase": 5.0}
#: Largest gap, in seconds, between consecutive events of a pair.
MAX_GAP_SECONDS = 3600

_EVENT_SALT = 0x6576656E74  # "event": the event draws' stream, apart from the generator's
_BLOCK = 1 << 21  # ratings expanded at a time
# Per rating 1..5: views before the extra one, whether the extra one applies, carts, purchases.
_BASE_VIEWS = np.array([1, 2, 1, 3, 1], dtype=np.int64)
_EXTRA_VIEW = np.array([0, 0, 1, 1, 1], dtype=np.int64)
_CARTS = np.array([0, 0, 1, 1, 1], dtype=np.int64)
_PURCHASES = np.array([0, 0, 0, 0, 1], dtype=np.int64)
_EVENT_NAMES = np.array(EVENT_TYPES, dtype=object)


def events_from_ratings(ratings: pd.DataFrame, *, seed: int = 42) -> pd.DataFrame:
    """The event log of ``ratings`` by the rule of this module, deterministic for ``seed``.

    Draws one extra-view coin per rating and one gap per event from
    :func:`numpy.random.default_rng` seeded with ``seed`` (a stream apart from
    :func:`~als_spark.synthetic.generate`'s), then calls :func:`expand_events`.

    Parameters
    ----------
    ratings : :class:`pandas.DataFrame`
        ``user_id``, ``item_id``, ``rating`` (integers 1..5) and ``timestamp``
        (int, unix seconds), e.g. :attr:`SyntheticData.ratings <als_spark.synthetic.SyntheticData.ratings>`.
    seed : int, optional
        Default 42.

    Returns
    -------
    :class:`pandas.DataFrame`
        ``user_id``, ``item_id`` (as in ``ratings``), ``event`` (str) and ``timestamp`` (int64).
    """
    seed = check_int("seed", seed, 0, None)
    rating = _rating_index(ratings)
    rng = np.random.default_rng(np.random.SeedSequence([_EVENT_SALT, seed]))
    extra = rng.integers(0, 2, size=rating.size, dtype=np.int8)
    total = int(_rows(rating, extra).sum())
    gaps = rng.integers(1, MAX_GAP_SECONDS + 1, size=total, dtype=np.int16)
    return expand_events(ratings, extra, gaps)


def events_per_rating(rating: np.ndarray, extra_views: np.ndarray) -> np.ndarray:
    """Rows each rating (1..5) becomes, given its extra-view flag (0 or 1; ignored for 1-2)."""
    return _rows(_rating_index(pd.DataFrame({"rating": np.asarray(rating)})), np.asarray(extra_views))


def expand_events(
    ratings: pd.DataFrame, extra_views: np.ndarray, gaps: np.ndarray, *, block: int = _BLOCK
) -> pd.DataFrame:
    """The rule of this module with its random draws given: the pure part of :func:`events_from_ratings`.

    Parameters
    ----------
    ratings : :class:`pandas.DataFrame`
        As for :func:`events_from_ratings`.
    extra_views : array of int
        One 0/1 flag per rating: one more view (used for ratings 3-5 only).
    gaps : array of int
        One positive integer per output row (``events_per_rating(...).sum()``
        of them): seconds from that row to the next row of its pair; the last
        row's is ignored.
    block : int, optional
        Ratings expanded at a time. Bounds the temporary memory; the result does not depend on it.

    Returns
    -------
    :class:`pandas.DataFrame`
        As :func:`events_from_ratings`.
    """
    block = check_int("block", block, 1, None)
    rating = _rating_index(ratings)
    extra = np.asarray(extra_views)
    if extra.shape != rating.shape or not np.isin(extra, (0, 1)).all():
        raise ConfigError(f"extra_views must hold one 0 or 1 per rating ({rating.size}), got shape {extra.shape}")
    rows = _rows(rating, extra)
    end = np.cumsum(rows)
    total = int(end[-1]) if end.size else 0
    gap = np.asarray(gaps)
    if gap.shape != (total,) or (total and (gap.dtype.kind not in "iu" or gap.min() < 1)):
        raise ConfigError(f"gaps must hold one positive integer per event ({total}), got shape {gap.shape}")
    user, item = ratings["user_id"].to_numpy(), ratings["item_id"].to_numpy()
    stamp = ratings["timestamp"].to_numpy(np.int64)
    out_user, out_item = np.empty(total, user.dtype), np.empty(total, item.dtype)
    code, out_stamp = np.empty(total, np.int8), np.empty(total, np.int64)
    for lo in range(0, rating.size, block):
        hi = min(lo + block, rating.size)
        start, stop = int(end[lo] - rows[lo]), int(end[hi - 1])
        r, n = rating[lo:hi], rows[lo:hi]
        pair = np.repeat(np.arange(hi - lo), n)
        first = np.cumsum(n) - n  # first row of each pair, within the block
        step = np.arange(stop - start) - first[pair]  # 0-based position within the pair
        views = _BASE_VIEWS[r] + _EXTRA_VIEW[r] * extra[lo:hi]
        code[start:stop] = (step >= views[pair]).astype(np.int8) + (step >= (views + _CARTS[r])[pair])
        # A row's timestamp: the rating's, minus the gaps from it up to the pair's last row
        # (after[row] - after[last]: the last row's own gap cancels out).
        after = np.cumsum(gap[start:stop][::-1], dtype=np.int64)[::-1]  # gaps from each row to the block's end
        out_stamp[start:stop] = stamp[lo:hi][pair] - (after - after[(first + n - 1)[pair]])
        out_user[start:stop], out_item[start:stop] = user[lo:hi][pair], item[lo:hi][pair]
    return pd.DataFrame(
        {"user_id": out_user, "item_id": out_item, "event": _EVENT_NAMES[code], "timestamp": out_stamp}, copy=False
    )


def _rating_index(ratings: pd.DataFrame) -> np.ndarray:
    """``rating - 1`` as int64, or ConfigError if a rating is not an integer 1..5."""
    rating = ratings["rating"].to_numpy()
    if rating.size and (rating.dtype.kind not in "iu" or rating.min() < 1 or rating.max() > 5):
        raise ConfigError("events need integer ratings 1..5, as the synthetic generator makes")
    return rating.astype(np.int64) - 1


def _rows(rating: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Rows per rating, from ``rating - 1`` and the extra-view flags."""
    return _BASE_VIEWS[rating] + _EXTRA_VIEW[rating] * extra + _CARTS[rating] + _PURCHASES[rating]
