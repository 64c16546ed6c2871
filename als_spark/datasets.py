"""Download, verify and cache the built-in MovieLens 100k dataset.

MovieLens may not be redistributed, so the project never ships it: the
official archive is fetched from GroupLens once, its members are checked
against known SHA-256 digests and kept in a local cache. Without network
access the fetch fails after a single attempt with a message that points the
user at ``--input`` (a local copy of ``u.data``) or ``--dataset synthetic``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from als_spark.errors import DatasetError

__all__ = [
    "ML_100K_FILES",
    "ML_100K_SHA256",
    "ML_100K_U_DATA_BYTES",
    "ML_100K_URL",
    "default_cache_dir",
    "fetch_ml_100k",
]

logger = logging.getLogger(__name__)

ML_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# SHA-256 of the extracted members (computed from the official files).
ML_100K_SHA256: Mapping[str, str] = {
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.item": "877066821e4ee9079cb1eb95c359e47cac01240dbd2bdb3f7864060f57c5019b",
}
# Files kept from the archive; each is read from the member ``ml-100k/<name>``.
ML_100K_FILES = ("u.data", "u.item")
#: Size of the official u.data (what `--dataset ml-100k` reads), known before it is fetched.
ML_100K_U_DATA_BYTES = 1_979_173

_SUBDIR = "ml-100k"
_CHUNK = 1 << 16
# The official members are a few MB; refuse anything absurd (e.g. a zip bomb).
_MAX_MEMBER_BYTES = 64 << 20


def default_cache_dir() -> Path:
    """Return ``$ALS_SPARK_CACHE``, else ``$XDG_CACHE_HOME/als-spark``, else ~/.cache/als-spark."""
    explicit = os.environ.get("ALS_SPARK_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "als-spark"


def fetch_ml_100k(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    url: str = ML_100K_URL,
    timeout: float = 15.0,
    expected_sha256: Mapping[str, str] = ML_100K_SHA256,
) -> Path:
    """Return a directory holding verified u.data and u.item, downloading them once.

    The files live in ``<cache_dir>/ml-100k/``. If both are already there with
    the expected SHA-256 no network access happens. Otherwise the archive is
    downloaded from ``url`` in a single attempt (``timeout`` is the socket
    timeout in seconds), both members are verified and only then moved into
    place. Every failure raises :class:`~als_spark.errors.DatasetError`.
    """
    missing = [name for name in ML_100K_FILES if name not in expected_sha256]
    if missing:
        raise ValueError(f"expected_sha256 has no digest for {', '.join(missing)}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / _SUBDIR
    if _cache_is_valid(target, expected_sha256):
        return target

    try:
        target.mkdir(parents=True, exist_ok=True)
        archive = _temp_path(target, ".ml-100k-", ".zip.part")
    except OSError as exc:
        raise _unwritable(target, exc) from exc
    staged: dict[str, Path] = {}
    try:
        logger.info("Downloading MovieLens 100k from %s to %s", url, target)
        try:
            with archive.open("wb") as out:
                _download(url, out, timeout)
            staged = _extract_verified(archive, target, url, expected_sha256)
            for name, tmp in staged.items():
                os.replace(tmp, target / name)
        except OSError as exc:
            raise _unwritable(target, exc) from exc
    finally:
        _remove([archive, *staged.values()])
    return target


def _cache_is_valid(target: Path, expected: Mapping[str, str]) -> bool:
    """Whether every cached file matches; discard (and log) any that does not."""
    valid = True
    for name in ML_100K_FILES:
        path = target / name
        try:
            digest = _sha256_file(path)
        except OSError:
            valid = False
            continue
        if digest != expected[name].lower():
            logger.warning(
                "Cached %s has SHA-256 %s, expected %s; discarding it and downloading again",
                path,
                digest,
                expected[name],
            )
            try:
                path.unlink()
            except OSError as exc:
                raise _unwritable(target, exc) from exc
            valid = False
    return valid


def _download(url: str, out: IO[bytes], timeout: float) -> None:
    """Stream ``url`` into ``out``: network errors raise DatasetError, write errors OSError."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _download_failed(url, exc, timeout) from exc
    with response:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _download_failed(url, exc, timeout) from exc
            if not chunk:
                return
            out.write(chunk)


def _extract_verified(archive: Path, target: Path, url: str, expected: Mapping[str, str]) -> dict[str, Path]:
    """Extract the wanted members to temp files in ``target`` and verify them.

    Member names are never used as paths: each file is written to a fresh temp
    file inside ``target`` (zip-slip safe). Returns ``{name: temp path}`` only
    if every file matches its digest; on any failure the temp files are removed.
    """
    staged: dict[str, Path] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in ML_100K_FILES:
                member = f"{_SUBDIR}/{name}"
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise DatasetError(
                        f"The archive downloaded from {url} has no member {member}; it is not "
                        "the MovieLens 100k archive. Nothing was cached."
                    ) from None
                tmp = staged[name] = _temp_path(target, f".{name}-", ".part")
                digest = _copy_member(zf, info, tmp, url)
                if digest != expected[name].lower():
                    raise DatasetError(
                        f"Checksum mismatch for {name} downloaded from {url}: expected SHA-256 "
                        f"{expected[name]}, got {digest}. The downloaded copy was discarded; the "
                        "file may have been corrupted in transit or changed upstream."
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        _remove(staged.values())
        raise DatasetError(
            f"The file downloaded from {url} is not a valid zip archive ({exc}). "
            "Nothing was cached; try again, or pass --input /path/to/ml-100k/u.data."
        ) from exc
    except BaseException:
        _remove(staged.values())
        raise
    return staged


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, url: str) -> str:
    """Copy one archive member to ``dest`` and return its SHA-256 hex digest."""
    sha = hashlib.sha256()
    size = 0
    with zf.open(info) as src, dest.open("wb") as out:
        while chunk := src.read(_CHUNK):
            size += len(chunk)
            if size > _MAX_MEMBER_BYTES:
                raise DatasetError(
                    f"Member {info.filename} of the archive from {url} is larger than "
                    f"{_MAX_MEMBER_BYTES >> 20} MiB; it is not the MovieLens 100k archive. "
                    "Nothing was cached."
                )
            sha.update(chunk)
            out.write(chunk)
    return sha.hexdigest()


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _temp_path(directory: Path, prefix: str, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(fd)
    return Path(name)


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _download_failed(url: str, exc: BaseException, timeout: float) -> DatasetError:
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, TimeoutError) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError)
    ):
        reason = f"no response within {timeout:g} s"
    elif isinstance(exc, urllib.error.URLError):
        reason = str(exc.reason)
    else:
        reason = str(exc) or type(exc).__name__
    return DatasetError(
        f"Downloading the MovieLens 100k dataset from {url} failed ({reason}). "
        "If this machine has no internet access, download ml-100k.zip yourself, unzip it and "
        "pass --input /path/to/ml-100k/u.data, or use --dataset synthetic for an offline run."
    )


def _unwritable(target: Path, exc: OSError) -> DatasetError:
    return DatasetError(
        f"Cannot write the dataset cache in {target} ({exc.strerror or exc}). Set ALS_SPARK_CACHE "
        "to a writable directory, or pass --input /path/to/ml-100k/u.data to use a local copy."
    )
