"""User vectors solved from a fitted model's item factors (fold-in), and why an item was recommended.

Spark's implicit ALS (``ALS.computeFactors``) gives a user ``u`` who interacted with items
``j`` (rating ``r_j > 0``, read as float32) the vector ``x`` solving

    (YᵀY + Σ_j c_j y_j y_jᵀ + λ·n_u·I) x = Σ_j (1 + c_j) y_j,      c_j = alpha·r_j,

where ``Y`` holds every item's factors, ``n_u`` counts the user's interactions and ``λ`` is
``reg_param`` (ALS-WR). Its last step of every iteration solves this with the final item
factors, so folding a training user's own interactions in gives back their fitted vector (to
float rounding), and a new user gets the vector the next fit would start from. The system is
solved per user, in float64, on the executors: users are grouped (one row each, their items
sorted) and each Arrow batch of users is solved with NumPy. ``YᵀY`` is summed once over the
item factors and shipped with the task.

The same equations explain a score (implicit's ``explain``): with ``A`` the matrix above,
``y_i·x = Σ_j (1 + c_j) · y_iᵀ A⁻¹ y_j``, so liked item ``j`` contributes
``(1 + c_j) · y_iᵀ A⁻¹ y_j`` to item ``i``'s score, and the contributions add up to it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from als_spark import schema as S

_ROWS, _RECS = "_rows", "_recs"
#: Users whose equations are stacked and solved at once inside a task.
_SOLVE_CHUNK = 512


def _matrix(features: pa.Array) -> np.ndarray:
    """A list<float> Arrow array of equal-length vectors as an (n, rank) float64 matrix."""
    flat = features.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    n = len(features)
    return flat.reshape(n, flat.size // n if n else 0)


def gram(item_factors: DataFrame) -> np.ndarray:
    """``YᵀY`` (float64, rank x rank) over ``item_factors`` (``id, features``), summed on the executors."""

    def partial(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        total = None
        for batch in batches:
            y = _matrix(batch.column(S.FEATURES))
            if y.size:
                total = y.T @ y if total is None else total + y.T @ y
        if total is not None:
            yield pa.RecordBatch.from_arrays([pa.array([total.ravel()], pa.list_(pa.float64()))], names=["g"])

    parts = item_factors.select(S.FEATURES).mapInArrow(partial, "g array<double>").collect()
    if not parts:
        raise ValueError("the model has no item factors")
    summed = np.sum([np.asarray(row["g"], dtype=np.float64) for row in parts], axis=0)
    rank = int(round(np.sqrt(summed.size)))
    return summed.reshape(rank, rank)


def _grouped(interactions: DataFrame, item_factors: DataFrame) -> DataFrame:
    """``user_id, _rows``: each user's (item_id, confidence, features), sorted by item, for items with factors.

    Rows with a confidence <= 0 are left out, as Spark's ALS leaves them out.
    """
    factors = item_factors.select(F.col(S.ID).alias(S.ITEM_ID), S.FEATURES)
    rows = interactions.where(F.col(S.CONFIDENCE) > 0).join(factors, S.ITEM_ID)
    row = F.struct(S.ITEM_ID, F.col(S.CONFIDENCE).cast("float").alias(S.CONFIDENCE), S.FEATURES)
    return rows.groupBy(S.USER_ID).agg(F.sort_array(F.collect_list(row)).alias(_ROWS))


def _equations(
    rows: pa.ListArray, yty: np.ndarray, alpha: float, reg_param: float
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per user of ``rows``: ``A`` (users x rank x rank), ``b`` (users x rank), and their items, ``1 + c`` and ``Y``."""
    offsets = rows.offsets.to_numpy()
    struct = rows.values
    items = struct.field(S.ITEM_ID).to_numpy(zero_copy_only=False)
    # Spark reads a rating as float32 and multiplies by alpha in double.
    c1 = alpha * struct.field(S.CONFIDENCE).to_numpy(zero_copy_only=False).astype(np.float32).astype(np.float64)
    y = _matrix(struct.field(S.FEATURES))
    n_users, rank = len(rows), yty.shape[0]
    a = np.empty((n_users, rank, rank))
    b = np.empty((n_users, rank))
    user_items, weights, vectors = [], [], []
    eye = np.eye(rank)
    for u in range(n_users):
        lo, hi = offsets[rows.offset + u], offsets[rows.offset + u + 1]
        y_u, c_u = y[lo:hi], c1[lo:hi]
        a[u] = yty + (y_u.T * c_u) @ y_u + (reg_param * (hi - lo)) * eye
        b[u] = y_u.T @ (1.0 + c_u)
        user_items.append(items[lo:hi])
        weights.append(1.0 + c_u)
        vectors.append(y_u)
    return a, b, user_items, weights, vectors


