"""Real Spark processes for the deployment tests, started from the pip-installed pyspark.

A standalone cluster (``bin/spark-class ...deploy.master.Master`` and ``...Worker``) and a
Spark Connect server (``sbin/start-connect-server.sh``), bound to 127.0.0.1 on free ports,
each in its own process group so that stopping it leaves nothing behind. Also: a Python
without ``als_spark`` (to prove that executors get the package from ``--py-files``), the
small dataset and settings every deployment runs, the ``spark-submit`` command line, the
local-mode reference run (made once by the ``reference_run`` fixture of tests/conftest.py), and
the comparison of two output directories.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
#: The pip-installed pyspark is a complete SPARK_HOME (bin/, sbin/, jars/).
SPARK_HOME = Path(__import__("pyspark").__file__).resolve().parent

#: What every deployment test runs: small, but 12 iterations so ALS checkpoints (interval 10),
#: and a fixed block count so a fit is the same on any master.
SETTINGS = [
    "--set",
    "als.rank=8",
    "--set",
    "als.max_iter=12",
    "--set",
    "als.num_blocks=2",
    "--set",
    "recommend.top_n=5",
    "--set",
    "similar.top_k=5",
]
TABLES = (
    "dataset_summary",
    "ratings",
    "interactions",
    "items",
    "user_factors",
    "item_factors",
    "recommendations",
    "similar_items",
    "similar_users",
)
#: Start-up and run limits: generous for a loaded 2-core machine, but bounded.
START_TIMEOUT = 180
RUN_TIMEOUT = 900


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_env(workdir: Path, **extra: str) -> dict[str, str]:
    """Environment of a Spark process: this SPARK_HOME, loopback only, logs under ``workdir``."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYSPARK_SUBMIT_ARGS", "MASTER")}
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOCAL_HOSTNAME="localhost",
        SPARK_LOG_DIR=str(workdir / "logs"),
        SPARK_PID_DIR=str(workdir),
        SPARK_NO_DAEMONIZE="1",
        **extra,
    )
    return env


class Service:
    """A long-running Spark process in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args,
                env=env,
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before {what}:\n{self.tail()}")
            if ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.name}: no {what} after {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after 30 s."""
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; make sure no child of it survives
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def get_json(url: str, timeout: float = 5) -> Any:
    """The JSON document at ``url`` (a Spark web UI or REST endpoint)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


@dataclasses.dataclass
class Cluster:
    """A running standalone cluster: its URL, work directory and processes (master first, then workers)."""

    url: str
    workdir: Path
    services: list[Service]

    def executor_processes(self, processes: dict[int, tuple[int, list[str]]] | None = None) -> dict[str, int]:
        """``{"<app id>/<executor id>": pid}`` of the executor JVMs this cluster's workers run now.

        Found from ``/proc`` like ``pgrep -f CoarseGrainedExecutorBackend``, but only the
        processes whose working directory is under this cluster's work directory (a worker
        starts each executor in ``<work-dir>/<app id>/<executor id>``), never another
        cluster's or session's.
        """
        found: dict[str, int] = {}
        workdir = self.workdir.resolve()
        for pid, (_, args) in (processes if processes is not None else process_table()).items():
            if "org.apache.spark.executor.CoarseGrainedExecutorBackend" not in args:
                continue
            try:
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:  # gone meanwhile
                continue
            if workdir in cwd.parents:
                found[f"{args[args.index('--app-id') + 1]}/{args[args.index('--executor-id') + 1]}"] = pid
        return found

    def python_workers(self) -> dict[int, str]:
        """``{pid: "<app id>/<executor id>"}`` of the Python workers running under this cluster's executors.

        An executor starts one ``pyspark.daemon`` and the daemon forks a worker process
        for a Python task (``mapInArrow``, UDFs); with ``spark.python.worker.reuse=false``
        the worker exits with its task, so one exists exactly while a Python task runs.
        """
        processes = process_table()
        executors = {pid: key for key, pid in self.executor_processes(processes).items()}
        daemons = {
            pid: executors[ppid]
            for pid, (ppid, args) in processes.items()
            if ppid in executors and "pyspark.daemon" in args
        }
        return {pid: daemons[ppid] for pid, (ppid, _) in processes.items() if ppid in daemons}


def process_table() -> dict[int, tuple[int, list[str]]]:
    """``{pid: (parent pid, command line)}`` of every process now, read from ``/proc``."""
    table: dict[int, tuple[int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # stat is "pid (command) state ppid ...", and the command may contain spaces or ")"
        table[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), [a for a in args if a])
    return table


@contextlib.contextmanager
def running_cluster(workdir: Path, *, workers: int = 2, cores: int = 1, memory: str = "1536m") -> Iterator[Cluster]:
    """A master and ``workers`` workers on 127.0.0.1; yields the :class:`Cluster`, stops it after."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = spark_env(workdir)
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port, ui = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    services: list[Service] = []
    try:
        master = Service(
            "master",
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
            ],
            env,
            workdir,
        )
        services.append(master)
        master.wait_until(lambda: port_open(port), "master port")
        for i in range(workers):
            worker_dir = workdir / f"worker-{i}"
            worker_dir.mkdir(exist_ok=True)
            services.append(
                Service(
                    f"worker-{i}",
                    [
                        spark_class,
                        "org.apache.spark.deploy.worker.Worker",
                        url,
                        "--host",
                        "127.0.0.1",
                        "--cores",
                        str(cores),
                        "--memory",
                        memory,
                        "--webui-port",
                        str(free_port()),
                        "--work-dir",
                        str(worker_dir),
                    ],
                    env,
                    workdir,
                )
            )

        def all_alive() -> bool:
            try:
                return get_json(f"http://127.0.0.1:{ui}/json/", timeout=2).get("aliveworkers", 0) == workers
            except OSError:
                return False

        master.wait_until(all_alive, f"{workers} registered workers")
        yield Cluster(url, workdir, services)
    finally:
        for service in reversed(services):
            service.stop()


