"""Deployment files: the Databricks bundle and notebook, the Airflow DAG, the --py-files zip, reruns.

The bundle cannot be deployed from here (no workspace), so the tests check what a deploy
depends on: the wheel its build command makes has the entry point the job names and keeps
pyspark optional; every job parameter the task uses exists; the task's command line is one
the CLI accepts; the schedule is paused in the development target. The notebook is executed
cell by cell against a local run's output, with ``dbutils`` and ``display`` stood in for.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pandas as pd
import pytest
import yaml
from spark_services import ROOT, read_table, write_dataset

import als_spark
from als_spark import cli
from als_spark.config import load_config
from als_spark.package import build_zip, sources

BUNDLE = ROOT / "databricks.yml"
NOTEBOOK = ROOT / "jobs" / "databricks" / "als_spark_explore.py"
WALKTHROUGH = ROOT / "jobs" / "databricks" / "als_spark_walkthrough.py"
DAG = ROOT / "jobs" / "airflow" / "als_spark_dag.py"
RUN_DATE = "2026-11-29"


def _bundle() -> tuple[dict, dict[str, tuple[Path, dict]]]:
    """The bundle's root document and its jobs, each with the file that defines it."""
    root = yaml.safe_load(BUNDLE.read_text())
    jobs: dict[str, tuple[Path, dict]] = {}
    for pattern in root.get("include", []):
        for path in sorted(ROOT.glob(pattern)):
            for name, job in yaml.safe_load(path.read_text()).get("resources", {}).get("jobs", {}).items():
                jobs[name] = (path, job)
    return root, jobs


def _wheel_tasks(jobs: dict[str, tuple[Path, dict]]) -> list[tuple[Path, dict, dict]]:
    return [(path, job, task) for path, job in jobs.values() for task in job["tasks"] if "python_wheel_task" in task]


def _render(value: str, root: dict, job: dict) -> str:
    """Resolve ``${var.X}`` (bundle variables) and ``{{job.parameters.X}}`` / ``{{job.start_time.iso_date}}``."""

    def var(m: re.Match) -> str:
        return str(root["variables"][m.group(1)]["default"])

    def dynamic(m: re.Match) -> str:
        ref = m.group(1).strip()
        if ref == "job.start_time.iso_date":
            return RUN_DATE
        if ref.startswith("job.parameters."):
            params = {p["name"]: p["default"] for p in job["parameters"]}
            return _render(str(params[ref.removeprefix("job.parameters.")]), root, job)
        raise AssertionError(f"unexpected dynamic value reference {{{{{ref}}}}}")

    return re.sub(r"\{\{([^}]+)\}\}", dynamic, re.sub(r"\$\{var\.(\w+)\}", var, value))


def test_bundle_job_runs_the_cli_entry_point_with_parameters_it_accepts():
    root, jobs = _bundle()
    tasks = _wheel_tasks(jobs)
    assert tasks, "the bundle has no python_wheel_task"
    for _, job, task in tasks:
        wheel = task["python_wheel_task"]
        # the installed distribution's metadata has the entry point, and it is the CLI's
        eps = {ep.name: ep for ep in importlib.metadata.distribution(wheel["package_name"]).entry_points}
        assert eps[wheel["entry_point"]].load() is cli.entry_point
        declared = {p["name"] for p in job["parameters"]}
        used = set(re.findall(r"\{\{\s*job\.parameters\.(\w+)\s*\}\}", yaml.safe_dump(task)))
        assert used and used <= declared, used - declared
        argv = [_render(str(a), root, job) for a in wheel["parameters"]]
        args = cli.build_parser().parse_args(argv)
        assert args.command == "run"
        assert args.input == root["variables"]["input"]["default"]
        assert args.output == f"{root['variables']['output_root']['default']}/run_date={RUN_DATE}"
        # every --set names a configuration key that exists
        load_config(args.config, args.overrides)


def test_bundle_installs_the_wheel_its_artifact_builds_and_the_notebook_exists():
    root, jobs = _bundle()
    (artifact,) = root["artifacts"].values()
    assert artifact["type"] == "whl" and "--wheel-dir dist" in artifact["build"]
    for path, job in jobs.values():
        for task in job["tasks"]:
            for library in task.get("libraries", []):
                # relative to the resource file: the bundle root's dist/, where the artifact goes
                assert (path.parent / library["whl"]).resolve().parent == (ROOT / "dist").resolve()
            if "notebook_task" in task:
                notebook = path.parent / task["notebook_task"]["notebook_path"]
                assert notebook.resolve() == NOTEBOOK.resolve()
                # job parameters reach the notebook as widgets; with job parameters, the API
                # rejects task base_parameters
                assert "base_parameters" not in task["notebook_task"]
                widgets = set(re.findall(r'dbutils\.widgets\.text\("(\w+)"', NOTEBOOK.read_text()))
                assert widgets == {"output_root", "run_date", "user_id", "item_id"}
                assert widgets <= {p["name"] for p in job["parameters"]}


