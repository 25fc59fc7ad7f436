"""Evaluation metrics, checkpoints and the model folder (rank 0 only writes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall and the confusion matrix (rows: true, cols: predicted)."""
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[int(t), int(p)] += 1
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros(k), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "n": int(cm.sum()),
        "per_class": {c: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4), "support": int(cm[i].sum())} for i, c in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
    }


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: Path, state: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
    """Atomic: write beside, fsync, then rename, so a kill mid-write leaves the previous checkpoint.

    ``meta`` (what a resume must match) goes to ``<name>.json`` beside it, written first."""
    if meta is not None:
        _atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=2, sort_keys=True).encode()))
    _atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    return dict(torch.load(path, map_location="cpu", weights_only=True))


def save_model_folder(folder: Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any], label_map: dict[str, int],
                      preprocessing: dict[str, Any], metrics: dict[str, Any]) -> None:
    """models/<task>/<version>/: safetensors weights, config, label map, preprocessing, metrics, curve."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(folder / "model.safetensors"))
    for name, obj in (("config.json", config), ("label_map.json", label_map), ("preprocessing.json", preprocessing), ("metrics.json", metrics)):
        (folder / name).write_text(json.dumps(obj, indent=2))
    plot_curves(metrics.get("history", []), folder / "training_curve.png")


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    from deepbatch.report.charts import training_curves

    path.write_bytes(training_curves(history))