@dataclasses.dataclass(frozen=True)
class Shipped:
    """What a job submitted to a cluster ships: the Python executors run and the package zip."""

    python: Path  #: has every dependency but not ``als_spark`` (:func:`python_without_als_spark`)
    package: Path  #: the ``--py-files`` zip of ``python -m als_spark.package``


def submit_base(master: str, shipped: Shipped, *conf: str) -> list[str]:
    """``spark-submit`` to ``master`` as the README ships it (the zip, a Python without the package,
    loopback, 2 cores), with ``--conf`` ``conf``; the application and its arguments follow."""
    command = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master",
        master,
        "--py-files",
        str(shipped.package),
    ]
    settings = (
        f"spark.pyspark.python={shipped.python}",
        "spark.driver.host=127.0.0.1",
        "spark.driver.bindAddress=127.0.0.1",
        "spark.cores.max=2",
        "spark.ui.enabled=false",
        *conf,
    )
    for setting in settings:
        command += ["--conf", setting]
    return command


def submit_command(master: str, shipped: Shipped, *conf: str, args: list[str]) -> list[str]:
    """``spark-submit`` of ``jobs/run.py args`` for the tests: 1 GB executors and 2 shuffle partitions, then ``conf``."""
    base = submit_base(master, shipped, "spark.executor.memory=1g", "spark.sql.shuffle.partitions=2", *conf)
    return [*base, str(ROOT / "jobs" / "run.py"), *args]


class Driver:
    """A ``spark-submit`` in its own process group whose output is read line by line while it runs.

    The driver's stdout and stderr (Spark's log4j on stderr, the pipeline's Python logging
    relayed by spark-submit) are merged, kept in :attr:`lines` and copied to ``log``.
    """

    def __init__(self, command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.lines: list[str] = []
        self.log = log
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log, "w") as copy:
            for line in self.proc.stdout:
                copy.write(line)
                copy.flush()
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = RUN_TIMEOUT) -> int:
        """Index in :attr:`lines` of the first line at or after ``after`` that matches ``pattern`` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = after
        with self._changed:
            while True:
                for i in range(seen, len(self.lines)):
                    if regex.search(self.lines[i]):
                        return i
                seen = max(seen, len(self.lines))
                if not self._reader.is_alive():
                    raise RuntimeError(
                        f"the driver ended (exit {self.proc.poll()}) without a line matching {pattern!r}:\n"
                        + "\n".join(self.lines[-40:])
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no line matching {pattern!r} after {timeout} s:\n" + "\n".join(self.lines[-40:])
                    )
                self._changed.wait(min(left, 1.0))

    def find(self, pattern: str, *, after: int = 0) -> int | None:
        """Index of the first line at or after ``after`` matching ``pattern`` so far, or ``None``."""
        regex = re.compile(pattern)
        with self._changed:
            return next((i for i in range(after, len(self.lines)) if regex.search(self.lines[i])), None)

    def line_count(self) -> int:
        with self._changed:
            return len(self.lines)

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        """The exit code, once the driver has exited and all its output is read."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        self._reader.join(60)
        return code

    def stop(self) -> None:
        """SIGKILL the driver's whole process group (spark-submit, its JVM and Python) if still running."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


@contextlib.contextmanager
def connect_server(workdir: Path, *, checkpoint_dir: Path | None, conf: dict[str, str] | None = None) -> Iterator[str]:
    """``sbin/start-connect-server.sh`` on 127.0.0.1 (``local[2]``); yields the ``sc://`` URL.

    Its Python workers run this interpreter, which has ``als_spark``: on a real
    server the package is installed the same way (a cluster library on Databricks).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "spark.master": "local[2]",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.sql.session.timeZone": "UTC",
        **({"spark.checkpoint.dir": str(checkpoint_dir)} if checkpoint_dir else {}),
        **(conf or {}),
    }
    args = [str(SPARK_HOME / "sbin" / "start-connect-server.sh"), "--wait"]
    for key, value in settings.items():
        args += ["--conf", f"{key}={value}"]
    server = Service("connect-server", args, spark_env(workdir, PYSPARK_PYTHON=sys.executable), workdir)
    try:
        server.wait_until(
            lambda: "Spark Connect server started" in server.log.read_text(errors="replace") and port_open(port),
            "Spark Connect server",
        )
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.stop()


