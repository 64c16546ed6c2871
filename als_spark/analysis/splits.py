"""Per-user hold-out splits: which interactions of each user are held out as the test set.

:func:`split_per_user_random` and :func:`split_per_user_chronological`
hold out part of every user's interactions as the test set. Both keep at least
one interaction of every user in train, so every evaluated user has factors.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from als_spark import schema as S
from als_spark.errors import ConfigError

SPLITS = ("random", "chronological")


def require_columns(df: DataFrame, *columns: str, purpose: str) -> None:
    """Raise :class:`ConfigError` naming the columns ``purpose`` needs that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{purpose} needs column(s) {', '.join(missing)}; the input has {', '.join(df.columns) or 'no columns'}"
        )


def check_fraction(test_fraction: float) -> None:
    """Raise :class:`ConfigError` unless ``0 < test_fraction < 1``."""
    if not (isinstance(test_fraction, (int, float)) and 0.0 < test_fraction < 1.0):
        raise ConfigError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")


#: Salts that keep the split's and the random baseline's draws independent for the same seed.
#: (Unsalted, the random baseline would rank by the very hash the split held items out by,
#: and never pick a test item: measured 0 hits on ML-100k.)
SPLIT_SALT, RANDOM_SALT = "split", "random_items"


def seeded_hash(salt: str, seed: int, user: Column, item: Column) -> Column:
    """``xxhash64(salt, seed, user, item)`` with the numbers as longs (independent of the id types)."""
    return F.xxhash64(F.lit(salt), F.lit(int(seed)).cast("long"), user.cast("long"), item.cast("long"))


IS_TEST = "_eval_is_test"


_POS, _N_TEST = "_eval_pos", "_eval_n_test"


def _label_first_n(df: DataFrame, order: list[Column], test_fraction: float) -> DataFrame:
    """``df`` plus the boolean ``_eval_is_test``: per user, the first ``n_test`` rows in ``order``."""
    by_user = Window.partitionBy(S.USER_ID)
    n_u = F.count(F.lit(1)).over(by_user)
    # HALF_UP rounding (Spark's round), capped so at least one row stays in train.
    n_test = F.least(F.round(F.lit(float(test_fraction)) * n_u).cast("long"), n_u - 1)
    labelled = df.withColumn(_N_TEST, n_test).withColumn(_POS, F.row_number().over(by_user.orderBy(*order)))
    return labelled.select(*df.columns, (F.col(_POS) <= F.col(_N_TEST)).alias(IS_TEST))


def train_test(labelled: DataFrame) -> tuple[DataFrame, DataFrame]:
    """``(train, test)`` of a labelled frame, without the label."""
    columns = [c for c in labelled.columns if c != IS_TEST]
    return labelled.where(~F.col(IS_TEST)).select(*columns), labelled.where(F.col(IS_TEST)).select(*columns)


def labelled_split(df: DataFrame, *, split: str, test_fraction: float = 0.25, seed: int = 42) -> DataFrame:
    """``df`` plus a boolean column ``_eval_is_test``: the split of :func:`split_per_user_random`
    (``split="random"``) or :func:`split_per_user_chronological` as one frame (cache it once, filter twice)."""
    if split == "random":
        require_columns(df, S.USER_ID, S.ITEM_ID, purpose="split_per_user_random")
        check_fraction(test_fraction)
        key = seeded_hash(SPLIT_SALT, seed, F.col(S.USER_ID), F.col(S.ITEM_ID))
        return _label_first_n(df, [key.asc(), F.col(S.ITEM_ID).asc()], test_fraction)
    if split == "chronological":
        require_columns(df, S.USER_ID, S.ITEM_ID, S.TIMESTAMP, purpose="split_per_user_chronological")
        check_fraction(test_fraction)
        order = [F.col(S.TIMESTAMP).desc_nulls_last(), F.col(S.ITEM_ID).desc()]
        return _label_first_n(df, order, test_fraction)
    raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def split_counts(labelled: DataFrame) -> tuple[int, int, int, int]:
    """``(train rows, test rows, test users, train items)`` of a :func:`labelled_split` frame, in one job."""
    is_test = F.col(IS_TEST)
    row = labelled.agg(
        F.count(F.when(~is_test, 1)),
        F.count(F.when(is_test, 1)),
        F.countDistinct(F.when(is_test, F.col(S.USER_ID))),
        F.countDistinct(F.when(~is_test, F.col(S.ITEM_ID))),
    ).first()
    assert row is not None  # a global aggregate has one row
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def split_per_user_random(df: DataFrame, *, test_fraction: float = 0.25, seed: int = 42) -> tuple[DataFrame, DataFrame]:
    """``(train, test)``: a seeded random share of each user's rows held out as test.

    A user with ``n`` rows gets ``min(round_half_up(test_fraction * n), n - 1)``
    test rows (``test_fraction * n`` in double precision): with 0.25, 1 row -> 0,
    2 -> 1 (0.5 rounds up), 3 -> 1, 4 -> 1, 6 -> 2 (1.5 rounds up), 10 -> 3. Every
    user keeps at least one train row. The rows held out are those with the
    smallest ``xxhash64('split', seed, user_id, item_id)`` (seed and ids as
    longs; ties by item_id), so the split depends only on the seed and the
    (user, item) pairs, not on partitioning or row order. ``df`` needs ``user_id`` and ``item_id``,
    one row per pair; all its columns are kept, in order.
    """
    return train_test(labelled_split(df, split="random", test_fraction=test_fraction, seed=seed))


def split_per_user_chronological(df: DataFrame, *, test_fraction: float = 0.25) -> tuple[DataFrame, DataFrame]:
    """``(train, test)``: each user's latest rows held out as test.

    The number of test rows per user follows :func:`split_per_user_random`. Rows
    are ordered by ``timestamp`` then ``item_id``; the last ones are the test
    rows (at equal timestamps the larger item id counts as later; a null
    timestamp counts as the earliest). Raises :class:`ConfigError` when ``df``
    has no ``timestamp`` column.
    """
    return train_test(labelled_split(df, split="chronological", test_fraction=test_fraction))
