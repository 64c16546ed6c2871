"""One writer per output: the lock refuses a second live run, and is taken over from a dead one (real processes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from als_spark import lock
from als_spark.lock import LOCK_NAME, OutputInUseError, WriterLock
from als_spark.storage import LocalFS

ROOT = Path(__file__).resolve().parents[1]

# Takes the lock of the output in argv[1] as run argv[2], says so, then waits to be killed.
HOLDER = """
import sys, time
from als_spark.lock import WriterLock
from als_spark.storage import LocalFS
out, run = sys.argv[1], sys.argv[2]
WriterLock(LocalFS(), out + "/.writer-lock", run, out).acquire()
print("held", flush=True)
time.sleep(600)
"""

# Tries the lock as run argv[2] once all racers are ready; prints won or lost.
RACER = """
import sys, time
from als_spark.lock import OutputInUseError, WriterLock
from als_spark.storage import LocalFS
out, run, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
try:
    WriterLock(LocalFS(), out + "/.writer-lock", run, out).acquire()
    print("won", flush=True)
    time.sleep(3)
except OutputInUseError:
    print("lost", flush=True)
"""


def _python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env)


def _lock(out: Path, run: str = "mine") -> WriterLock:
    return WriterLock(LocalFS(), str(out / LOCK_NAME), run, str(out))


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of ``tmp_path / "out"`` as run ``theirs``."""
    out = tmp_path / "out"
    proc = _python(HOLDER, str(out), "theirs")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield out, proc
    proc.kill()
    proc.wait()


def test_a_second_run_is_refused_with_the_first_runs_name(holder):
    out, proc = holder
    with pytest.raises(OutputInUseError) as refused:
        _lock(out).acquire()
    message = str(refused.value)
    assert f"run theirs on host {socket.gethostname()}, pid {proc.pid}, started 20" in message
    assert "Wait for it to finish, or give this run another --output" in message
    assert refused.value.exit_code == 3
    assert json.loads((out / LOCK_NAME).read_text())["run_id"] == "theirs"  # left as it was


def test_the_lock_of_a_killed_run_is_taken_over(holder):
    out, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mine = _lock(out)
    mine.acquire()
    assert json.loads((out / LOCK_NAME).read_text())["run_id"] == "mine"
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # the stale lock was not left aside
    mine.release()
    assert not (out / LOCK_NAME).exists()


def _foreign(out: Path, age: float, content: str | None = None) -> None:
    """A lock file of a run on another host, last written ``age`` seconds ago."""
    out.mkdir(parents=True, exist_ok=True)
    if content is None:
        content = json.dumps({"run_id": "far", "host": "elsewhere", "pid": 1, "started_at": "x", "renewed_at": "y"})
    path = out / LOCK_NAME
    path.write_text(content)
    then = time.time() - age
    os.utime(path, (then, then))


def test_another_hosts_lock_holds_for_its_lease_then_is_taken_over(tmp_path):
    out = tmp_path / "out"
    _foreign(out, age=lock.LEASE_SECONDS - 60)
    with pytest.raises(OutputInUseError, match="run far on host elsewhere, pid 1"):
        _lock(out).acquire()
    _foreign(out, age=lock.LEASE_SECONDS + 60)
    _lock(out).acquire()
    assert json.loads((out / LOCK_NAME).read_text())["run_id"] == "mine"


def test_an_unreadable_lock_holds_for_a_minute(tmp_path):
    # A kill between the lock's creation and its first write leaves it empty.
    out = tmp_path / "out"
    _foreign(out, age=5, content="")
    with pytest.raises(OutputInUseError, match="a run whose lock file is still being written"):
        _lock(out).acquire()
    _foreign(out, age=lock.UNREADABLE_SECONDS + 5, content="")
    _lock(out).acquire()
    assert json.loads((out / LOCK_NAME).read_text())["run_id"] == "mine"


def test_a_run_releases_only_its_own_lock_and_renews_it(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "RENEW_SECONDS", 0.2)
    out = tmp_path / "out"
    mine = _lock(out)
    mine.acquire()
    first = json.loads((out / LOCK_NAME).read_text())
    os.utime(out / LOCK_NAME, (time.time() - 100, time.time() - 100))
    time.sleep(1.0)
    assert LocalFS().age(str(out / LOCK_NAME)) < 5  # renewed: its lease starts again
    assert json.loads((out / LOCK_NAME).read_text())["started_at"] == first["started_at"]
    # Taken over meanwhile (say this run was thought dead): release leaves the new holder's lock.
    _foreign(out, age=0)
    mine.release()
    assert json.loads((out / LOCK_NAME).read_text())["run_id"] == "far"


def test_of_runs_starting_together_exactly_one_wins(tmp_path):
    out = tmp_path / "out"
    start = time.time() + 2.0
    racers = [_python(RACER, str(out), f"run-{n}", str(start)) for n in range(4)]
    said = sorted(p.communicate(timeout=60)[0].strip() for p in racers)
    assert said == ["lost", "lost", "lost", "won"]


def test_the_early_check_refuses_a_live_run_and_takes_nothing(holder):
    out, proc = holder
    with pytest.raises(OutputInUseError, match=f"pid {proc.pid}"):
        lock.check_output_free(str(out))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock.check_output_free(str(out))  # a dead run's lock does not stop a new run...
    assert json.loads((out / LOCK_NAME).read_text())["run_id"] == "theirs"  # ...and the check takes nothing
    lock.check_output_free(str(out.parent / "never-written"))  # no output yet: nothing to check


def test_this_process_shares_its_own_lock_and_the_first_taker_releases_it(tmp_path):
    # A command publishing in steps inside its run (tune's leaderboard, then its test metrics).
    out = tmp_path / "out"
    outer, inner = _lock(out, "run"), _lock(out, "step")
    outer.acquire()
    inner.acquire()
    inner.release()
    assert json.loads((out / LOCK_NAME).read_text())["run_id"] == "run"
    outer.release()
    assert not (out / LOCK_NAME).exists()
