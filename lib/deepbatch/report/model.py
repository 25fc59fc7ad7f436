"""The run report's model part for one trained task: curves, confusion matrix, per-class scores."""

from __future__ import annotations

from typing import Any

from deepbatch.report.charts import confusion_heatmap, training_curves
from deepbatch.report.page import Part

_RUN_FIELDS = ("dataset_version", "launcher", "num_proc", "epochs_done", "duration_s", "mlflow_run_id", "mlflow_tracking_uri", "conf_hash")


def model_part(task: str, metrics: dict[str, Any], run: dict[str, Any], classes: list[str]) -> Part:
    """train's part for ``task``, from the model folder's metrics.json and the run summary."""
    test = metrics["test"]
    files = {f"confusion_{task}.png": confusion_heatmap(f"{task}: test confusion matrix", test["confusion_matrix"], classes)}
    blocks: list[dict[str, Any]] = [
        {"type": "p", "text": f"test accuracy {test['accuracy']:.4f} on {test['n']} rows; best validation accuracy "
                              f"{metrics.get('best_val_acc', float('nan')):.4f}; model folder {run.get('model_dir', '')}"},
        {"type": "table", "header": ["run", "value"], "rows": [[k, run.get(k)] for k in _RUN_FIELDS if run.get(k) is not None]},
    ]
    blocks += _runtime_blocks(metrics)
    if metrics.get("history"):
        files[f"curves_{task}.png"] = training_curves(metrics["history"])
        blocks.append({"type": "img", "src": f"curves_{task}.png", "alt": f"training curves of {task}"})
    blocks += [
        {"type": "img", "src": f"confusion_{task}.png", "alt": f"confusion matrix of {task}"},
        {"type": "table", "header": ["class", "precision", "recall", "support"],
         "rows": [[c, v["precision"], v["recall"], v["support"]] for c, v in test["per_class"].items()]},
        {"type": "table", "header": ["setting", "value"], "rows": sorted([k, v] for k, v in metrics.get("hparams", {}).items())},
    ]
    data = {"task": task, "test": test, "best_val_acc": metrics.get("best_val_acc"), "run": {k: run.get(k) for k in _RUN_FIELDS}}
    return Part(f"model_{task}", "model", f"Model: {task}", blocks, files, data)


def _runtime_blocks(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The ONNX export's check against torch and the int8 verdict, where train made them."""
    rows = []
    onnx, q = metrics.get("onnx"), metrics.get("quantization")
    if onnx:
        rows += [["ONNX graphs", ", ".join(onnx["graphs"])], ["top-1 agreement with torch", onnx["top1_agreement"]],
                 ["largest probability difference", f"{onnx['max_prob_diff']:.1e}"], ["validation rows compared", onnx["rows"]]]
    if q:
        rows += [[f"int8 ({q['mode']})", "kept" if q["kept"] else f"refused: drop above {q['max_drop_points']} points"],
                 ["test accuracy fp32 / int8", f"{q['test_accuracy_fp32']:.4f} / {q['test_accuracy_int8']:.4f}"],
                 ["graph size fp32 / int8 (bytes)", f"{q['bytes_fp32']:,} / {q['bytes_int8']:,}"]]
    return [{"type": "table", "header": ["runtime", "value"], "rows": rows}] if rows else []
