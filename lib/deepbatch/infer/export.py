"""ONNX export of a trained model folder, its equivalence check, and int8 quantisation.

Pure of Spark: the train stage hands in pandas rows of the task's gold table (validation rows
for the check, test rows for the int8 accuracy, training rows for calibration) and records
what comes back in the model folder's ``metrics.json``.

- :func:`export_folder` writes ``model.onnx`` (and, for clip models, ``frames.onnx``) next to
  ``model.safetensors``, with dynamic batch (and sequence length for text);
- :func:`check_equivalence` scores the same rows with the torch and the ONNX Runtime core and
  raises :class:`ExportMismatchError` when top-1 agreement or the largest probability
  difference is outside the tolerance;
- :func:`quantize_folder` writes ``*.int8.onnx`` (dynamic: weights only, for transformer
  encoders; static: calibrated on training rows, for CNNs) and keeps it only when the test
  accuracy drops by at most the allowed points.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepbatch.errors import ExportMismatchError
from deepbatch.modality import CoreSpec, ModalityContract

log = logging.getLogger(__name__)

MIN_TOP1_AGREEMENT = 0.99
MAX_PROB_DIFF = 1e-3


@dataclass(frozen=True)
class Scored:
    """Class probabilities (rows × classes, in the model's class order) of the rows a core could use."""

    probs: np.ndarray
    ok: np.ndarray  # bool per input row


def build_core(kind: str, folder: Path, runtime: str, quantized: bool = False, **options: Any) -> Any:
    return CoreSpec(kind, str(folder), tuple(sorted({"runtime": runtime, "quantized": quantized, **options}.items())), "cpu").build()


def _topk_probs(out: pd.DataFrame, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    probs = np.zeros((len(out), len(classes)), dtype=np.float32)
    for r, (labels, values) in enumerate(zip(out["top_labels"], out["top_probs"], strict=True)):
        for lbl, v in zip(labels if labels is not None else [], values if values is not None else [], strict=True):
            probs[r, index[lbl]] = v
    return probs


def _class_probs(column: pd.Series, k: int) -> np.ndarray:
    """A ``class_probs`` column as rows × classes; rows without probabilities (errors) are zeros."""
    return np.array([p if isinstance(p, (list, np.ndarray)) else [0.0] * k for p in column], dtype=np.float32)


def score(core: Any, modality: ModalityContract, rows: pd.DataFrame) -> Scored:
    """Every row through ``core`` (one output row per input, the modality's way): full probability vectors for every core."""
    out = modality.score_rows(core, rows)
    ok = out["error"].isna().to_numpy()
    probs = _class_probs(out["class_probs"], len(core.classes)) if "class_probs" in out else _topk_probs(out, core.classes)
    return Scored(probs, ok)


def export_folder(modality: ModalityContract, folder: Path, **options: Any) -> list[str]:
    """Export the folder's model as ONNX graph(s) beside its weights; returns the file names."""
    from deepbatch.cores.runtime import export_graph

    core = build_core(modality.core_kind, folder, "torch", **options)
    specs = core.graph_specs() if hasattr(core, "graph_specs") else [core.graph_spec()]
    return [export_graph(spec, folder).name for spec in specs]


def agreement(a: Scored, b: Scored) -> dict[str, Any]:
    both = a.ok & b.ok
    if not both.any():
        raise ExportMismatchError("no row could be scored by both the torch model and its ONNX graph; nothing to compare")
    pa, pb = a.probs[both], b.probs[both]
    return {"rows": int(both.sum()), "top1_agreement": round(float((pa.argmax(1) == pb.argmax(1)).mean()), 4),
            "max_prob_diff": float(np.abs(pa - pb).max()), "rows_refused_by_one_runtime": int((a.ok != b.ok).sum())}


def check_equivalence(modality: ModalityContract, folder: Path, rows: pd.DataFrame, **options: Any) -> dict[str, Any]:
    """Torch against ONNX Runtime on the same rows; raises ExportMismatchError beyond the tolerance."""
    kind = modality.core_kind
    result = agreement(score(build_core(kind, folder, "torch", **options), modality, rows),
                       score(build_core(kind, folder, "onnxruntime", **options), modality, rows))
    result.update(min_top1_agreement=MIN_TOP1_AGREEMENT, max_prob_diff_allowed=MAX_PROB_DIFF)
    if result["top1_agreement"] < MIN_TOP1_AGREEMENT or result["max_prob_diff"] > MAX_PROB_DIFF or result["rows_refused_by_one_runtime"]:
        raise ExportMismatchError(
            f"the ONNX graph in {folder} does not match the torch model on {result['rows']} validation rows: top-1 agreement "
            f"{result['top1_agreement']:.4f} (at least {MIN_TOP1_AGREEMENT} needed), largest probability difference "
            f"{result['max_prob_diff']:.2e} (at most {MAX_PROB_DIFF:.0e}), {result['rows_refused_by_one_runtime']} rows refused by one "
            "runtime only. Nothing was published; report it with the model settings, or train with infer.runtime=torch meanwhile."
        )
    return result


def _accuracy(scored: Scored, labels: list[str], classes: list[str]) -> float:
    truth = np.array([classes.index(lbl) if lbl in classes else -1 for lbl in labels])
    hits = (scored.probs.argmax(1) == truth) & scored.ok
    return float(hits.mean()) if len(truth) else float("nan")


class _Calibration:
    """onnxruntime's CalibrationDataReader over a list of input batches."""

    def __init__(self, name: str, batches: list[np.ndarray]):
        self.items = iter([{name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def _quantize(src: Path, dst: Path, mode: str, calibration: list[np.ndarray]) -> None:
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        if mode == "dynamic" or not calibration:
            quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8, per_channel=True)
            return
        import onnx

        name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        quantize_static(str(prepared), str(dst), _Calibration(name, calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)


def quantize_folder(modality: ModalityContract, folder: Path, mode: str, max_drop_points: float, test: pd.DataFrame, calibration_rows: pd.DataFrame,
                    **options: Any) -> dict[str, Any]:
    """Write the int8 graph and keep it only if the test accuracy drops by at most ``max_drop_points``."""
    kind, graph = modality.core_kind, modality.quantized_graph
    fp32 = build_core(kind, folder, "onnxruntime", **options)
    effective = modality.int8_mode(mode)
    calibration = fp32.calibration_batches(calibration_rows) if effective == "static" else []
    src, dst = folder / f"{graph}.onnx", folder / f"{graph}.int8.onnx"
    _quantize(src, dst, effective, calibration)
    int8 = build_core(kind, folder, "onnxruntime", quantized=True, **options)
    labels = [str(x) for x in test["label"]]
    acc32, acc8 = _accuracy(score(fp32, modality, test), labels, fp32.classes), _accuracy(score(int8, modality, test), labels, fp32.classes)
    drop = round((acc32 - acc8) * 100, 3)
    result = {"mode": effective, "graph": dst.name, "test_rows": len(test), "test_accuracy_fp32": round(acc32, 4),
              "test_accuracy_int8": round(acc8, 4), "drop_points": drop, "max_drop_points": max_drop_points,
              "bytes_fp32": src.stat().st_size, "bytes_int8": dst.stat().st_size, "kept": drop <= max_drop_points}
    if not result["kept"]:
        dst.unlink()
        log.warning("int8 refused for %s: test accuracy %.4f -> %.4f, a drop of %.2f points, above "
                    "infer.max_quantized_accuracy_drop=%.2f; inference keeps the fp32 graph", folder, acc32, acc8, drop, max_drop_points)
    return result

