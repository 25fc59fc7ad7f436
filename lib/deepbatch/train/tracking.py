"""Log a finished training run to MLflow (local file store under the data root by default)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PUBLISHED_TAG = "deepbatch.published"  # pending while the train commit runs; then true, or false with the run FAILED


def default_tracking_uri(data_root: str) -> str:
    if "://" in data_root:
        return f"{data_root.rstrip('/')}/mlruns"
    return "file:" + str(Path(data_root, "mlruns").resolve())


def log_to_mlflow(tracking_uri: str, summary: dict[str, Any], model_dir: Path) -> str | None:
    """One MLflow run per training run: params, per-epoch metrics, test metrics, the model folder."""
    try:
        import mlflow
    except ImportError:
        log.warning("mlflow is not installed; the run is recorded in %s only", model_dir)
        return None
    # MLflow sets its own logger to INFO when imported ("Experiment ... does not exist. Creating ...").
    if logging.getLogger("deepbatch").getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    # MLflow 3 keeps the file store in maintenance mode and refuses it unless asked; a local
    # file store needs no server, which is what a laptop or a scheduled batch job wants.
    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    metrics = json.loads((model_dir / "metrics.json").read_text())
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"deepbatch-{summary['task']}")
    # The run is logged before the train commit publishes the model folder: it says so until mark_published.
    tags = {"deepbatch.commit_id": summary.get("commit_id", ""), PUBLISHED_TAG: "pending"}
    with mlflow.start_run(run_name=f"{summary['task']}-{summary['run_date']}", tags=tags) as run:
        mlflow.log_params({**{f"hp.{k}": v for k, v in metrics["hparams"].items()},
                           "launcher": summary["launcher"], "num_proc": summary["num_proc"],
                           "dataset_version": summary["dataset_version"], "conf_hash": summary["conf_hash"]})
        for h in metrics["history"]:
            mlflow.log_metrics({k: float(v) for k, v in h.items() if k != "epoch"}, step=int(h["epoch"]))
        mlflow.log_metrics({"test_accuracy": float(metrics["test"]["accuracy"]), "best_val_acc": float(metrics["best_val_acc"])})
        mlflow.log_artifacts(str(model_dir), artifact_path="model", )
        return str(run.info.run_id)


def mark_published(runs: list[dict[str, Any]], published: bool) -> None:
    """After the train commit: tag each run's outcome; a run whose model folder was never published is FAILED."""
    runs = [r for r in runs if r.get("mlflow_run_id")]
    if not runs:
        return
    from mlflow.tracking import MlflowClient

    for r in runs:
        try:
            client = MlflowClient(r["mlflow_tracking_uri"])
            client.set_tag(r["mlflow_run_id"], PUBLISHED_TAG, str(published).lower())
            if not published:
                client.set_terminated(r["mlflow_run_id"], status="FAILED")
        except Exception as e:  # noqa: BLE001 - the tracking server's state must not hide the stage's own outcome
            log.warning("could not mark MLflow run %s as %s: %s", r["mlflow_run_id"], "published" if published else "failed", e)
