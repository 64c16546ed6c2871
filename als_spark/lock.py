"""One writer per output directory: a lock file that names its run, renewed while the run lives.

A run takes ``OUT/.writer-lock`` before it stages anything (an exclusive create: of two runs
starting together, one wins) and removes it when it has published or given up. The file names
the run (its id, host, process id, start time) and when it was last renewed; a thread renews it
every :data:`RENEW_SECONDS`. A second run finds it and stops with
:class:`OutputInUseError` (exit 3), naming the first, unless the lock is stale:

* on the same host (and the same process namespace), its process is gone: a killed run;
* anywhere, it was not renewed for :data:`LEASE_SECONDS`: a run on another machine that died,
  or a lock file left unreadable by a kill while it was being written.

A lock held by this very process (a command that publishes in several steps inside its run) is
shared, and released by whoever took it first. A stale lock is taken over by renaming it aside (of two runs taking over together, one rename
wins) and creating a new one. While a run holds the lock no other run writes, so the abandoned
staging directories it removes are those of dead runs only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from typing import Any, Protocol

from als_spark.errors import InputDataError

log = logging.getLogger(__name__)

LOCK_NAME = ".writer-lock"
#: A lock not renewed for this long is stale, whoever holds it.
LEASE_SECONDS = 600.0
#: How often a live run renews its lock.
RENEW_SECONDS = 30.0
#: A lock file that cannot be read for this long was left by a kill during its first write.
UNREADABLE_SECONDS = 60.0


class OutputInUseError(InputDataError):
    """Another live run is writing the same output directory (exit 3)."""


class LockFS(Protocol):
    def create_new(self, path: str, data: bytes) -> bool: ...
    def read(self, path: str) -> bytes | None: ...
    def write(self, path: str, data: bytes) -> None: ...
    def rename_if_exists(self, src: str, dst: str) -> bool: ...
    def delete(self, path: str) -> None: ...
    def age(self, path: str) -> float | None: ...


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_namespace() -> int | None:
    """The inode of this process's pid namespace: two containers with one hostname differ in it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class WriterLock:
    """The lock of one output directory, held by one run (see the module docstring)."""

    def __init__(self, fs: LockFS, path: str, run_id: str, output: str) -> None:
        self.fs, self.path, self.output = fs, path, output
        self.owner: dict[str, Any] = {
            "run_id": run_id,
            "host": socket.gethostname(),
            "pid_namespace": _pid_namespace(),
            "pid": os.getpid(),
            "started_at": _now(),
        }
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._nested = False  #: taken inside another lock of this process: released by that one

    def _content(self) -> bytes:
        return (json.dumps({**self.owner, "renewed_at": _now()}) + "\n").encode("utf-8")

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; :class:`OutputInUseError` when a live run holds it."""
        for _ in range(3):  # a lock released or taken over while we look: look again
            if self.fs.create_new(self.path, self._content()):
                self._start_renewing()
                return
            holder = self._holder()
            if holder and self._ours(holder):
                self._nested = True  # this process's own run holds it (a command publishing in steps)
                return
            reason = self._stale(holder)
            if reason is None:
                if holder is None:  # released between our create and our read
                    continue
                raise OutputInUseError(self._in_use(holder))
            aside = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
            if self.fs.rename_if_exists(self.path, aside):
                log.warning("taking over the writer lock of %s: %s", self.output, reason)
                self.fs.delete(aside)
        raise OutputInUseError(
            f"{self.output} is being locked and released by other runs as this one starts: try again, "
            "or give each run its own --output."
        )

    def _ours(self, holder: dict[str, Any]) -> bool:
        """Whether ``holder`` is this very process (same host, process namespace and pid)."""
        return (
            holder.get("host") == self.owner["host"]
            and holder.get("pid_namespace") == self.owner["pid_namespace"]
            and holder.get("pid") == self.owner["pid"]
        )

    def check_free(self) -> None:
        """Raise :class:`OutputInUseError` when a live run holds the lock; take nothing (a check before Spark starts)."""
        holder = self._holder()
        if holder is not None and self._stale(holder) is None:
            raise OutputInUseError(self._in_use(holder))

    def _holder(self) -> dict[str, Any] | None:
        """The lock's content; ``{}`` when it is there but unreadable, ``None`` when it is gone."""
        data = self.fs.read(self.path)
        if data is None:
            return None
        try:
            holder = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def _stale(self, holder: dict[str, Any] | None) -> str | None:
        """Why the lock ``holder`` describes may be taken over, or ``None`` when its run may be alive."""
        if holder is None:
            return None
        same_machine = holder.get("host") == self.owner["host"] and holder.get("pid_namespace") == _pid_namespace()
        pid = holder.get("pid")
        if same_machine and isinstance(pid, int) and not process_alive(pid):
            return f"run {holder.get('run_id')} (pid {pid} on this host) is gone"
        age = self.fs.age(self.path)
        if not holder and age is not None and age > UNREADABLE_SECONDS:
            return f"its file has been unreadable for {age:.0f} s (a run killed while it wrote it)"
        if age is not None and age > LEASE_SECONDS:
            return f"it was last renewed {age:.0f} s ago (the lease is {LEASE_SECONDS:.0f} s)"
        return None

    def _in_use(self, holder: dict[str, Any]) -> str:
        if not holder:
            who = "a run whose lock file is still being written"
        else:
            who = (
                f"run {holder.get('run_id')} on host {holder.get('host')}, pid {holder.get('pid')}, "
                f"started {holder.get('started_at')}, last renewed {holder.get('renewed_at')}"
            )
        return (
            f"{self.output} is being written by another run ({who}); two runs must not write one output at "
            "once. Wait for it to finish, or give this run another --output. A lock whose run died is taken "
            f"over by the next run: on the same host as soon as its process is gone, elsewhere once it has not "
            f"been renewed for {LEASE_SECONDS:.0f} s (the lock is {self.path})."
        )

    def _start_renewing(self) -> None:
        def renew() -> None:
            while not self._stop.wait(RENEW_SECONDS):
                holder = self._holder()
                if not holder or holder.get("run_id") != self.owner["run_id"]:
                    log.warning("the writer lock of %s is no longer this run's", self.output)
                    return
                self.fs.write(self.path, self._content())

        self._renewer = threading.Thread(target=renew, name="als-spark-writer-lock", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        """Stop renewing and remove the lock if it is still this run's (idempotent)."""
        if self._nested:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        holder = self._holder()
        if holder and holder.get("run_id") == self.owner["run_id"]:
            self.fs.delete(self.path)


def check_output_free(output: str) -> None:
    """:meth:`WriterLock.check_free` for a local ``output``: a second run fails in a second, before its JVM starts.

    The run still takes the lock itself when it starts publishing; this only answers early.
    """
    from als_spark.paths import local_path
    from als_spark.storage import LocalFS

    local = local_path(output)
    if local is not None:
        path = os.path.join(os.path.abspath(local), LOCK_NAME)
        WriterLock(LocalFS(), path, "check", output).check_free()