def fold_in(
    interactions: DataFrame, item_factors: DataFrame, *, alpha: float, reg_param: float, yty: np.ndarray | None = None
) -> DataFrame:
    """``id, features``: a vector for every user of ``interactions`` with at least one item that has factors.

    ``interactions`` is ``user_id, item_id, confidence`` (ALS indexes); ``item_factors`` is
    ``id, features``; ``alpha`` and ``reg_param`` must be the fit's. ``yty`` (:func:`gram`) may be
    passed to save a job. Items without factors are ignored; a user left with none gets no row.
    """
    yty = gram(item_factors) if yty is None else yty

    def solve(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            users = batch.column(S.USER_ID)
            rows = batch.column(_ROWS)
            for start in range(0, batch.num_rows, _SOLVE_CHUNK):
                chunk = rows.slice(start, _SOLVE_CHUNK)
                a, b, *_ = _equations(chunk, yty, alpha, reg_param)
                x = np.linalg.solve(a, b[:, :, None])[:, :, 0].astype(np.float32)
                rank = x.shape[1]
                offsets = pa.array(np.arange(0, x.size + 1, rank, dtype=np.int32))
                yield pa.RecordBatch.from_arrays(
                    [users.slice(start, len(chunk)), pa.ListArray.from_arrays(offsets, pa.array(x.ravel()))],
                    names=[S.ID, S.FEATURES],
                )

    grouped = _grouped(interactions, item_factors)
    return grouped.mapInArrow(solve, f"{S.ID} int, {S.FEATURES} array<float>")


def explain(
    interactions: DataFrame,
    recommendations: DataFrame,
    item_factors: DataFrame,
    *,
    alpha: float,
    reg_param: float,
    top: int,
    yty: np.ndarray | None = None,
) -> DataFrame:
    """``user_id, rank, item_id, because_item_id, contribution, share``: why each item was recommended.

    For each row of ``recommendations`` (``user_id, rank, item_id``, ALS indexes), the ``top``
    items of the user's ``interactions`` that add most to its ALS score (ties: the smaller item
    id), each with its contribution and its share of the score (contribution / score: the
    contributions of all the user's items add up to ``y_i·x``, so shares add up to 1; a share
    is negative where an item pulls the score down). Only the dot product is explained: a
    popularity prior added to the score is not in it.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    yty = gram(item_factors) if yty is None else yty
    factors = item_factors.select(F.col(S.ID).alias(S.ITEM_ID), S.FEATURES)
    rec = F.struct(S.RANK, S.ITEM_ID, S.FEATURES)
    recs = (
        recommendations.select(S.USER_ID, S.RANK, S.ITEM_ID)
        .join(factors, S.ITEM_ID)
        .groupBy(S.USER_ID)
        .agg(F.sort_array(F.collect_list(rec)).alias(_RECS))
    )
    grouped = _grouped(interactions, item_factors).join(recs, S.USER_ID)

    def contributions(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            users = batch.column(S.USER_ID).to_numpy(zero_copy_only=False)
            a, b, user_items, weights, vectors = _equations(batch.column(_ROWS), yty, alpha, reg_param)
            recs_col = batch.column(_RECS)
            rec_offsets = recs_col.offsets.to_numpy()
            ranks = recs_col.values.field(S.RANK).to_numpy(zero_copy_only=False)
            rec_items = recs_col.values.field(S.ITEM_ID).to_numpy(zero_copy_only=False)
            rec_y = _matrix(recs_col.values.field(S.FEATURES))
            out: dict[str, list[np.ndarray]] = {k: [] for k in ("u", "r", "i", "j", "c", "s")}
            for u in range(len(users)):
                lo, hi = rec_offsets[recs_col.offset + u], rec_offsets[recs_col.offset + u + 1]
                w = np.linalg.solve(a[u], rec_y[lo:hi].T)  # rank x recs: A⁻¹ y_i
                contrib = (vectors[u] @ w) * weights[u][:, None]  # liked x recs
                score = contrib.sum(axis=0)
                n = min(top, contrib.shape[0])
                # best first; equal contributions go to the smaller item id (items are sorted)
                order = np.argsort(-contrib, axis=0, kind="stable")[:n]  # n x recs
                picked = np.take_along_axis(contrib, order, axis=0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    share = np.where(score != 0, picked / score, 0.0)
                n_recs = hi - lo
                out["u"].append(np.full(n * n_recs, users[u]))
                out["r"].append(np.repeat(ranks[lo:hi], n))
                out["i"].append(np.repeat(rec_items[lo:hi], n))
                out["j"].append(user_items[u][order.T.ravel()])
                out["c"].append(picked.T.ravel())
                out["s"].append(share.T.ravel())
            if out["u"]:
                types = [pa.int32()] * 4 + [pa.float32()] * 2
                columns = [pa.array(np.concatenate(out[key]), t) for key, t in zip("urijcs", types)]
                yield pa.RecordBatch.from_arrays(columns, names=S.EXPLANATIONS.names)

    return grouped.mapInArrow(contributions, S.EXPLANATIONS)
