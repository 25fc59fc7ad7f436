"""Log a finished training run to MLflow (local file store under the data root by default)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
    with mlflow.start_run(run_name=f"{summary['task']}-{summary['run_date']}") as run:
        mlflow.log_params({**{f"hp.{k}": v for k, v in metrics["hparams"].items()},
                           "launcher": summary["launcher"], "num_proc": summary["num_proc"],
                           "dataset_version": summary["dataset_version"], "conf_hash": summary["conf_hash"]})  # fmt: skip
        for h in metrics["history"]:
            mlflow.log_metrics({k: float(v) for k, v in h.items() if k != "epoch"}, step=int(h["epoch"]))
        mlflow.log_metrics({"test_accuracy": float(metrics["test"]["accuracy"]), "best_val_acc": float(metrics["best_val_acc"])})
        mlflow.log_artifacts(str(model_dir), artifact_path="model", )
        return str(run.info.run_id)
