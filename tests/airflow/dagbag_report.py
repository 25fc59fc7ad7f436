"""Run under the Airflow venv: load the DAG folder with DagBag and print what it holds as JSON.

    .venv-airflow/bin/python tests/airflow/dagbag_report.py jobs/airflow
"""

import json
import sys

try:  # Airflow 3
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2
    from airflow.models.dagbag import DagBag


def attr(task, name):
    return getattr(task, name, getattr(task, f"_{name}", None))


bag = DagBag(dag_folder=sys.argv[1])
report = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    report["dags"][dag_id] = {
        "schedule": str(getattr(dag, "schedule", None)),
        "catchup": getattr(dag, "catchup", None),
        "max_active_runs": getattr(dag, "max_active_runs", None),
        "tasks": {
            t.task_id: {
                "type": type(t).__name__,
                "upstream": sorted(t.upstream_task_ids),
                "retries": t.retries,
                "application": attr(t, "application"),
                "application_args": list(attr(t, "application_args") or []),
                "conn_id": attr(t, "conn_id"),
                "archives": attr(t, "archives"),
                "conf": dict(attr(t, "conf") or {}),
            }
            for t in dag.tasks
        },
    }
print(json.dumps(report))
