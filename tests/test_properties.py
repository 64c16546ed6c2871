"""Property-based tests (hypothesis) of the top-k invariants on random small inputs.

For any factors and exclusion lists: no excluded item is recommended, no entity is
its own neighbour, ranks are 1..N without gaps, scores equal the true dot product /
cosine and are ordered, similarities lie in [-1, 1] and are symmetric, and every
id in an output exists in the input. Each example is one Spark job, so the number
of examples is kept small; the shapes still cover one and several blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from als_spark import topk
from als_spark.recommend import recommend
from als_spark.similarity import similar_items

FACTORS = "id int, features array<float>"
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def problems(draw):
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 8))
    rank = draw(st.integers(1, 4))
    user_ids = draw(st.lists(st.integers(-50, 10**6), min_size=n_users, max_size=n_users, unique=True))
    item_ids = draw(st.lists(st.integers(-50, 10**6), min_size=n_items, max_size=n_items, unique=True))
    # small integers make exact ties common, which is where ordering bugs hide
    values = st.integers(-3, 3).map(float)
    users = [draw(st.lists(values, min_size=rank, max_size=rank)) for _ in user_ids]
    items = [draw(st.lists(values, min_size=rank, max_size=rank)) for _ in item_ids]
    exclude = [draw(st.lists(st.sampled_from(item_ids + [10**7]), max_size=n_items + 1)) for _ in user_ids]
    k = draw(st.integers(1, n_items + 1))
    block = draw(st.sampled_from([(4096, 16384), (1, 2), (2, 3)]))
    return user_ids, users, item_ids, items, exclude, k, block


@SETTINGS
@given(problem=problems())
def test_recommendations_invariants(spark, monkeypatch, problem):
    user_ids, users, item_ids, items, exclude, k, (qb, cb) = problem
    monkeypatch.setattr(topk, "QUERY_BLOCK_SIZE", qb)
    monkeypatch.setattr(topk, "CANDIDATE_BLOCK_SIZE", cb)
    u = spark.createDataFrame(list(zip(user_ids, users)), FACTORS)
    i = spark.createDataFrame(list(zip(item_ids, items)), FACTORS)
    ex = spark.createDataFrame(list(zip(user_ids, exclude)), "user_id int, exclude array<int>")
    got = recommend(u, i, top_n=k, exclude=ex).collect()
    vectors = dict(zip(item_ids, np.array(items)))
    by_user: dict[int, list] = {}
    for row in got:
        by_user.setdefault(row.user_id, []).append(row)
    for uid, uvec, excl in zip(user_ids, np.array(users), exclude):
        allowed = [iid for iid in item_ids if iid not in set(excl)]
        rows = sorted(by_user.get(uid, []), key=lambda r: r.rank)
        assert [r.rank for r in rows] == list(range(1, min(k, len(allowed)) + 1))  # 1..N, no gaps
        assert all(r.item_id in allowed for r in rows)  # never excluded, always a real item
        expected = sorted(allowed, key=lambda iid: (-float(uvec @ vectors[iid]), iid))[:k]
        assert [r.item_id for r in rows] == expected  # exact order, ties to the smaller id
        assert [r.score for r in rows] == pytest.approx([float(uvec @ vectors[iid]) for iid in expected], abs=1e-5)
    assert set(by_user) <= set(user_ids)


@SETTINGS
@given(problem=problems())
def test_similarity_invariants(spark, monkeypatch, problem):
    _, _, item_ids, items, _, _, (qb, cb) = problem
    monkeypatch.setattr(topk, "QUERY_BLOCK_SIZE", qb)
    monkeypatch.setattr(topk, "CANDIDATE_BLOCK_SIZE", cb)
    n = len(item_ids)
    got = similar_items(spark.createDataFrame(list(zip(item_ids, items)), FACTORS), top_k=max(1, n - 1)).collect()
    sim = {(r.item_id, r.similar_item_id): r.similarity for r in got}
    assert all(a != b for a, b in sim)  # never its own neighbour
    assert all(a in item_ids and b in item_ids for a, b in sim)
    assert all(-1.0 <= s <= 1.0 for s in sim.values())
    assert len(sim) == n * (n - 1)  # top_k = n - 1: every other item, once
    for (a, b), s in sim.items():
        assert sim[(b, a)] == pytest.approx(s, abs=1e-6)  # symmetric
    ranks: dict[int, list[int]] = {}
    for r in got:
        ranks.setdefault(r.item_id, []).append(r.rank)
    assert all(sorted(v) == list(range(1, n)) for v in ranks.values())
