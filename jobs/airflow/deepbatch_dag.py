"""Airflow DAG for deepbatch: one SparkSubmitOperator per stage, keyed by the logical date ``{{ ds }}``.

Airflow Variables (Admin -> Variables):

- ``deepbatch_conf``: the conf file the stages read, as the driver sees it (default ``conf/cluster.yaml``);
- ``deepbatch_home``: where the repository's ``jobs/`` folder lives on the Airflow workers
  (default ``/opt/deepbatch``);
- ``deepbatch_env_archive``: the packed Python environment (``make package``) shipped to the
  executors (default ``deepbatch-env.tar.gz``).

The ``spark_default`` connection names the master (``spark://host:7077``, ``yarn`` or
``k8s://...``). Stages are idempotent per run date: a retry or a backfill republishes
that date's partitions exactly, so retries are safe.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

# deepbatch.pipeline.STAGES, in dependency order (a test checks they agree).
STAGES = ("acquire", "clean", "integrate", "analyse", "materialize", "train", "infer")

HOME = "{{ var.value.get('deepbatch_home', '/opt/deepbatch') }}"
CONF = "{{ var.value.get('deepbatch_conf', 'conf/cluster.yaml') }}"
ENV_ARCHIVE = "{{ var.value.get('deepbatch_env_archive', 'deepbatch-env.tar.gz') }}"

default_args = {
    "owner": "deepbatch",
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=6),
}

with DAG(
    dag_id="deepbatch",
    description="deepbatch: acquire -> clean -> integrate -> analyse -> materialize -> train -> infer",
    schedule="@daily",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["deepbatch", "spark"],
) as dag:
    previous = None
    for stage in STAGES:
        task = SparkSubmitOperator(
            task_id=stage,
            conn_id="spark_default",
            application=f"{HOME}/jobs/{stage}.py",
            application_args=["--conf", CONF, "--run-date", "{{ ds }}", "--log-format", "json"],
            name=f"deepbatch-{stage}-{{{{ ds }}}}",
            archives=f"{ENV_ARCHIVE}#env",
            conf={"spark.pyspark.python": "./env/bin/python"},
        )
        if previous is not None:
            previous >> task
        previous = task
