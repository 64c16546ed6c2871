"""Baselines that return the model's ``user_id, rank, item_id, score`` shape, and what lists leave out.

:func:`most_popular` and :func:`random_items` are scored beside ALS by
:func:`~als_spark.analysis.evaluate.run_evaluate`; :func:`rated_exclusions` is
what ``recommend.exclude: rated`` hides at the split's point in time.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from als_spark import feedback
from als_spark import schema as S
from als_spark.analysis.metrics import check_k
from als_spark.analysis.splits import RANDOM_SALT, seeded_hash

BASELINES = ("popularity", "random")


EXCLUDE = "exclude"


def _users_with_exclusions(users: DataFrame, exclude: DataFrame | None) -> DataFrame:
    """``user_id, exclude`` for every distinct user (an empty array when nothing is excluded)."""
    distinct = users.select(S.USER_ID).distinct()
    empty = F.array().cast("array<int>")
    if exclude is None:
        return distinct.withColumn(EXCLUDE, empty)
    return distinct.join(exclude.select(S.USER_ID, EXCLUDE), S.USER_ID, "left").select(
        S.USER_ID, F.coalesce(F.col(EXCLUDE).cast("array<int>"), empty).alias(EXCLUDE)
    )


def _explode_lists(per_user: DataFrame, lists: str, score: str) -> DataFrame:
    """``user_id, rank, item_id, score`` from one array of ``struct(item_id, <score>)`` per user."""
    return per_user.select(S.USER_ID, F.posexplode(lists).alias("_pos", "_c")).select(
        F.col(S.USER_ID).cast("int").alias(S.USER_ID),
        (F.col("_pos") + 1).cast("int").alias(S.RANK),
        F.col(f"_c.{S.ITEM_ID}").cast("int").alias(S.ITEM_ID),
        F.col(f"_c.{score}").cast("float").alias(S.SCORE),
    )


def most_popular(train: DataFrame, users: DataFrame, *, k: int, exclude: DataFrame | None = None) -> DataFrame:
    """``user_id, rank, item_id, score``: the ``k`` most popular items each user has not seen.

    Popularity (the ``score``) is the number of ``train`` rows of the item; ties
    go to the smaller item id. ``users`` lists the users to recommend to
    (``user_id``); ``exclude`` (``user_id, exclude`` array of item ids, as from
    :func:`~als_spark.feedback.exclusions`) the items never to recommend to each.
    No user-by-item join: the ``k + max |exclude|`` most popular items are
    ranked once (one small job finds the max), then each user's list is
    filtered from that array.
    """
    check_k(k)
    candidates_per_user = _users_with_exclusions(users, exclude)
    longest = candidates_per_user.agg(F.max(F.size(EXCLUDE))).first()
    n_candidates = k + int((longest[0] if longest else 0) or 0)
    ranked = (
        train.groupBy(S.ITEM_ID)
        .agg(F.count(F.lit(1)).alias("_pop"))
        .orderBy(F.col("_pop").desc(), F.col(S.ITEM_ID).asc())
        .limit(n_candidates)
    )
    # One row: the candidates, most popular first (negated count sorts descending, then item id).
    top = ranked.agg(
        F.sort_array(
            F.collect_list(F.struct((-F.col("_pop")).alias("_neg"), F.col(S.ITEM_ID), F.col("_pop").alias(S.SCORE)))
        ).alias("_cands")
    )
    # A user's first k + |exclude_u| candidates always hold k unseen ones (if the catalogue does).
    own = F.slice(F.col("_cands"), 1, F.lit(k) + F.size(EXCLUDE))
    unseen = F.filter(own, lambda c: ~F.array_contains(F.col(EXCLUDE), c[S.ITEM_ID]))
    lists = candidates_per_user.crossJoin(top).select(S.USER_ID, F.slice(unseen, 1, k).alias("_list"))
    return _explode_lists(lists, "_list", S.SCORE)


def random_items(
    train: DataFrame, users: DataFrame, *, k: int, seed: int, exclude: DataFrame | None = None
) -> DataFrame:
    """``user_id, rank, item_id, score``: ``k`` uniformly random unseen items per user.

    Items are drawn from the distinct items of ``train``, minus the user's
    ``exclude`` list (as in :func:`most_popular`). Each (user, item) gets the
    pseudo-random ``score`` in [0, 1): the top 53 bits of
    ``xxhash64('random_items', seed, user_id, item_id)``; a user's list is the
    k highest (ties by item id), so lists depend only on the seed and the ids
    (not on partitioning), are independent of :func:`split_per_user_random`
    with the same seed, and a user gets k items whenever k unseen ones exist.
    Cost: every user scores the whole catalogue inside one row (the catalogue
    array is broadcast, no user-by-item rows are shuffled), like the model's
    own top-k scoring.
    """
    check_k(k)
    catalogue = train.agg(F.array_distinct(F.collect_list(F.col(S.ITEM_ID).cast("int"))).alias("_catalogue"))
    per_user = _users_with_exclusions(users, exclude).crossJoin(catalogue)

    def draw(item: Column) -> Column:
        h = seeded_hash(RANDOM_SALT, seed, F.col(S.USER_ID), item)
        # The top 53 bits as a double in [0, 1); negated so sort_array puts the highest first.
        u = F.shiftrightunsigned(h, 11).cast("double") / float(1 << 53)
        return F.struct((-u).alias("_neg"), item.alias(S.ITEM_ID), u.alias(S.SCORE))

    unseen = F.filter(F.col("_catalogue"), lambda i: ~F.array_contains(F.col(EXCLUDE), i))
    lists = per_user.select(S.USER_ID, F.slice(F.sort_array(F.transform(unseen, draw)), 1, k).alias("_list"))
    return _explode_lists(lists, "_list", S.SCORE)


def rated_exclusions(train: DataFrame, test: DataFrame, rated: DataFrame, *, split: str) -> DataFrame:
    """``user_id, exclude``: what ``recommend.exclude: rated`` would hide at the split's point in time.

    The user's train items plus every item the user rated at any rating (``rated``: ``user_id,
    item_id`` and, for the chronological split, ``timestamp``) that is not one of the user's test
    items. For ``split="chronological"`` only ratings made strictly before the user's first test
    interaction count (``test`` then needs ``timestamp``): a rating from the held-out future is not
    known when the list is made. Test items are never excluded.
    """
    seen = rated.select(S.USER_ID, S.ITEM_ID, *([S.TIMESTAMP] if split == "chronological" else [])).join(
        test.select(S.USER_ID, S.ITEM_ID), [S.USER_ID, S.ITEM_ID], "left_anti"
    )
    if split == "chronological":
        first_test = test.groupBy(S.USER_ID).agg(F.min(S.TIMESTAMP).alias("_first_test"))
        seen = seen.join(first_test, S.USER_ID, "left").where(
            F.col("_first_test").isNull() | (F.col(S.TIMESTAMP) < F.col("_first_test"))
        )
    items = train.select(S.USER_ID, S.ITEM_ID).unionByName(seen.select(S.USER_ID, S.ITEM_ID)).distinct()
    return feedback.items_per_user(items)
