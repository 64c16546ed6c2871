"""Blocked top-k over two factor tables, without a row-level cross join.

Recommendations (users x items, scored by dot product) and nearest neighbours
(items x items or users x users, scored by cosine similarity) are the same
problem: for every *query* vector find the ``k`` best *candidate* vectors,
skipping some of them. The tutorial way, a cross join of every query row with
every candidate row followed by a window, shuffles n*m rows. Here the rows are
gathered into blocks of a few thousand vectors, only the blocks are cross
joined (a handful of rows), and each task multiplies a query block by a
candidate block with one matrix product (NumPy/BLAS, through Arrow), keeping
the k best per query with ``argpartition``. Work is n*m*rank/cores, memory per
task is bounded by the block sizes, and only n*k rows per candidate block ever
leave a task. This is what Spark's own ``recommendForAllUsers`` does
internally, plus what it lacks: per-query exclusion lists and cosine scores.

Ordering is exact and deterministic: score descending, then candidate id
ascending, so equal scores are broken by the smaller id.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from als_spark import schema as S

#: Query vectors per block. Each task scores one query block against one candidate block.
QUERY_BLOCK_SIZE = 4096
#: Candidate vectors per block.
CANDIDATE_BLOCK_SIZE = 16384
#: Query rows scored at once inside a task: bounds the score matrix to CHUNK x candidate block.
_CHUNK_ROWS = 256

#: Column names of :func:`top_k`'s input and output.
QUERY = "query"
CANDIDATE = "candidate"
EXCLUDE = "exclude"
_QBLOCK, _CBLOCK = "_qblock", "_cblock"
_QROWS, _CROWS = "_qrows", "_crows"

_OUT_SCHEMA = f"{QUERY} int, {CANDIDATE} int, {S.SCORE} float, {S.RANK} int"


def _unpack(rows: pa.ListScalar) -> tuple[np.ndarray, np.ndarray, pa.ListArray | None]:
    """(ids, feature matrix, exclude lists) of one block, sorted by id."""
    struct = rows.values
    ids = struct.field(S.ID).to_numpy(zero_copy_only=False)
    feats = struct.field(S.FEATURES)
    flat = feats.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    dim = flat.size // max(len(ids), 1)
    matrix = flat.reshape(len(ids), dim)
    exclude = struct.field(EXCLUDE) if struct.type.get_field_index(EXCLUDE) >= 0 else None
    return ids, matrix, exclude


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0  # a zero vector stays zero: cosine 0 with everything
    return (matrix / norms).astype(np.float32)


def _mask(scores: np.ndarray, row_of: np.ndarray, ids: np.ndarray, cand_ids: np.ndarray) -> None:
    """Set scores[row_of[i], column of ids[i]] to -inf where ids[i] is a candidate."""
    if ids.size == 0 or cand_ids.size == 0:
        return
    pos = np.searchsorted(cand_ids, ids)
    pos_clipped = np.minimum(pos, cand_ids.size - 1)
    hit = (pos < cand_ids.size) & (cand_ids[pos_clipped] == ids)
    scores[row_of[hit], pos_clipped[hit]] = -np.inf


_GROUP = 64  # columns per group in the threshold search of top_k_rows


def _kth_largest_lower_bound(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, a value with at least ``k`` entries >= it, close to the k-th largest.

    The k-th largest of the maxima of column groups: the k groups whose maxima
    reach it hold k distinct entries at least as large. A max-reduction plus a
    selection over a few hundred group maxima is several times cheaper than
    ``argpartition`` over the whole row, and few entries besides the true top k
    pass the bound.
    """
    n_rows, n_cols = scores.shape
    full = (n_cols // _GROUP) * _GROUP
    maxima = scores[:, :full].reshape(n_rows, full // _GROUP, _GROUP).max(axis=2)
    if full < n_cols:
        maxima = np.concatenate([maxima, scores[:, full:].max(axis=1, keepdims=True)], axis=1)
    n_groups = maxima.shape[1]
    return np.partition(maxima, n_groups - k, axis=1)[:, n_groups - k]


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k best finite entries of each row of ``scores``.

    Returns ``(row, column, position)`` arrays ordered by row, then score
    descending, then column ascending; ``position`` is 0-based within the row.
    Rows with fewer than k finite entries return what they have.
    """
    n_rows, n_cols = scores.shape
    if n_rows == 0 or n_cols == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    k = min(k, n_cols)
    if n_cols >= 4 * k * _GROUP:
        threshold = _kth_largest_lower_bound(scores, k)
    elif k < n_cols:
        threshold = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k]
    else:
        threshold = scores.min(axis=1)
    # Everything at or above the bound: k entries and a few more (ties, or the bound's slack).
    rows, cols = np.nonzero(scores >= threshold[:, None])
    values = scores[rows, cols]
    finite = np.isfinite(values)
    rows, cols, values = rows[finite], cols[finite], values[finite]
    order = np.lexsort((cols, -values, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    position = np.arange(rows.size) - starts[rows]
    keep = position < k
    return rows[keep], cols[keep], position[keep]


def _score_pairs(
    batches: Iterator[pa.RecordBatch], k: int, cosine: bool, exclude_self: bool
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        qcol, ccol = batch.column(_QROWS), batch.column(_CROWS)
        for i in range(batch.num_rows):
            q_ids, q_mat, q_excl = _unpack(qcol[i])
            c_ids, c_mat, _ = _unpack(ccol[i])
            if cosine:
                q_mat, c_mat = _normalize(q_mat), _normalize(c_mat)
            c_t = np.ascontiguousarray(c_mat.T)
            for start in range(0, q_ids.size, _CHUNK_ROWS):
                stop = min(start + _CHUNK_ROWS, q_ids.size)
                scores = q_mat[start:stop] @ c_t
                if exclude_self:
                    _mask(scores, np.arange(stop - start), q_ids[start:stop], c_ids)
                if q_excl is not None:
                    # offsets index the *unsliced* child array (.values); flatten() would start at
                    # this slice's first list, which is not offset 0 when a batch holds several blocks.
                    offsets = q_excl.offsets.to_numpy()
                    values = q_excl.values.to_numpy(zero_copy_only=False)
                    lo, hi = offsets[start], offsets[stop]
                    row_of = np.repeat(np.arange(stop - start), np.diff(offsets[start : stop + 1]))
                    _mask(scores, row_of, values[lo:hi], c_ids)
                rows, cols, position = top_k_rows(scores, k)
                score = scores[rows, cols]
                if cosine:
                    score = np.clip(score, -1.0, 1.0)
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array(q_ids[start:stop][rows], pa.int32()),
                        pa.array(c_ids[cols], pa.int32()),
                        pa.array(score, pa.float32()),
                        pa.array(position + 1, pa.int32()),
                    ],
                    names=[QUERY, CANDIDATE, S.SCORE, S.RANK],
                )


def _blocks(df: DataFrame, n_blocks: int, block_col: str, rows_col: str, fields: list[str]) -> DataFrame:
    # sort_array orders each block by id (the struct's first field): candidate ids
    # must be sorted for the exclusion lookup, and it makes block contents deterministic.
    return df.groupBy(F.pmod(F.xxhash64(S.ID), F.lit(n_blocks)).alias(block_col)).agg(
        F.sort_array(F.collect_list(F.struct(*fields))).alias(rows_col)
    )


def top_k(
    queries: DataFrame,
    candidates: DataFrame,
    k: int,
    *,
    cosine: bool = False,
    exclude_self: bool = False,
    n_queries: int | None = None,
    n_candidates: int | None = None,
    parallelism: int = 2,
) -> DataFrame:
    """For each query vector, the ``k`` best candidates.

    ``queries`` has columns ``id``, ``features`` and optionally ``exclude``
    (array of candidate ids never to return for that query); ``candidates`` has
    ``id`` and ``features``. The score is the dot product, or the cosine
    similarity when ``cosine`` is true; ``exclude_self`` drops the candidate
    whose id equals the query's. Returns ``query, rank, candidate, score`` with
    ranks 1..k (fewer where fewer candidates remain). Counts may be passed to
    save a Spark job each; ``parallelism`` is the minimum number of tasks.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_queries = queries.count() if n_queries is None else n_queries
    n_candidates = candidates.count() if n_candidates is None else n_candidates
    n_cblocks = max(1, math.ceil(n_candidates / CANDIDATE_BLOCK_SIZE))
    n_qblocks = max(1, math.ceil(n_queries / QUERY_BLOCK_SIZE), math.ceil(parallelism / n_cblocks))
    n_qblocks = min(n_qblocks, max(1, n_queries))

    q_fields = [S.ID, S.FEATURES] + ([EXCLUDE] if EXCLUDE in queries.columns else [])
    qblocks = _blocks(queries, n_qblocks, _QBLOCK, _QROWS, q_fields)
    cblocks = _blocks(candidates, n_cblocks, _CBLOCK, _CROWS, [S.ID, S.FEATURES])
    pairs = qblocks.crossJoin(cblocks).repartition(n_qblocks * n_cblocks)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _score_pairs(batches, k, cosine, exclude_self)

    scored = pairs.mapInArrow(score, _OUT_SCHEMA)
    if n_cblocks > 1:
        # Each candidate block gave its own top k: merge them into the global top k.
        order = Window.partitionBy(QUERY).orderBy(F.col(S.SCORE).desc(), F.col(CANDIDATE).asc())
        scored = scored.withColumn(S.RANK, F.row_number().over(order)).where(F.col(S.RANK) <= k)
    return scored.select(QUERY, S.RANK, CANDIDATE, S.SCORE)
