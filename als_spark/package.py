"""Build the zip that ``spark-submit --py-files`` ships to executors.

``--py-files`` takes ``.py``, ``.zip`` and ``.egg`` files, not wheels: a wheel
given there is copied to the executors but not put on their ``sys.path`` (PySpark
adds only ``.zip``, ``.egg`` and ``.jar`` files), and the first task that
unpickles an ``als_spark`` function fails with ``ModuleNotFoundError``. This module zips the ``als_spark`` package itself,
reproducibly (sorted entries, fixed timestamps and permissions): the same
sources give the same bytes, so a cluster's cached copy is replaced only when
the code changed. Dependencies (numpy, pyarrow, pyyaml, pandas) are not in it:
they come from the Python that ``spark.pyspark.python`` names, or from a packed
environment shipped with ``--archives``.

    python -m als_spark.package --output dist/    # prints dist/als_spark-<version>.zip
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import als_spark

#: 1980-01-01, the earliest date a zip entry can carry.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def sources(package_dir: Path | None = None) -> list[Path]:
    """The package's ``.py`` files (no caches), sorted, relative to its parent directory."""
    root = Path(package_dir or Path(als_spark.__file__).parent)
    files = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(p.relative_to(root.parent) for p in files)


def build_zip(output_dir: str | os.PathLike[str] = "dist", *, package_dir: Path | None = None) -> Path:
    """Write ``output_dir/als_spark-<version>.zip`` and return its path.

    Entries are ``als_spark/...``, so the zip itself goes on ``sys.path``.
    """
    root = Path(package_dir or Path(als_spark.__file__).parent)
    target = Path(output_dir) / f"als_spark-{als_spark.__version__}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in sources(root):
            info = zipfile.ZipInfo(rel.as_posix(), date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (root.parent / rel).read_bytes())
    os.replace(tmp, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m als_spark.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="dist", metavar="DIR", help="directory for the zip (default: dist)")
    args = parser.parse_args(argv)
    print(build_zip(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
