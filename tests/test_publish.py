"""Publishing: tables appear all together or not at all, a failed or killed run leaves the
previous outputs as they were, and a rerun with the same arguments gives the same tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from als_spark import pipeline, publish, snapshots, storage
from als_spark.config import build_config
from als_spark.errors import InputDataError

pytestmark = pytest.mark.slow

# Two taste groups of 4 users and 3 items each, plus one disliked item per user.
U_DATA = "".join(
    f"{u}\t{i}\t{5 if (u + i) % 2 else 4}\t{880000000 + 10 * u + i}\n"
    for u in range(1, 9)
    for i in ((1, 2, 3) if u <= 4 else (4, 5, 6))
) + "".join(f"{u}\t{4 if u <= 4 else 1}\t{1 + u % 2}\t{890000000 + u}\n" for u in range(1, 9))
SMALL = ["als.rank=3", "als.max_iter=5", "recommend.top_n=2", "similar.top_k=2"]
TABLES = (
    "dataset_summary",
    "ratings",
    "interactions",
    "rejected",
    "user_factors",
    "item_factors",
    "recommendations",
    "similar_items",
    "similar_users",
)


def _snapshot(out: Path) -> dict[str, object]:
    """Every published table's rows (features as lists) and run.json, to compare two states."""
    state: dict[str, object] = {}
    for name in TABLES:
        df = pd.read_parquet(out / name)
        if "features" in df:
            df["features"] = df["features"].map(list)
        keys = [c for c in df.columns[:2] if c != "features"]
        state[name] = df.sort_values(keys).reset_index(drop=True)
    state["run.json"] = (out / "run.json").read_text()
    return state


