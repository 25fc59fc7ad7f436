"""The Airflow DAG, loaded by Airflow's own DagBag in the Airflow venv that `make setup` builds."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from deepbatch.pipeline import STAGES
from tests.conftest import REPO

pytestmark = pytest.mark.unit

AIRFLOW_PY = REPO / ".venv-airflow" / "bin" / "python"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    if not AIRFLOW_PY.exists():
        pytest.fail(f"{AIRFLOW_PY} is missing: run `make setup`, which installs Airflow for this test")
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "jobs" / "airflow")}
    out = subprocess.run([str(AIRFLOW_PY), str(REPO / "tests" / "airflow" / "dagbag_report.py"), str(REPO / "jobs" / "airflow")],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_dag_imports_cleanly(report) -> None:
    assert report["import_errors"] == {}
    assert list(report["dags"]) == ["deepbatch"]


def test_one_spark_submit_per_stage_in_pipeline_order(report) -> None:
    dag = report["dags"]["deepbatch"]
    tasks = dag["tasks"]
    assert set(tasks) == set(STAGES)
    for before, after in zip(STAGES, STAGES[1:], strict=False):
        assert tasks[after]["upstream"] == [before]
    assert tasks[STAGES[0]]["upstream"] == []
    assert all(t["type"] == "SparkSubmitOperator" for t in tasks.values())
    assert dag["schedule"] == "@daily" and dag["catchup"] is False and dag["max_active_runs"] == 1


def test_each_task_submits_its_job_for_the_logical_date_with_the_conf_variable(report) -> None:
    for stage, t in report["dags"]["deepbatch"]["tasks"].items():
        assert t["application"].endswith(f"/jobs/{stage}.py")
        args = t["application_args"]
        assert args[args.index("--run-date") + 1] == "{{ ds }}"
        assert "var.value.get('deepbatch_conf'" in args[args.index("--conf") + 1]
        assert t["retries"] >= 1 and t["conn_id"] == "spark_default"
        assert t["archives"].endswith("#env") and t["conf"]["spark.pyspark.python"] == "./env/bin/python"
        assert (REPO / "jobs" / f"{stage}.py").is_file()
