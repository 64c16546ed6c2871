"""How much two ranked lists agree, and whether two configurations agree less than seeds do.

**List agreement.** Both measures take two ranked lists of ids without repeats
(best first) and return a number in [0, 1], 1 for identical lists:

* :func:`jaccard_at_k`: ``|A ∩ B| / |A ∪ B|`` of the first ``k`` entries of
  each list. Order inside the top k does not matter. Two empty lists agree (1).
* :func:`rank_biased_overlap`: *extrapolated* rank-biased overlap, RBO_ext
  (Webber, Moffat & Zobel 2010, "A similarity measure for indefinite rankings",
  eq. 32, the form for lists of different lengths). With ``X_d`` the overlap of
  the two prefixes of depth ``d`` (the shorter list, length ``s``, contributes
  at most its ``s`` entries) and ``l`` the longer length::

      RBO_ext = (1-p)/p * [ sum_{d=1..l} X_d/d p^d + sum_{d=s+1..l} X_s (d-s)/(s d) p^d ]
                + [ (X_l - X_s)/l + X_s/s ] p^l

  Agreement at the top weighs more. The extrapolated form assumes the
  agreement seen at depth ``l`` continues below it, so identical lists score
  exactly 1 at any length, disjoint lists 0, and a list that is a prefix of
  the other 1. Ties must be broken before the lists are built (the top-k
  tables order equal scores by the smaller id).

The same two measures exist as Spark column expressions (:func:`jaccard_col`,
:func:`rbo_col`), built from SQL higher-order functions so they run inside the
JVM on classic and Spark Connect sessions alike, with no Python worker; the
tests check them against the Python reference functions.

**Is agreement lower between two configurations than within each?** The
per-entity agreements are not independent samples: every entity's lists come
from the same few fits, so a fit that happens to land near another raises the
agreement of almost every entity at once (rank-2 ALS on four planted taste
groups has several optima, and two of its fits agree on nearly every user or
on nearly none). A test that counts entities as the sample, such as a paired
Wilcoxon test over users, then finds "significant" differences between two
sets of seeds of the *same* configuration. The unit that carries the seed
noise is the fit, so the test is over fits: :func:`run_label_permutation`, an
exact permutation test of the configuration labels of the fits, valid whatever
the dependence between entities. Its price is a coarse p-value: with ``s``
seeds per configuration there are ``C(2s, s)`` ways to label the fits, and the
smallest p-value is ``2 / C(2s, s)``: 0.1 with 3 seeds, 0.029 with 4, 0.008
with 5. :func:`dominance` is the entity-level effect size reported with it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F

#: Default persistence of rank-biased overlap.
DEFAULT_RBO_P = 0.9
#: Default significance level of a verdict (see :func:`significant`).
DEFAULT_ALPHA = 0.05


# --- list agreement: reference implementations ---------------------------------------


def _check_p(p: float) -> float:
    if not (isinstance(p, (int, float)) and 0.0 < p < 1.0):
        raise ValueError(f"rank-biased overlap needs 0 < p < 1, got {p!r}")
    return float(p)


def jaccard_at_k(a: Sequence[Any], b: Sequence[Any], k: int | None = None) -> float:
    """``|A ∩ B| / |A ∪ B|`` of the first ``k`` entries of ``a`` and ``b`` (all entries when ``k`` is None).

    In [0, 1]; two empty lists agree (1.0).
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sa, sb = set(list(a)[:k]), set(list(b)[:k])
    union = sa | sb
    return 1.0 if not union else len(sa & sb) / len(union)


def rank_biased_overlap(a: Sequence[Any], b: Sequence[Any], p: float = DEFAULT_RBO_P) -> float:
    """Extrapolated rank-biased overlap of two ranked lists without repeats (module docstring).

    In [0, 1]: 1 for identical lists or when one is a prefix of the other, 0
    for disjoint lists; two empty lists agree (1.0), an empty and a non-empty
    list do not (0.0).
    """
    p = _check_p(p)
    short, long_ = (list(a), list(b)) if len(a) <= len(b) else (list(b), list(a))
    s, l = len(short), len(long_)  # noqa: E741 - s and l as in Webber et al.
    if l == 0:
        return 1.0
    if s == 0:
        return 0.0
    x = [0] * (l + 1)
    for d in range(1, l + 1):
        x[d] = len(set(short[: min(d, s)]) & set(long_[:d]))
    term1 = sum(x[d] / d * p**d for d in range(1, l + 1))
    term2 = sum(x[s] * (d - s) / (s * d) * p**d for d in range(s + 1, l + 1))
    return (1 - p) / p * (term1 + term2) + ((x[l] - x[s]) / l + x[s] / s) * p**l


# --- the same as Spark column expressions -----------------------------------------------


def jaccard_col(a: Column, b: Column) -> Column:
    """:func:`jaccard_at_k` of two ``array<int>`` columns (whole arrays; slice them for a k)."""
    inter = F.size(F.array_intersect(a, b))
    union = F.size(F.array_union(a, b))
    return F.when(union == 0, F.lit(1.0)).otherwise(inter / union)


