"""What every predictor core shares: device choice, model folders, top-k rows, error rows.

A core loads its model once in ``__init__`` and maps a pandas batch to a pandas
DataFrame of predictions with one row per input, in input order. An input the
model cannot use gives a row whose ``error`` is ``"<REASON>: <detail>"`` and
whose prediction columns are null; it never raises for a bad record.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepbatch.errors import ConfigError

MODEL_FILE = "model.safetensors"

log = logging.getLogger(__name__)


def pick_device(preference: str | None = "auto") -> torch.device:
    """``auto`` takes the GPU when this process can see one; ``cpu``/``cuda``/``cuda:N`` are taken as given."""
    if preference in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(preference)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"infer.device={preference!r} but this process sees no CUDA device; use auto or cpu")
    return dev


def error_text(reason: str, detail: object) -> str:
    return f"{reason}: {detail}"


def topk(probs: np.ndarray, classes: list[str], k: int) -> tuple[list[list[str]], list[list[float]]]:
    """Per row: the k best class names and their probabilities, best first."""
    k = min(k, probs.shape[1])
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[classes[j] for j in row] for row in idx], [[float(probs[i, j]) for j in row] for i, row in enumerate(idx)]


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or len(value) == 0


@dataclass(frozen=True)
class ModelFolder:
    """A trained model folder ``models/<task>/<version>/`` as written by ``deepbatch train``."""

    path: Path
    task: str
    version: str
    classes: list[str]
    model_settings: dict[str, Any]
    preprocessing: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> ModelFolder:
        p = Path(local_path(str(path)))
        missing = [n for n in (MODEL_FILE, "config.json", "label_map.json", "preprocessing.json") if not (p / n).is_file()]
        if missing:
            raise ConfigError(f"{p} is not a deepbatch model folder (missing {', '.join(missing)}); train it with `deepbatch train`")
        config = json.loads((p / "config.json").read_text())
        label_map: dict[str, int] = json.loads((p / "label_map.json").read_text())
        classes = [c for c, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
        if len(classes) != int(config["num_classes"]):
            raise ConfigError(f"{p}: label_map.json has {len(classes)} classes, config.json says {config['num_classes']}")
        return cls(p, str(config["task"]), p.name, classes, dict(config.get("model_settings", {})),
                   json.loads((p / "preprocessing.json").read_text()))

    def graph(self, quantized: bool = False, name: str = "model") -> Path:
        """``<name>.onnx`` of this folder, or ``<name>.int8.onnx`` when ``quantized`` and train kept one.

        A missing int8 graph (never made, or refused by train for its accuracy drop; see metrics.json)
        falls back to the fp32 one, and says so."""
        fp32, int8 = self.path / f"{name}.onnx", self.path / f"{name}.int8.onnx"
        if quantized and int8.is_file():
            return int8
        if quantized:
            log.warning("%s has no %s (see quantization in its metrics.json): scoring with %s", self.path, int8.name, fp32.name)
        return fp32

    def load_weights(self, model: nn.Module) -> nn.Module:
        """Load model.safetensors into ``model`` (strict: every tensor must match)."""
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(self.path / MODEL_FILE)), strict=True)
        return model.eval()


def latest_model_dir(models_root: str | Path, task: str, version: str = "") -> Path:
    """``models/<task>/<version>``, or the newest version holding a finished model when ``version`` is empty."""
    root = Path(local_path(str(models_root))) / task
    if version:
        path = root / version
        if not (path / MODEL_FILE).is_file():
            raise ConfigError(f"no trained {task} model at {path}; train it with `deepbatch train --task {task}`")
        return path
    versions = sorted(p for p in root.glob("*") if (p / MODEL_FILE).is_file()) if root.is_dir() else []
    if not versions:
        raise ConfigError(f"no trained {task} model under {root}; run `deepbatch train --task {task}` first")
    return versions[-1]


def local_path(uri: str) -> str:
    """``file:/a/b`` and ``file:///a/b`` (Spark's spellings) as ``/a/b``; other strings unchanged."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("file:"):
        return uri[len("file:") :]
    return uri


def set_threads(threads: int) -> None:
    """Torch intra-op threads for this process (one inference task per core by default)."""
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@contextmanager
def local_copy(path: str, suffix: str = "") -> Any:
    """A local file path for ``path``: itself when local, else a temporary copy (hdfs://, s3a://, ...)."""
    if path.startswith("file:"):
        yield local_path(path)
        return
    if "://" not in path:
        yield path
        return
    import tempfile

    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(path)
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="deepbatch-")
    try:
        with os.fdopen(fd, "wb") as out, filesystem.open_input_stream(inner) as src:
            while chunk := src.read(8 << 20):
                out.write(chunk)
        yield tmp
    finally:
        os.unlink(tmp)