def test_bundle_schedule_is_paused_in_development_and_runs_in_production():
    root, jobs = _bundle()
    for name, (_, job) in jobs.items():
        if "schedule" not in job:
            continue
        assert job["schedule"]["pause_status"] == "PAUSED"
        dev, prod = root["targets"]["dev"], root["targets"]["prod"]
        assert dev["default"] is True and dev["mode"] == "development"
        assert dev["resources"]["jobs"][name]["schedule"]["pause_status"] == "PAUSED"
        assert prod["resources"]["jobs"][name]["schedule"]["pause_status"] == "UNPAUSED"


@pytest.mark.slow
def test_the_bundle_build_makes_a_wheel_with_the_entry_point_and_pyspark_optional(tmp_path):
    root, jobs = _bundle()
    (artifact,) = root["artifacts"].values()
    # the artifact's own build command, on a copy of what it packages
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "als_spark", tmp_path / "als_spark", ignore=shutil.ignore_patterns("__pycache__"))
    command = shlex.split(artifact["build"])
    command[0] = sys.executable if command[0] == "python" else command[0]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        info = next(n.split("/")[0] for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        entry_points = configparser.ConfigParser()
        entry_points.read_string(zf.read(f"{info}/entry_points.txt").decode())
        metadata = zf.read(f"{info}/METADATA").decode()
    for _, _, task in _wheel_tasks(jobs):
        assert wheel.name.startswith(f"{task['python_wheel_task']['package_name']}-{als_spark.__version__}-")
        assert entry_points["console_scripts"][task["python_wheel_task"]["entry_point"]] == "als_spark.cli:entry_point"
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    # installing the wheel on a Databricks runtime never replaces its Spark
    assert all("extra ==" in line for line in requires if "pyspark" in line), requires
    assert any("pyspark" in line for line in requires)


@pytest.mark.slow
def test_notebook_shows_a_users_and_a_movies_answers_with_titles(spark, reference_run):
    out = reference_run.output
    recs, sim_items = read_table(out, "recommendations"), read_table(out, "similar_items")
    user, item = int(recs["user_id"].min()), int(sim_items["item_id"].min())

    source = NOTEBOOK.read_text()
    assert source.startswith("# Databricks notebook source\n")
    values: dict[str, str] = {}
    widgets = SimpleNamespace(
        text=lambda name, default, label=None: values.setdefault(name, default),
        get=lambda name: values[name],
    )
    # as a job run sets them: <output_root>/run_date=<run_date> is the run's output
    dated = out.parent / f"run_date={RUN_DATE}"
    if not dated.exists():
        dated.symlink_to(out.name)
    values.update(output_root=str(out.parent), run_date=RUN_DATE, user_id=str(user), item_id=str(item))
    shown: list = []
    namespace = {"dbutils": SimpleNamespace(widgets=widgets), "display": shown.append, "__name__": "__main__"}
    for cell in source.split("\n# COMMAND ----------\n"):
        exec(compile(cell, str(NOTEBOOK), "exec"), namespace)  # noqa: S102 - the notebook under test

    summary, liked, user_recs, user_neighbours, item_neighbours = shown
    assert summary.count() == 1
    liked = liked.toPandas()
    interactions = read_table(out, "interactions")
    assert sorted(liked["item_id"]) == sorted(interactions[interactions.user_id == user]["item_id"])
    titles = dict(zip(read_table(out, "items")["item_id"], read_table(out, "items")["title"]))
    assert liked["title"].tolist() == [titles[i] for i in liked["item_id"]]
    want = recs[recs.user_id == user].drop(columns="user_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(user_recs.reset_index(drop=True), want, check_dtype=False)
    assert user_recs["title"].tolist() == [titles[i] for i in user_recs["item_id"]]
    assert len(user_neighbours) == 5 and user not in set(user_neighbours["similar_user_id"])
    assert item_neighbours["similar_title"].tolist() == [titles[i] for i in item_neighbours["similar_item_id"]]


def _run_notebook(path: Path, values: dict[str, str]) -> tuple[dict, list]:
    """Execute a Databricks source notebook cell by cell with ``dbutils.widgets`` set to ``values``;
    its namespace and what it passed to ``display``."""
    source = path.read_text()
    assert source.startswith("# Databricks notebook source\n")
    widgets = SimpleNamespace(
        text=lambda name, default, label=None: values.setdefault(name, default),
        get=lambda name: values[name],
    )
    shown: list = []
    namespace = {"dbutils": SimpleNamespace(widgets=widgets), "display": shown.append, "__name__": "__main__"}
    for cell in source.split("\n# COMMAND ----------\n"):
        exec(compile(cell, str(path), "exec"), namespace)  # noqa: S102 - the notebook under test
    return namespace, shown


@pytest.mark.slow
def test_the_walkthrough_answers_the_reference_notebooks_questions_by_its_indexes(spark, tmp_path):
    from als_spark import synthetic
    from als_spark.analysis import compare

    # A MovieLens file whose rows are not in id order, as u.data's are not: the notebook's
    # indexes (pd.factorize of the rows rated >= 4, in file order) then differ from sorted ids.
    folder = tmp_path / "ml"
    synthetic.write_movielens(synthetic.generate(n_users=40, n_items=30, n_ratings=900, n_groups=2, seed=5), folder)
    data = pd.read_csv(folder / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    data = data.sample(frac=1, random_state=1)
    data.to_csv(folder / "u.data", sep="\t", header=False, index=False)
    liked = data[data.rating >= 4]
    users, items = pd.factorize(liked.user)[1], pd.factorize(liked.item)[1]
    want = {"user_0": users[0], "user_10": users[10], "movie_100": None}
    assert (users[0], users[10]) != tuple(sorted(set(liked.user))[i] for i in (0, 10))
    out = tmp_path / "out"
    values = {"input": str(folder / "u.data"), "output": str(out), "rank": "3", "max_iter": "3"}
    values.update(big_rank="8", big_max_iter="3", seeds="2")
    # 30 items: the notebook's movie index 100 does not exist here, so ask for index 20 instead
    source = WALKTHROUGH.read_text().replace("movie_ids[100]", "movie_ids[20]")
    replay = tmp_path / "walkthrough.py"
    replay.write_text(source)
    want["movie_100"] = items[20]

    namespace, shown = _run_notebook(replay, values)
    assert {name: namespace[name] for name in want} == want
    summary, recommendations, similar_movies, similar_users, verdicts = shown
    pd.testing.assert_frame_equal(summary.toPandas(), pd.read_parquet(out / "dataset_summary"))
    recs = read_table(out, "recommendations")
    expected = recs[recs.user_id == want["user_0"]].drop(columns="user_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(recommendations.reset_index(drop=True), expected, check_dtype=False)
    assert recommendations["rank"].tolist() == list(range(1, 11))
    assert not set(recommendations["item_id"]) & set(liked[liked.user == want["user_0"]].item)  # liked: left out
    assert want["movie_100"] not in set(similar_movies["similar_item_id"]) and len(similar_movies) == 10
    assert len(similar_users) == 5 and want["user_10"] not in set(similar_users["similar_user_id"])
    sims = read_table(out, "similar_users")
    assert (
        similar_users["similar_user_id"].tolist()
        == sims[sims.user_id == want["user_10"]]["similar_user_id"][:5].tolist()
    )
    assert verdicts["table"].tolist() == ["recommendations", "similar_items", "similar_users"]
    assert set(verdicts["verdict"]) <= {compare.DIFFERENT, compare.NOT_DISTINGUISHABLE}
    # its settings are conf/seed-notebook.yaml's
    assert namespace["notebook_config"](50, 15) == load_config(ROOT / "conf" / "seed-notebook.yaml")


def _load_dag(monkeypatch, **env: str):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("als_spark_dag", DAG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The DAG's settings in the two tests below (this checkout as ALS_SPARK_HOME), and the command line they give.
DAG_ENV = {"ALS_SPARK_HOME": str(ROOT), "ALS_SPARK_DATA": "/data/als", "ALS_SPARK_PYTHON": "/opt/als/bin/python"}
DAG_ARGS = [
    "--input",
    "/data/als/input/u.data",
    "--output",
    "/data/als/out/run_date={{ ds }}",
    "--config",
    f"{ROOT}/conf/default.yaml",
    "--set",
    "als.checkpoint_dir=/data/als/checkpoints/run_date={{ ds }}",
    "--log-level",
    "INFO",
]


def test_airflow_dag_imports_without_airflow_and_its_command_line_is_one_the_cli_accepts(monkeypatch, tmp_path):
    # As on a machine without Airflow, whether or not this one has it: both imports fail.
    monkeypatch.setitem(sys.modules, "airflow", None)
    monkeypatch.setitem(sys.modules, "airflow.sdk", None)
    dag = _load_dag(monkeypatch, **DAG_ENV)
    assert dag.DAG is None and not hasattr(dag, "dag")  # the operator is not built
    assert dag.APPLICATION_ARGS == DAG_ARGS
    # what SparkSubmitOperator runs: spark-submit [--conf k=v ...] --py-files ZIP APPLICATION ARGS
    rendered = [a.replace("{{ ds }}", RUN_DATE) for a in dag.APPLICATION_ARGS]
    args = cli.build_parser().parse_args(["run", *rendered])
    assert args.output == f"/data/als/out/run_date={RUN_DATE}"
    load_config(args.config, args.overrides)  # conf/default.yaml and every --set exist
    assert Path(dag.APPLICATION).is_file()  # jobs/run.py, which prepends the `run` command
    assert als_spark.__version__ == dag.VERSION
    assert f"{ROOT}/dist/{build_zip(tmp_path).name}" == dag.PY_FILES  # the zip `python -m als_spark.package` builds


def test_airflow_dag_gives_the_operator_that_command_line(monkeypatch):
    # Airflow stood in for by modules that record what the DAG file builds.
    built: dict[str, dict] = {}

    class StubDAG:
        def __init__(self, **kwargs):
            built["dag"] = kwargs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class StubSparkSubmitOperator:
        def __init__(self, **kwargs):
            built.setdefault("tasks", []).append(kwargs)

    parents = (
        "airflow",
        "airflow.providers",
        "airflow.providers.apache",
        "airflow.providers.apache.spark",
        "airflow.providers.apache.spark.operators",
    )
    for name in parents:
        monkeypatch.setitem(sys.modules, name, ModuleType(name))
    sdk = ModuleType("airflow.sdk")  # Airflow 3's
    sdk.DAG = StubDAG
    operators = ModuleType("airflow.providers.apache.spark.operators.spark_submit")
    operators.SparkSubmitOperator = StubSparkSubmitOperator
    for module in (sdk, operators):
        monkeypatch.setitem(sys.modules, module.__name__, module)

    dag = _load_dag(monkeypatch, **DAG_ENV)
    assert dag.DAG is StubDAG and isinstance(dag.dag, StubDAG)
    assert {key: built["dag"][key] for key in ("dag_id", "schedule", "catchup", "max_active_runs")} == {
        "dag_id": "als_spark_daily",
        "schedule": "0 3 * * *",
        "catchup": False,
        "max_active_runs": 1,
    }
    (task,) = built["tasks"]
    assert {key: task[key] for key in ("application", "py_files", "conf", "application_args")} == {
        "application": f"{ROOT}/jobs/run.py",
        "py_files": f"{ROOT}/dist/als_spark-{als_spark.__version__}.zip",
        "conf": {"spark.pyspark.python": "/opt/als/bin/python", "spark.sql.adaptive.enabled": "true"},
        "application_args": DAG_ARGS,
    }


def test_py_files_zip_is_reproducible_and_holds_every_module(tmp_path):
    first = build_zip(tmp_path / "a")
    second = build_zip(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert names == [p.as_posix() for p in sources()]
    # subpackages included (the CLI and the analysis modules are packages of their own)
    assert {
        "als_spark/__init__.py",
        "als_spark/cli/__init__.py",
        "als_spark/analysis/__init__.py",
        "als_spark/topk.py",
    } <= set(names)
    assert not any("__pycache__" in n for n in names)


@pytest.mark.integration  # the CLI in process, twice
@pytest.mark.slow
def test_rerunning_a_run_date_rewrites_the_same_output(spark, tmp_path):
    data = write_dataset(tmp_path / "data", n_ratings=3000)
    out = tmp_path / "out" / f"run_date={RUN_DATE}"
    argv = [
        "run",
        "--input",
        str(data),
        "--output",
        str(out),
        "--set",
        "als.rank=4",
        "--set",
        "als.max_iter=3",
        "--set",
        "als.num_blocks=2",
        "--log-level",
        "WARNING",
    ]
    assert cli.main(argv) == 0
    first = {
        name: read_table(out, name) for name in ("interactions", "user_factors", "recommendations", "similar_items")
    }
    listing = sorted(p.name for p in out.iterdir())
    assert cli.main(argv) == 0  # the retry of the same day
    assert sorted(p.name for p in out.iterdir()) == listing
    for name, table in first.items():
        pd.testing.assert_frame_equal(read_table(out, name), table, obj=name)
    assert sorted(p.name for p in out.parent.iterdir()) == [f"run_date={RUN_DATE}"]
