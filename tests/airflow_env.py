"""The Airflow of tests/test_airflow.py: a venv at ``build/venv-airflow`` with tests/airflow-requirements.txt.

Airflow gets a venv of its own: its hundred-odd pinned dependencies must not meet the project's.
:func:`ensure` builds the venv if it is missing or was built from other requirements (the
SHA-256 of the requirements file is kept in the venv, written once the install has succeeded,
so a venv whose build was interrupted counts as missing), and returns at once otherwise. A
lock file makes a second caller wait for a build in progress and then use it, so the venv can
be built ahead, in the background, while other tests run::

    python tests/airflow_env.py    # build build/venv-airflow if needed, then exit

A build makes the venv, has its pip install the file's ``uv==`` line and uv install the whole file
(17 s from empty pip and uv caches on 2 cores; pip alone took 90 s, warm cache or not). Beside
the venv: ``venv-airflow.log``, the last build's output, and ``venv-airflow.lock``.
Standard library only; the venv is made from the Python that runs this, which must be 3.11 or
later (the pins are what pip resolved on 3.11: numpy 2.4 and pandas 3 need it).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = Path(__file__).resolve().with_name("airflow-requirements.txt")
VENV = ROOT / "build" / "venv-airflow"
#: Inside the venv: the SHA-256 of the requirements it was built from.
STAMP = ".requirements-sha256"
#: Seconds for each step of a build: far more than a build takes, to bound a stuck download.
BUILD_TIMEOUT = 900


@dataclasses.dataclass(frozen=True)
class AirflowEnv:
    """The venv, ready: its ``bin/`` (``airflow``, ``python``), and what :func:`ensure` did."""

    bin: Path
    built: bool  #: built (or rebuilt) by this call, rather than found up to date
    seconds: float  #: time this call took, waiting for another's build included


def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def up_to_date(venv: Path = VENV, requirements: Path = REQUIREMENTS) -> bool:
    """Whether ``venv`` was completely built from ``requirements`` as they are now and its Python still runs."""
    stamp = venv / STAMP
    return (
        stamp.is_file()
        and stamp.read_text().strip() == requirements_hash(requirements)
        # exists() follows the symlink: false once the Python the venv was made from is gone
        and (venv / "bin" / "python").exists()
        and (venv / "bin" / "airflow").is_file()
    )


def ensure(venv: Path = VENV, requirements: Path = REQUIREMENTS) -> AirflowEnv:
    """Build ``venv`` from ``requirements`` unless it is up to date; raises with the installers' output if a step fails."""
    start = time.monotonic()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        built = not up_to_date(venv, requirements)
        if built:
            _build(venv, requirements)
    return AirflowEnv(bin=venv / "bin", built=built, seconds=time.monotonic() - start)


def installer(requirements: Path = REQUIREMENTS) -> str:
    """The requirements file's ``uv==X`` line: what pip installs first, to install the rest."""
    (line,) = [line for line in requirements.read_text().splitlines() if line.startswith("uv==")]
    return line


def _build(venv: Path, requirements: Path) -> None:
    digest = requirements_hash(requirements)  # of the file as installed, should it change meanwhile
    shutil.rmtree(venv, ignore_errors=True)
    log = venv.with_name(venv.name + ".log")
    python = str(venv / "bin" / "python")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            installer(requirements),
        ],
        # --no-config: no uv.toml or [tool.uv] of this checkout or the user's changes what is installed
        [str(venv / "bin" / "uv"), "pip", "install", "--no-config", "--python", python, "-r", str(requirements)],
    ]
    failed = 0
    with open(log, "w") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            failed = subprocess.run(
                step, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=BUILD_TIMEOUT
            ).returncode
            if failed:
                break
    if failed:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"building {venv} failed (exit {failed}); {log}:\n{tail}")
    (venv / STAMP).write_text(digest + "\n")


if __name__ == "__main__":
    env = ensure()
    print(f"{env.bin.parent}: {'built' if env.built else 'up to date'} in {env.seconds:.1f} s")
