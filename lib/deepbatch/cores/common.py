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
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepbatch.errors import ConfigError, CorruptModelError

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
        check_model_files(p)
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


def check_model_files(folder: Path) -> None:
    """Refuse a model folder whose files no longer match the checksums its train commit recorded: a corrupt model
    (flipped bits keep the size) must never score a record."""
    from deepbatch.storage import corrupt_files

    bad = corrupt_files(str(folder))
    if bad:
        raise CorruptModelError(f"model folder {folder} is corrupt: {'; '.join(bad[:3])}. Restore it from a backup, or train again "
                                f"(`deepbatch train --task {folder.parent.name}`); `deepbatch status --verify` checks every output")


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


TRAIN_MANIFEST = "_train_manifest.json"  # the train commit's record in the model folder: the run date it trained for
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def trained_for(folder: Path) -> str | None:
    """The run date a model version was trained for: its train manifest's, else its name when that is a date."""
    try:
        return str(json.loads((folder / TRAIN_MANIFEST).read_text())["run_date"])
    except (OSError, ValueError, KeyError, TypeError):
        return folder.name if _DATE.match(folder.name) else None


@dataclass(frozen=True)
class ModelChoice:
    """Which model version scores a run date, and why (recorded in the predictions' manifest and the run report)."""

    path: Path
    choice: str  # run | latest | pinned
    trained_for: str | None

    def describe(self) -> dict[str, Any]:
        return {"model_choice": self.choice, "model_trained_for": self.trained_for}


def model_for_run(models_root: str | Path, task: str, run_date: str, setting: str = "run") -> ModelChoice:
    """The model ``infer.model_version`` names for a run date. ``run`` (the default; empty means it too): the version
    trained for the newest run date up to this one, so a backfill never scores the past with a future model and two
    run dates at once never read each other's; ``latest``: the newest version; anything else: that version."""
    if setting not in ("", "run", "latest"):
        path = latest_model_dir(models_root, task, setting)
        return ModelChoice(path, "pinned", trained_for(path))
    if setting == "latest":
        path = latest_model_dir(models_root, task)
        return ModelChoice(path, "latest", trained_for(path))
    root = Path(local_path(str(models_root))) / task
    versions = sorted(p for p in root.glob("*") if (p / MODEL_FILE).is_file()) if root.is_dir() else []
    dated = [(d, p.name, p) for p in versions if (d := trained_for(p)) is not None and d <= run_date]
    if not dated:
        found = ", ".join(f"{p.name} (for {trained_for(p) or 'an unknown run date'})" for p in versions) or "none"
        raise ConfigError(f"no {task} model was trained for run date {run_date} or before (infer.model_version: run; versions under "
                          f"{root}: {found}). Train it with `deepbatch train --task {task} --run-date {run_date}`, or set "
                          "infer.model_version to latest or to a version")
    when, _, path = max(dated)
    return ModelChoice(path, "run", when)


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
