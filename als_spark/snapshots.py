"""All of a run's tables switch together: a directory per run, and one symbolic link that names the published one.

A local output directory ``OUT`` (where the file system has symbolic links) looks like this::

    OUT/.runs/<run id>/<name>        every table and file of one run: its snapshot
    OUT/current -> .runs/<run id>    the published snapshot
    OUT/<name> -> current/<name>     what readers open; it resolves through ``current``

A run writes its tables straight into ``OUT/.runs/<run id>/``, which no reader opens. When they are
all written and checked, :func:`commit` publishes them:

1. **Carry over.** A name of the published snapshot that this run neither writes nor drops is
   hard-linked into the new one (a stage command writes a few tables and keeps the rest). No data
   is copied, and nothing rewrites a published file, so the two snapshots can share them.
2. **Links.** Each name of the new snapshot gets its ``OUT/<name> -> current/<name>`` link (after
   the first run they are there already). An output written before this layout, with real table
   directories, is first snapshotted (hard links again) and made ``current``, so that exchanging
   each real directory for its link does not change what a reader sees.
3. **The switch.** A link to the new snapshot is renamed over ``OUT/current``: one atomic
   ``rename(2)``. Before it, readers see every table of the old run; after it, every table of the new.
4. **Tidy.** Links of names the new run lacks are removed (they already read as absent), and every
   snapshot but the new one and the one it replaced is deleted. The replaced one is kept until the
   next publish, so a reader that resolved it (:func:`snapshot`) can finish reading it.

A kill at any point leaves the old or the new snapshot published, whole; ``tests/test_snapshots.py``
kills a real process at every file-system step. Whatever the killed run left (its snapshot, a
half-made link) is removed by the next :func:`commit`, or by :func:`abandon`.

This module touches only the local file system and imports no Spark.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable

from als_spark import storage

__all__ = ["CURRENT", "RUNS", "abandon", "commit", "run_dir", "snapshot", "supported"]

#: The directory that holds one snapshot per run.
RUNS = ".runs"
#: The link that names the published snapshot.
CURRENT = "current"
#: Prefix of a link made under a temporary name and then renamed into place.
_TMP = ".link-"


def run_dir(root: str, run_id: str) -> str:
    """Where run ``run_id`` writes its snapshot under the output ``root``."""
    return os.path.join(root, RUNS, run_id)


#: Databricks' FUSE mounts: Spark reads these paths through Databricks' own storage clients, which
#: need not follow a link made through the mount, so they keep the one-table-at-a-time publish.
FUSE_ROOTS = ("/dbfs", "/Volumes", "/Workspace")


def supported(root: str) -> bool:
    """Whether ``root`` (an existing directory) can hold the links readers follow (not on a FUSE mount)."""
    if any(root == fuse or root.startswith(fuse + "/") for fuse in FUSE_ROOTS):
        return False
    probe = os.path.join(root, f"{_TMP}probe-{uuid.uuid4().hex[:8]}")
    try:
        os.symlink(CURRENT, probe)
    except OSError:
        return False
    os.remove(probe)
    return True


def snapshot(root: str) -> str:
    """The directory of the snapshot published under ``root`` now, or ``root`` itself when it has none.

    Reading several tables from the returned directory reads them all from one run, even when a
    new run is published meanwhile (the replaced snapshot stays until the publish after that).
    """
    return _published(root) or root


def commit(root: str, run_id: str, *, drop: Iterable[str] = ()) -> None:
    """Publish the snapshot ``run_dir(root, run_id)`` (steps 1-4 of the module docstring).

    ``drop``: names this run may write but did not this time; they are not carried over, so the
    published snapshot has no stale copy of them.
    """
    new = run_dir(root, run_id)
    os.makedirs(new, exist_ok=True)
    published = _published(root)
    if published is None and _real_names(root):
        published = _snapshot_real_tables(root, run_id)
    if published is not None:  # 1. carry over
        for name in sorted(set(_names(published)) - set(_names(new)) - set(drop)):
            _hard_link_copy(os.path.join(published, name), os.path.join(new, name))
    for name in sorted(set(_names(new)) | set(_real_names(root))):  # 2. links
        _link_name(root, name)
    _switch(root, run_id)  # 3. the switch
    _tidy(root, keep={run_id, os.path.basename(published) if published else run_id})  # 4.


def abandon(root: str, run_id: str) -> None:
    """Remove what run ``run_id`` wrote before it published, and ``.runs`` itself when it is left empty."""
    shutil.rmtree(run_dir(root, run_id), ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.join(root, RUNS))


def _published(root: str) -> str | None:
    current = os.path.join(root, CURRENT)
    return os.path.realpath(current) if os.path.islink(current) and os.path.isdir(current) else None


def _names(directory: str) -> list[str]:
    return [n for n in os.listdir(directory) if not n.startswith(".")] if os.path.isdir(directory) else []


def _real_names(root: str) -> list[str]:
    """Names under ``root`` that are real files or directories: the tables of an output written before this layout."""
    return [n for n in _names(root) if n != CURRENT and not os.path.islink(os.path.join(root, n))]


def _snapshot_real_tables(root: str, run_id: str) -> str:
    """Make the real tables of an older output a snapshot (hard links) and publish it, changing nothing readers see."""
    before = f"{run_id}-before"
    target = run_dir(root, before)
    shutil.rmtree(target, ignore_errors=True)
    for name in _real_names(root):
        _hard_link_copy(os.path.join(root, name), os.path.join(target, name))
    os.makedirs(target, exist_ok=True)
    _switch(root, before)
    return target


def _hard_link_copy(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.isdir(src):
        shutil.copytree(src, dst, copy_function=os.link)
    else:
        os.link(src, dst)


def _replace_with_link(target: str, path: str) -> None:
    """Make ``path`` the symbolic link ``target``, atomically (a temporary link renamed over it)."""
    tmp = os.path.join(os.path.dirname(path), f"{_TMP}{uuid.uuid4().hex[:12]}")
    os.symlink(target, tmp)
    if os.path.isdir(path) and not os.path.islink(path):
        # A real directory (an older output's table): rename(2) cannot replace it, renameat2 can swap.
        if not storage.exchange(tmp, path):
            aside = f"{tmp}-old"
            os.rename(path, aside)  # without renameat2: a gap of one rename
            os.rename(tmp, path)
            tmp = aside
        shutil.rmtree(tmp)  # the real directory, now under the temporary name (its files are in a snapshot)
    else:
        os.replace(tmp, path)


def _link_name(root: str, name: str) -> None:
    path, target = os.path.join(root, name), os.path.join(CURRENT, name)
    if not (os.path.islink(path) and os.readlink(path) == target):
        _replace_with_link(target, path)


def _switch(root: str, run_id: str) -> None:
    _replace_with_link(os.path.join(RUNS, run_id), os.path.join(root, CURRENT))


def _tidy(root: str, keep: set[str]) -> None:
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name.startswith(_TMP):  # a link a killed run made and did not rename into place
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
        elif os.path.islink(path) and os.readlink(path).startswith(CURRENT + os.sep) and not os.path.exists(path):
            os.remove(path)  # a name the published snapshot does not have
    runs = os.path.join(root, RUNS)
    for name in os.listdir(runs):
        if name not in keep:
            shutil.rmtree(os.path.join(runs, name), ignore_errors=True)
