"""All tables switch together (als_spark/snapshots.py): the layout, carry-over and drop, the kept
previous snapshot, the move from an older output's real directories, and a real process killed
with SIGKILL before each of its file-system steps, after which a reader still sees one whole run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from als_spark import snapshots

pytestmark = pytest.mark.unit

# Run A published {recommendations, similar_items, explanations, run.json}. Run B is a stage
# command: it writes recommendations, a new table and run.json, drops explanations (it may write
# them, did not) and keeps A's similar_items. Run C writes recommendations, similar_items and run.json.
A = {"recommendations": "A", "similar_items": "A", "explanations": "A", "run.json": "A"}
B_WRITES = {"recommendations": "B", "new_table": "B", "run.json": "B"}
B = {"recommendations": "B", "similar_items": "A", "new_table": "B", "run.json": "B"}
C_WRITES = {"recommendations": "C", "similar_items": "C", "run.json": "C"}


def _write(directory: Path, tables: dict[str, str]) -> None:
    """A table is a directory of two part files, a file (run.json) is one file; the content is the run's tag."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, tag in tables.items():
        if name.endswith(".json"):
            (directory / name).write_text(tag)
        else:
            (directory / name).mkdir()
            for part in ("part-0", "part-1"):
                (directory / name / part).write_text(tag)


def _seen(root: Path) -> dict[str, str]:
    """What a reader of ``root/<name>`` sees now: each name's tag, or ``mixed`` within one table."""
    seen = {}
    for name in sorted(os.listdir(root)):
        path = root / name
        if name.startswith(".") or name == snapshots.CURRENT or not path.exists():
            continue
        tags = {path.read_text()} if path.is_file() else {p.read_text() for p in path.iterdir()}
        seen[name] = tags.pop() if len(tags) == 1 else "mixed"
    return seen


def _stage(root: Path, run_id: str, tables: dict[str, str]) -> None:
    _write(root / snapshots.RUNS / run_id, tables)


def _commit(root: Path, run_id: str, writes: dict[str, str], drop: tuple[str, ...] = ()) -> None:
    _stage(root, run_id, writes)
    snapshots.commit(str(root), run_id, drop=drop)


@pytest.fixture
def published_a(tmp_path) -> Path:
    root = tmp_path / "out"
    _commit(root, "a", A)
    return root


def test_a_first_commit_links_every_name_through_current(published_a):
    root = published_a
    assert sorted(os.listdir(root)) == sorted([*A, ".runs", "current"])
    assert os.readlink(root / "current") == ".runs/a"
    assert {n: os.readlink(root / n) for n in A} == {n: f"current/{n}" for n in A}
    assert _seen(root) == A


def test_a_stage_commit_carries_over_drops_and_keeps_the_previous_snapshot(published_a):
    root = published_a
    _commit(root, "b", B_WRITES, drop=("explanations",))
    assert _seen(root) == B
    assert not os.path.lexists(root / "explanations")  # its link is gone, not left dangling
    # carried over as hard links: the same files, no copy
    carried, original = root / ".runs/b/similar_items/part-0", root / ".runs/a/similar_items/part-0"
    assert os.stat(carried).st_ino == os.stat(original).st_ino
    assert sorted(os.listdir(root / ".runs")) == ["a", "b"]  # the replaced snapshot is kept...
    _commit(root, "c", C_WRITES)
    assert sorted(os.listdir(root / ".runs")) == ["b", "c"]  # ...until the publish after
    assert _seen(root) == {**C_WRITES, "new_table": "B"}


def test_snapshot_pins_one_run_for_a_reader_across_the_next_publish(published_a):
    root = published_a
    pinned = Path(snapshots.snapshot(str(root)))
    assert pinned == (root / ".runs/a").resolve()
    _commit(root, "b", B_WRITES)
    assert _seen(pinned) == A  # a reader of the resolved run still reads run A, whole
    assert _seen(root) == {**B, "explanations": "A"}  # not dropped: carried over
    assert snapshots.snapshot(str(root / "missing")) == str(root / "missing")


