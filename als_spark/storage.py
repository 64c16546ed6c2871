"""The few file-system operations publishing needs, on a local (or FUSE) path or through Hadoop's FileSystem.

:class:`LocalFS` works on this machine's files (atomic swaps with ``renameat2`` where Linux has
it); :class:`HadoopFS` does the same through the JVM's Hadoop ``FileSystem`` on a classic session
(HDFS, S3, ABFS, DBFS). Both offer what :mod:`als_spark.publish` and :mod:`als_spark.lock` use:
exists, delete, replace, list, write, and for the writer lock an exclusive create, a read, a
rename that tells whether the source was there, and a file's age.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import time
import uuid
from typing import Any


def exchange(a: str, b: str) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), b)


class LocalFS:
    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def delete(self, path: str) -> None:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)

    def replace(self, src: str, dst: str) -> None:
        if not os.path.exists(dst):
            os.rename(src, dst)
        elif exchange(src, dst):
            self.delete(src)  # src now holds the old version
        else:
            aside = f"{dst}.old-{uuid.uuid4().hex[:8]}"
            os.rename(dst, aside)
            os.rename(src, dst)
            self.delete(aside)

    def list(self, path: str) -> list[str]:
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def write(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=f".{os.path.basename(path)}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def create_new(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` unless it exists (atomically); whether it was created."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def rename_if_exists(self, src: str, dst: str) -> bool:
        """Rename ``src`` to a new name ``dst``; False when ``src`` is not there (another process moved it)."""
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return False
        return True

    def age(self, path: str) -> float | None:
        """Seconds since ``path`` last changed, ``None`` when it is not there."""
        try:
            return time.time() - os.stat(path).st_mtime
        except FileNotFoundError:
            return None


class HadoopFS:
    """The same operations through the JVM's Hadoop FileSystem (classic sessions only)."""

    def __init__(self, spark: Any, root: str) -> None:
        jvm = spark._jvm  # noqa: SLF001 - the only way to rename on HDFS/S3/ABFS from Python
        assert jvm is not None, "a classic session has a JVM gateway"
        self._jvm = jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self._fs = self._path(root).getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def delete(self, path: str) -> None:
        self._fs.delete(self._path(path), True)

    def replace(self, src: str, dst: str) -> None:
        aside = None
        if self.exists(dst):
            aside = f"{dst}.old-{uuid.uuid4().hex[:8]}"
            self._fs.rename(self._path(dst), self._path(aside))
        if not self._fs.rename(self._path(src), self._path(dst)):
            raise OSError(f"could not rename {src} to {dst}")
        if aside:
            self.delete(aside)

    def list(self, path: str) -> list[str]:
        p = self._path(path)
        return sorted(s.getPath().getName() for s in self._fs.listStatus(p)) if self._fs.exists(p) else []

    def write(self, path: str, data: bytes) -> None:
        tmp = self._path(f"{path}.tmp-{uuid.uuid4().hex[:8]}")
        stream = self._fs.create(tmp, True)
        stream.write(bytearray(data))
        stream.close()
        self.replace(tmp.toString(), path)

    def create_new(self, path: str, data: bytes) -> bool:
        """Create ``path`` unless it exists (``FileSystem.create`` without overwrite: atomic on HDFS, a
        check-then-write on object stores); whether it was created."""
        try:
            stream = self._fs.create(self._path(path), False)
        except Exception as exc:  # noqa: BLE001 - FileAlreadyExistsException arrives as a Py4J error
            if "AlreadyExists" in str(exc) or self.exists(path):
                return False
            raise
        stream.write(bytearray(data))
        stream.close()
        return True

    def read(self, path: str) -> bytes | None:
        if not self.exists(path):
            return None
        stream = self._fs.open(self._path(path))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def rename_if_exists(self, src: str, dst: str) -> bool:
        return bool(self.exists(src) and self._fs.rename(self._path(src), self._path(dst)))

    def age(self, path: str) -> float | None:
        if not self.exists(path):
            return None
        return time.time() - self._fs.getFileStatus(self._path(path)).getModificationTime() / 1000.0