def _assert_same(a: dict[str, object], b: dict[str, object], *, run_json: bool = True) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    if run_json:
        assert a["run.json"] == b["run.json"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "u.data"
    path.write_text(U_DATA)
    return path


@pytest.fixture(scope="module")
def published(spark, data_file, tmp_path_factory) -> Path:
    """One published run shared by the tests below; each compares against its own snapshot."""
    out = tmp_path_factory.mktemp("published") / "out"
    pipeline.run_all(spark, pipeline.Source(path=str(data_file)), build_config(None, SMALL), str(out))
    return out


def test_a_run_publishes_every_table_and_leaves_no_staging(published):
    names = sorted([*TABLES, "user_index", "item_index", "model", "run.json"])
    assert sorted(os.listdir(published)) == sorted([*names, "current", ".runs"])
    # one snapshot, named by the run, holds every table; each published name is a link through `current`
    (run_id,) = os.listdir(published / ".runs")
    assert os.readlink(published / "current") == f".runs/{run_id}"
    assert sorted(os.listdir(published / ".runs" / run_id)) == names
    assert {n: os.readlink(published / n) for n in names} == {n: f"current/{n}" for n in names}
    info = json.loads((published / "run.json").read_text())
    assert info["run_id"] == run_id
    assert info["published"]["recommendations"] == {"path": str(published / "recommendations"), "rows": 16}
    assert info["published"]["model"]["rows"] is None
    assert info["counts"]["recommendations"] == 16


def test_a_failing_run_publishes_nothing(spark, published, data_file, monkeypatch):
    before, snapshots = _snapshot(published), sorted(os.listdir(published / ".runs"))

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure in the similarity stage")

    monkeypatch.setattr(pipeline, "run_similar", boom)
    with pytest.raises(RuntimeError, match="simulated failure"):
        pipeline.run_all(
            spark, pipeline.Source(path=str(data_file)), build_config(None, [*SMALL, "als.rank=4"]), str(published)
        )
    _assert_same(before, _snapshot(published))
    assert sorted(os.listdir(published / ".runs")) == snapshots  # what the failed run wrote is gone


def test_bad_input_on_rerun_publishes_nothing(spark, published, tmp_path):
    before = _snapshot(published)
    bad = tmp_path / "bad.data"
    bad.write_text("1\t2\t5\t100\nnot a rating line at all\n")  # 50% rejected > 1%
    with pytest.raises(InputDataError, match="Nothing was published"):
        pipeline.run_all(spark, pipeline.Source(path=str(bad)), build_config(None, SMALL), str(published))
    _assert_same(before, _snapshot(published))


def test_rerun_with_the_same_arguments_gives_the_same_tables(spark, published, data_file):
    before = _snapshot(published)
    pipeline.run_all(spark, pipeline.Source(path=str(data_file)), build_config(None, SMALL), str(published))
    after = _snapshot(published)
    _assert_same(before, after, run_json=False)  # run.json differs only in run id and times
    assert json.loads(after["run.json"])["run_id"] != json.loads(before["run.json"])["run_id"]


@pytest.mark.e2e  # a driver process killed, then a CLI process
def test_killed_run_leaves_previous_outputs_and_next_run_cleans_up(published, data_file):
    before = _snapshot(published)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    cmd = [
        sys.executable,
        "-m",
        "als_spark",
        "run",
        "--input",
        str(data_file),
        "--output",
        str(published),
        "--set",
        "als.rank=3",
        "--set",
        "als.max_iter=5",
        "--set",
        "recommend.top_n=2",
        "--set",
        "similar.top_k=2",
        "--log-level",
        "WARNING",
    ]
    runs = published / ".runs"
    snapshots = set(os.listdir(runs))  # the published one, and the one it replaced
    proc = subprocess.Popen(
        [*cmd, "--set", "als.max_iter=400"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Wait until the run has staged its first tables, then kill the driver and its JVM.
        deadline = time.monotonic() + 240
        staged = None
        while time.monotonic() < deadline and proc.poll() is None:
            staging = [e for e in os.listdir(runs) if e not in snapshots]
            if staging and (runs / staging[0] / "interactions" / "_SUCCESS").exists():
                staged = runs / staging[0]
                break
            time.sleep(0.2)
        assert staged is not None, "the run never staged a table"
        # A second run into the same output while the first writes: refused at once, naming the first.
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 3, second.stderr[-2000:]
        assert f"is being written by another run (run {staged.name}" in second.stderr
        assert f"pid {proc.pid}, started " in second.stderr and "Traceback" not in second.stderr
        assert staged.exists()  # the refused run removed nothing of the first's
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    _assert_same(before, _snapshot(published))  # untouched and readable
    assert staged.exists()  # what the killed run staged is left behind...
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not staged.exists()  # ...and removed by the next run
    _assert_same(before, _snapshot(published), run_json=False)
    # A CLI process started its own JVM for this small file: the quick-starting one (session.quick_jit).
    assert json.loads((published / "run.json").read_text())["spark"]["quick_jit"] is True


@pytest.mark.unit
def test_exchange_swaps_directories_atomically_and_fallback_renames(tmp_path, monkeypatch):
    fs = storage.LocalFS()
    for name, content in (("old", "1"), ("new", "2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part").write_text(content)
    fs.replace(str(tmp_path / "new"), str(tmp_path / "old"))
    assert (tmp_path / "old" / "part").read_text() == "2" and not (tmp_path / "new").exists()
    # without renameat2: rename aside, rename in, delete the old copy
    monkeypatch.setattr(storage, "exchange", lambda a, b: False)
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "part").write_text("3")
    fs.replace(str(tmp_path / "newer"), str(tmp_path / "old"))
    assert (tmp_path / "old" / "part").read_text() == "3"
    assert sorted(os.listdir(tmp_path)) == ["old"]


@pytest.mark.spark_unit
def test_publish_refuses_an_incomplete_staged_table(spark, tmp_path):
    out = tmp_path / "out"
    publisher = publish.Publisher(spark, str(out), "r1")
    publisher.write_table(spark.createDataFrame([(1,)], "x int"), "complete")
    publisher.write_table(spark.createDataFrame([(2,)], "x int"), "broken")
    os.remove(Path(publisher.staging) / "broken" / "_SUCCESS")  # as if the writer died before committing
    with pytest.raises(OSError, match="staged table broken is incomplete"):
        publisher.publish()
    assert not (out / "complete").exists()  # nothing was moved into place
    publisher.abort()
    assert not out.exists()  # the staging and the writer lock are gone, and the directory they needed


@pytest.mark.spark_unit
def test_without_links_each_table_is_moved_into_place(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(snapshots, "supported", lambda root: False)  # as on /Volumes, or where links fail
    out = tmp_path / "out"
    for value in (1, 2):
        publisher = publish.Publisher(spark, str(out), f"r{value}")
        assert publisher.staging == str(out / f".staging-r{value}")
        publisher.write_table(spark.createDataFrame([(value,)], "x int"), "t")
        publisher.stage_file("run.json", f'{{"run": {value}}}')
        assert publisher.publish() == {"t": 1, "run.json": None}
        publisher.release()
        assert sorted(os.listdir(out)) == ["run.json", "t"] and not os.path.islink(out / "t")
        assert pd.read_parquet(out / "t")["x"].tolist() == [value]
        assert json.loads((out / "run.json").read_text()) == {"run": value}