def test_an_older_output_with_real_tables_moves_into_the_layout(tmp_path):
    root = tmp_path / "out"
    _write(root, A)  # as an earlier version published: real directories
    (root / "notes.txt").write_text("the user's own file")
    _commit(root, "b", B_WRITES, drop=("explanations",))
    assert _seen(root) == {**B, "notes.txt": "the user's own file"}
    assert sorted(os.listdir(root / ".runs")) == ["b", "b-before"]
    assert all(os.path.islink(root / n) for n in [*B, "notes.txt"])


def test_abandon_removes_what_a_run_staged_and_an_empty_runs_directory(tmp_path):
    root = tmp_path / "out"
    _stage(root, "x", B_WRITES)
    snapshots.abandon(str(root), "x")
    assert os.listdir(root) == []


def test_supported_is_false_where_links_cannot_be_made(tmp_path, monkeypatch):
    assert snapshots.supported(str(tmp_path))
    assert os.listdir(tmp_path) == []  # the probe link is removed

    def refuse(*args, **kwargs):
        raise PermissionError("operation not permitted")

    monkeypatch.setattr(os, "symlink", refuse)
    assert not snapshots.supported(str(tmp_path))
    assert not snapshots.supported("/Volumes/main/default/out") and not snapshots.supported("/dbfs/out")


# A process that commits run b and SIGKILLs itself before its Nth file-system call (every call that
# changes the directory tree counts, inside rmtree and copytree too); exit 0 when it had fewer.
CHILD = """
import os, shutil, signal, sys
from als_spark import snapshots, storage
root, kill_at = sys.argv[1], int(sys.argv[2])
calls = [0]
def counted(fn):
    def call(*args, **kwargs):
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        return fn(*args, **kwargs)
    return call
for name in ("symlink", "replace", "rename", "link", "unlink", "remove", "rmdir", "mkdir"):
    setattr(os, name, counted(getattr(os, name)))
storage.exchange = counted(storage.exchange)
snapshots.commit(root, "b", drop=("explanations",))
print(calls[0])
"""


@pytest.mark.slow
@pytest.mark.parametrize("start", ["linked", "real directories"])
def test_a_kill_before_any_step_of_the_publish_leaves_one_whole_run(tmp_path, start):
    steps = 0
    while True:
        root = tmp_path / f"kill-{steps}"
        if start == "linked":
            _commit(root, "a", A)
        else:
            _write(root, A)
        _stage(root, "b", B_WRITES)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(root), str(steps)], capture_output=True, text=True, timeout=60
        )
        seen = _seen(root)
        if child.returncode == 0:  # no kill: the commit has fewer steps than this
            assert seen == B
            assert int(child.stdout) == steps
            break
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert seen in (A, B), f"killed before step {steps}: a reader sees {json.dumps(seen)}"
        # The next run publishes over whatever the killed one left, and tidies it away: what is left
        # is its own snapshot and the one it replaced.
        current = root / "current"
        replaced = os.path.basename(os.readlink(current)) if os.path.islink(current) else "c-before"
        _commit(root, "c", C_WRITES, drop=("explanations", "new_table"))
        assert _seen(root) == C_WRITES, f"after a kill before step {steps}"
        assert sorted(os.listdir(root)) == sorted([*C_WRITES, ".runs", "current"])
        assert sorted(os.listdir(root / ".runs")) == sorted({"c", replaced})
        steps += 1
    # Every step was reached: (linked) the carry-over's directory and two links, a new name's link, the
    # switch, the tidy; (real directories) also the hard-link snapshot of each old table and the exchange
    # of each real directory for its link. Counted calls include mkdirs of directories that exist.
    assert steps == {"linked": 10, "real directories": 44}[start]
