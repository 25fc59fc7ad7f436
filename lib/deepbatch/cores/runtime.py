"""The inference runtime of the predictor cores: eager torch, or ONNX Runtime on CPU executors.

``infer.runtime``:

- ``auto``: ONNX Runtime when the core runs on a CPU and its ONNX graph exists (a trained
  model folder's ``model.onnx``; the pretrained ImageNet graph is exported into a cache
  keyed by the weights' hash the first time it is needed); torch on CUDA and for model
  folders without a graph (written before this change).
- ``torch``: always torch.
- ``onnxruntime``: always ONNX Runtime; refused where the graph is missing or the core runs on CUDA.

Graphs are exported with the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``),
which needs neither ``onnxscript`` nor its numpy-2-only dependencies. A session uses the
worker's thread budget (``spark.task.cpus`` or ``infer.threads_per_task``) for intra-op
threads and one inter-op thread, and is built once per Python worker with its core.
"""

from __future__ import annotations

import hashlib
import logging
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepbatch.config import Runtime
from deepbatch.errors import ConfigError

log = logging.getLogger(__name__)

RUNTIMES: tuple[str, ...] = typing.get_args(Runtime)  # the one list of runtimes: the conf's type (infer.runtime)
OPSET = 17
MODEL_ONNX = "model.onnx"
MODEL_INT8 = "model.int8.onnx"


@dataclass
class GraphSpec:
    """One module to export: its example inputs, names and the axes that vary (batch, sequence)."""

    name: str  # file name, e.g. model.onnx
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def choose_runtime(preference: str, device: torch.device, graph: Path | None) -> str:
    """torch or onnxruntime for a core on ``device`` whose graph is ``graph`` (None or missing: no graph)."""
    if preference not in RUNTIMES:
        raise ConfigError(f"conf key 'infer.runtime' must be one of {RUNTIMES}, got {preference!r}")
    has_graph = graph is not None and graph.is_file()
    if preference == "torch" or (preference == "auto" and (device.type != "cpu" or not has_graph or not onnxruntime_available())):
        return "torch"
    if device.type != "cpu":
        raise ConfigError(f"infer.runtime=onnxruntime runs on CPU executors only; this core runs on {device}. "
                          "Use infer.runtime=auto (torch on CUDA) or infer.device=cpu.")
    if not has_graph:
        raise ConfigError(f"infer.runtime=onnxruntime needs the ONNX graph {graph}, which is missing: the model folder was "
                          "written before deepbatch exported graphs. Retrain it (deepbatch train), or use infer.runtime=auto.")
    if not onnxruntime_available():
        raise ConfigError("infer.runtime=onnxruntime but the onnxruntime package is not installed here; install it (make setup) "
                          "or use infer.runtime=auto")
    return "onnxruntime"


class OrtGraph:
    """An ONNX Runtime CPU session: numpy arrays in by input name, the outputs as numpy arrays."""

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # warnings about unused initialisers etc. say nothing to a user
        self.path = path
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return list(self.session.run(None, dict(zip(self.input_names, arrays, strict=True))))


def _write_atomically(path: Path, write: Any) -> None:
    """Export beside the target, then rename: a reader (another worker) never sees half a graph."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_graph(spec: GraphSpec, folder: Path) -> Path:
    """Export one module to ``folder/spec.name`` (eval mode, constant-folded, opset 17)."""
    spec.module.eval()

    def write(tmp: Path) -> None:
        import warnings

        # The tracer's notes (Python values treated as constants, opset fallbacks) concern code paths the
        # equivalence check then covers; a user reads them as failures.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(spec.module, spec.inputs, str(tmp), input_names=spec.input_names, output_names=spec.output_names,
                              dynamic_axes=spec.dynamic_axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)

    path = folder / spec.name
    _write_atomically(path, write)
    return path


def cache_root() -> Path:
    """Where pretrained graphs are cached: ``$DEEPBATCH_CACHE`` or ``$XDG_CACHE_HOME/deepbatch`` (~/.cache/deepbatch)."""
    base = os.environ.get("DEEPBATCH_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "deepbatch")
    return Path(base) / "onnx"


def weights_hash(module: nn.Module) -> str:
    """A digest of a module's parameters and buffers (names, shapes, values)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cached_graph(spec: GraphSpec, label: str) -> Path:
    """The graph of a pretrained module, exported once per weights into the cache (no network needed)."""
    folder = cache_root() / f"{label}-{weights_hash(spec.module)}"
    path = folder / spec.name
    if not path.is_file():
        log.info("exporting %s to ONNX once, into %s", label, folder)
        export_graph(spec, folder)
    return path


def cached_graph_for(label: str, key: str, make_spec: Any) -> Path:
    """The cached graph ``<label>-<key>/model.onnx``, exported from ``make_spec()`` only when it is missing: a caller that
    knows its weights' digest without building the module (a shipped weights file) never builds it on a cache hit."""
    path = cache_root() / f"{label}-{key}" / MODEL_ONNX
    if not path.is_file():
        spec = make_spec()
        log.info("exporting %s to ONNX once, into %s", label, path.parent)
        export_graph(spec, path.parent)
    return path


def model_input(pixels: np.ndarray) -> np.ndarray:
    """N×H×W×C uint8 pixels -> N×C×H×W float32 in [-1, 1] (x/255, mean = std = 0.5: every image graph here)."""
    x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)
    x *= 2.0 / 255.0
    x -= 1.0
    return x


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))