def rbo_col(a: Column, b: Column, p: float = DEFAULT_RBO_P) -> Column:
    """:func:`rank_biased_overlap` of two ``array<int>`` columns, with SQL higher-order functions."""
    p = _check_p(p)
    short = F.when(F.size(a) <= F.size(b), a).otherwise(b)
    long_ = F.when(F.size(a) <= F.size(b), b).otherwise(a)
    s, l = F.least(F.size(a), F.size(b)), F.greatest(F.size(a), F.size(b))  # noqa: E741 - as in Webber et al.
    pp = F.lit(p)

    def overlap(d: Column) -> Column:
        return F.size(F.array_intersect(F.slice(short, 1, F.least(d, s)), F.slice(long_, 1, d)))

    term1 = F.aggregate(F.sequence(F.lit(1), l), F.lit(0.0), lambda acc, d: acc + overlap(d) / d * F.pow(pp, d))
    xs, xl = overlap(s), overlap(l)
    term2 = F.when(
        l > s,
        F.aggregate(F.sequence(s + 1, l), F.lit(0.0), lambda acc, d: acc + xs * (d - s) / (s * d) * F.pow(pp, d)),
    ).otherwise(F.lit(0.0))
    value = F.lit((1 - p) / p) * (term1 + term2) + ((xl - xs) / l + xs / s) * F.pow(pp, l)
    return F.when(l == 0, F.lit(1.0)).when(s == 0, F.lit(0.0)).otherwise(value)


# --- within against between ----------------------------------------------------------------


@dataclass(frozen=True)
class PermutationTest:
    """Fit-level permutation test over the configuration labels of the fits (:func:`run_label_permutation`)."""

    within_a: float  #: mean agreement of the pairs of A's fits
    within_b: float  #: mean agreement of the pairs of B's fits
    between: float  #: mean agreement of the A-B pairs
    statistic: float  #: min(within_a, within_b) - between
    p_value: float
    labelings: int  #: ways of splitting the fits enumerated (the observed one included)
    smallest_p: float  #: the smallest p-value this design can give

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _means(pair_values: Mapping[tuple[int, int], float], first: frozenset[int]) -> tuple[float, float, float]:
    groups: tuple[list[float], list[float], list[float]] = ([], [], [])
    for (x, y), v in pair_values.items():
        groups[0 if x in first and y in first else 1 if x not in first and y not in first else 2].append(v)
    return tuple(float(np.mean(g)) if g else math.nan for g in groups)  # type: ignore[return-value]


def run_label_permutation(
    pair_values: Mapping[tuple[int, int], float], runs_a: Sequence[int], runs_b: Sequence[int]
) -> PermutationTest:
    """Exact test that the A-B pairs of fits agree less than the pairs within A and within B.

    ``pair_values`` maps every pair of fits ``(x, y)`` (``x < y``) to their
    agreement averaged over entities. The statistic is ``min(within A, within
    B) - between`` (means over pairs): positive when switching configuration
    moves the lists more than switching the seed moves either configuration's.
    The p-value is the share of all ways to split the fits into groups of
    ``len(runs_a)`` and ``len(runs_b)`` whose statistic is at least the
    observed one: exact, and valid whatever the dependence between entities,
    when under the null hypothesis all fits are exchangeable (each fit of A
    could as well have been a fit of B, as when the configurations differ only
    in their seeds). With equal group sizes a split and its mirror image give
    the same statistic, so the smallest attainable p-value is ``2 / C(n, s)``.
    Needs at least 2 fits a side.
    """
    a, b = frozenset(runs_a), frozenset(runs_b)
    if len(a) < 2 or len(b) < 2 or a & b:
        raise ValueError("run_label_permutation needs two disjoint groups of at least 2 fits each")
    runs = sorted(a | b)
    missing = [pair for pair in itertools.combinations(runs, 2) if pair not in pair_values]
    if missing:
        raise ValueError(f"pair_values lacks the pairs {missing}")

    def statistic(first: frozenset[int]) -> float:
        w1, w2, between = _means(pair_values, first)
        return min(w1, w2) - between

    within_a, within_b, between = _means(pair_values, a)
    observed = statistic(a)
    values = np.asarray([statistic(frozenset(chosen)) for chosen in itertools.combinations(runs, len(a))])
    # Rounded so that splits equal up to floating point error count as ties (they are, e.g. the mirror image).
    p_value = float(np.mean(np.round(values, 12) >= round(observed, 12)))
    smallest = (2 if len(a) == len(b) else 1) / len(values)
    return PermutationTest(within_a, within_b, between, observed, p_value, len(values), smallest)


def significant(test: PermutationTest, *, alpha: float = DEFAULT_ALPHA) -> bool:
    """Whether ``test`` shows lower agreement between than within: ``statistic > 0`` and ``p <= max(alpha, smallest p)``.

    With 3 seeds a configuration the smallest attainable p-value is 0.1, so the
    observed split must then be the most extreme one: the chance that two sets
    of seeds of one configuration pass is at most 0.1 (at most ``alpha`` from 4
    seeds on). The report states the level in force.
    """
    return test.statistic > 0 and test.p_value <= level(test, alpha=alpha) + 1e-12


def level(test: PermutationTest, *, alpha: float = DEFAULT_ALPHA) -> float:
    """The significance level in force: ``alpha``, or the smallest attainable p-value when that is larger."""
    return max(alpha, test.smallest_p)


def dominance(within: Sequence[float] | np.ndarray, between: Sequence[float] | np.ndarray) -> float:
    """``(#{within > between} - #{within < between}) / n`` over the entities with both values (paired; in [-1, 1]).

    The entity-level effect size: the share of entities whose lists agree more
    within a configuration than across the two, minus the opposite share
    (entities with equal values count as neither). ``nan`` without entities.
    """
    w, b = np.asarray(within, dtype=float), np.asarray(between, dtype=float)
    keep = ~(np.isnan(w) | np.isnan(b))
    d = np.round(w[keep] - b[keep], 12)
    return float((np.sum(d > 0) - np.sum(d < 0)) / d.size) if d.size else math.nan
