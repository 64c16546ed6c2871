"""Airflow DAG: the als-spark pipeline once a day with ``SparkSubmitOperator``.

Each run writes ``$ALS_SPARK_DATA/out/run_date=<ds>/``: the run's logical date names its
output, so a retry, a cleared task or a backfill of a day rewrites that day's tables and
no other. The command line is the one the README gives for spark-submit, and
``tests/test_deploy.py`` parses it with the CLI's own parser.

Deploy: copy this file to the DAGs folder; on the Airflow worker, install
``apache-airflow-providers-apache-spark``, set the ``spark_default`` connection to the
cluster's master (e.g. ``spark://spark-master:7077``), and set ``ALS_SPARK_HOME`` to a
checkout of this repository with ``dist/`` built by ``python -m als_spark.package --output dist``.
The cluster's Python (``ALS_SPARK_PYTHON``) needs numpy, pyarrow and pyyaml; the package itself
travels in the zip. The module imports without Airflow (the operator is then not built), so
the command line can be checked anywhere.
"""

from __future__ import annotations

import datetime as dt
import os

#: A checkout of this repository on the Airflow worker (jobs/, conf/, dist/).
ALS_SPARK_HOME = os.environ.get("ALS_SPARK_HOME", "/opt/als-spark")
#: Input and output storage, as the cluster sees it (a shared file system, HDFS, S3, ...).
ALS_SPARK_DATA = os.environ.get("ALS_SPARK_DATA", "/data/als-spark")
#: The Python of the driver and the executors.
ALS_SPARK_PYTHON = os.environ.get("ALS_SPARK_PYTHON", "/opt/als-spark/.venv/bin/python")
VERSION = "0.1.0"  # the version of the zip in dist/ (als_spark.__version__)

APPLICATION = f"{ALS_SPARK_HOME}/jobs/run.py"
PY_FILES = f"{ALS_SPARK_HOME}/dist/als_spark-{VERSION}.zip"
CONF = {
    "spark.pyspark.python": ALS_SPARK_PYTHON,
    "spark.sql.adaptive.enabled": "true",
}
#: ``als-spark run`` options; ``{{ ds }}`` is the run's logical date (YYYY-MM-DD).
APPLICATION_ARGS = [
    "--input",
    f"{ALS_SPARK_DATA}/input/u.data",
    "--output",
    f"{ALS_SPARK_DATA}/out/run_date={{{{ ds }}}}",
    "--config",
    f"{ALS_SPARK_HOME}/conf/default.yaml",
    # ALS checkpoints on storage every node sees, one directory per run date
    "--set",
    f"als.checkpoint_dir={ALS_SPARK_DATA}/checkpoints/run_date={{{{ ds }}}}",
    "--log-level",
    "INFO",
]

try:  # Airflow 3, then Airflow 2
    from airflow.sdk import DAG
except ImportError:
    try:
        from airflow import DAG
    except ImportError:
        DAG = None  # type: ignore[assignment,misc]

if DAG is not None:
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    with DAG(
        dag_id="als_spark_daily",
        schedule="0 3 * * *",
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=15)},
        tags=["als-spark"],
    ) as dag:
        SparkSubmitOperator(
            task_id="als_spark_run",
            conn_id="spark_default",
            application=APPLICATION,
            py_files=PY_FILES,
            conf=CONF,
            application_args=APPLICATION_ARGS,
            name="als-spark-{{ ds_nodash }}",
            execution_timeout=dt.timedelta(hours=2),
        )