def read_event_log(directory: Path) -> list[dict[str, Any]]:
    """The events of the one application that logged to ``directory`` (``spark.eventLog.dir``,
    uncompressed, not rolled), in the order the driver's listener bus saw them."""
    (log,) = [p for p in directory.iterdir() if not p.name.startswith(".")]
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def python_without_als_spark(workdir: Path) -> Path:
    """A Python that has every dependency (numpy, pyarrow, pyspark, ...) but not ``als_spark``.

    A venv whose only ``.pth`` line is this environment's site-packages: listed as a
    plain path, that directory's own ``.pth`` files (the editable install of
    ``als_spark``) are not run. It stands for a cluster's Python, where the package
    has to arrive with the job.
    """
    venv = workdir / "python-without-als-spark"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        site = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin" / "python"


def write_dataset(directory: Path, n_ratings: int = 20_000) -> Path:
    """The synthetic dataset as MovieLens ``u.data`` + ``u.item``; returns the ``u.data`` path."""
    from als_spark import synthetic

    return synthetic.write_movielens(synthetic.generate_for_size(n_ratings, seed=7), directory) / "u.data"


def expected_summary(liked: pd.DataFrame) -> pd.DataFrame:
    """``dataset_summary`` computed by hand from the kept interactions (``user_id``, ``item_id`` columns)."""
    per_user, per_item = liked.groupby("user_id").size(), liked.groupby("item_id").size()
    return pd.DataFrame(
        {
            "total_users": [len(per_user)],
            "total_items": [len(per_item)],
            "avg_ratings_per_user": [len(liked) / len(per_user)],
            "avg_ratings_per_item": [len(liked) / len(per_item)],
            "max_ratings_per_user": [per_user.max()],
            "max_ratings_per_item": [per_item.max()],
            "min_ratings_per_user": [per_user.min()],
            "min_ratings_per_item": [per_item.min()],
        }
    )


def read_table(output: Path, name: str) -> pd.DataFrame:
    df = pd.read_parquet(output / name)
    keys = [c for c in df.columns if c not in ("features", "score", "similarity", "title", "similar_title")][:3]
    return df.sort_values(keys).reset_index(drop=True)


def assert_same_outputs(got: Path, expected: Path, *, atol: float = 1e-4) -> None:
    """Every table of two runs is the same: exact for data, ids and ranks; factors and scores within ``atol``.

    ALS with the same seed and block count gives the same factors on any master, up to the
    order of floating-point sums; so rankings are compared exactly only where the scores
    are not within ``atol`` of a tie.
    """
    for name in TABLES:
        a, b = read_table(got, name), read_table(expected, name)
        assert list(a.columns) == list(b.columns), name
        assert len(a) == len(b), (name, len(a), len(b))
        if name.endswith("_factors"):
            assert a["id"].tolist() == b["id"].tolist(), name
            np.testing.assert_allclose(np.stack(a["features"]), np.stack(b["features"]), atol=atol, err_msg=name)
        elif name in ("recommendations", "similar_items", "similar_users"):
            key, value = a.columns[0], "score" if "score" in a else "similarity"
            assert a[key].tolist() == b[key].tolist() and a["rank"].tolist() == b["rank"].tolist(), name
            np.testing.assert_allclose(a[value].to_numpy(), b[value].to_numpy(), atol=atol, err_msg=name)
            other = a.columns[2]
            differs = a[other].to_numpy() != b[other].to_numpy()
            # a different id at a rank is only allowed where two candidates (near-)tie
            assert np.all(np.abs(a[value].to_numpy()[differs] - b[value].to_numpy()[differs]) <= atol), name
        else:
            pd.testing.assert_frame_equal(a, b, obj=name)


@dataclasses.dataclass(frozen=True)
class Reference:
    """The undisturbed local-mode run that every deployment is compared with."""

    data: Path  #: the ``u.data`` every deployment runs (:func:`write_dataset`)
    output: Path  #: its output, from ``als-spark run`` with :data:`SETTINGS` on the test session


def run_reference(base: Path) -> Reference:
    """Run the pipeline in local mode on the active (test) session; the ``reference_run`` fixture makes it once."""
    from als_spark.cli import main

    data = write_dataset(base / "data")
    out = base / "local"
    assert main(["run", "--input", str(data), "--output", str(out), *SETTINGS, "--log-level", "WARNING"]) == 0
    return Reference(data, out)
