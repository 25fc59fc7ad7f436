"""Image predictor cores: encoded bytes in a pandas Series -> top-k labels and probabilities.

- ``ImageNetClassifier``: the pretrained EfficientNet-Lite0, ImageNet-1k top-k.
- ``TrainedImageClassifier``: a model folder written by ``deepbatch train --task image_cls``.

Both are testable without Spark; the Spark pandas UDF only calls ``predict`` on
each Arrow batch. The model loads once per core instance.

On a CUDA device the cores run the fast path: JPEGs are decoded on the GPU with
nvJPEG (``torchvision.io.decode_jpeg(device='cuda')``, batched) when torchvision
is installed, falling back to OpenCV on the CPU per image; resizing and
normalisation run on the GPU; the model runs in bf16 with channels_last; host
batches go through pinned memory, and the CPU preparation of batch i+1 overlaps
the GPU's work on batch i (results are only synchronised one batch later).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from deepbatch.cores.common import ModelFolder, error_text, is_empty, pick_device
from deepbatch.cores.runtime import (
    MODEL_ONNX,
    GraphSpec,
    OrtGraph,
    cached_graph,
    choose_runtime,
    model_input,
    onnxruntime_available,
    softmax_np,
)
from deepbatch.errors import ConfigError
from deepbatch.media.image import ImageTooLarge, decode_image, exif_orientation, image_to_array, sniff_format, to_channels

log = logging.getLogger(__name__)

IMAGENET_SIZE = 224
RESIZE_SHORTER = 256


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in index order (shipped as package data)."""
    text = resources.files("deepbatch.models").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = [line for line in text.splitlines() if line]
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, expected 1000; the package data is damaged")
    return names


def resize_crop_geometry(h: int, w: int, size: int, shorter: int) -> tuple[int, int, int, int]:
    """(new_h, new_w, top, left): shorter side to ``shorter``, then a centred size×size crop."""
    scale = shorter / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    return nh, nw, (nh - size) // 2, (nw - size) // 2


def resize_crop_array(img: np.ndarray, size: int = IMAGENET_SIZE, shorter: int = RESIZE_SHORTER) -> np.ndarray:
    """An HxWxC uint8 image resized (shorter side) and centre-cropped on the CPU with OpenCV."""
    nh, nw, top, left = resize_crop_geometry(img.shape[0], img.shape[1], size, shorter)
    interp = cv2.INTER_AREA if nh < img.shape[0] else cv2.INTER_LINEAR
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def resize_crop_tensor(img: torch.Tensor, size: int = IMAGENET_SIZE, shorter: int = RESIZE_SHORTER) -> torch.Tensor:
    """A CxHxW (or NxCxHxW, one shape) uint8 tensor resized and centre-cropped where it lives (the GPU path).

    Images already stored at the target scale (shorter side == ``shorter``, e.g.
    pre-resized 256×256 JPEGs) are only cropped: no interpolation at all.
    """
    batched = img.ndim == 4
    x = img if batched else img[None]
    nh, nw, top, left = resize_crop_geometry(int(x.shape[2]), int(x.shape[3]), size, shorter)
    if (nh, nw) != (int(x.shape[2]), int(x.shape[3])):
        x = F.interpolate(x.float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
    x = x[:, :, top : top + size, left : left + size]
    return x if batched else x[0]


def resize_crop_many(images: list[torch.Tensor], size: int = IMAGENET_SIZE, shorter: int = RESIZE_SHORTER) -> torch.Tensor:
    """N×C×size×size from CxHxW tensors of any shapes: one batched resize per distinct shape."""
    out: list[torch.Tensor | None] = [None] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(images):
        by_shape.setdefault(tuple(t.shape), []).append(i)
    for idx in by_shape.values():
        done = resize_crop_tensor(torch.stack([images[i] for i in idx]), size, shorter)
        for j, i in enumerate(idx):
            out[i] = done[j]
    return torch.stack(out)  # type: ignore[arg-type]


def imagenet_preprocess(data: bytes, size: int = IMAGENET_SIZE, shorter: int = RESIZE_SHORTER) -> np.ndarray:
    """Decode, resize the shorter side to ``shorter``, centre-crop ``size``; HxWx3 RGB uint8."""
    return resize_crop_array(to_channels(decode_image(data), 3), size, shorter)


def preprocess_image(data: bytes, prep: dict[str, Any]) -> np.ndarray:
    """A model folder's preprocessing (preprocessing.json) applied to image bytes: HxWxC uint8, before normalisation.

    ``resize: shorter_crop`` is the ImageNet core's (shorter side, then centre crop: pretrained backbones);
    otherwise the image is squashed to ``image_size`` (small images for compact_cnn). Training data
    (materialize) and the predictor core both call this, so they cannot drift apart."""
    if prep.get("resize") == "shorter_crop":
        return imagenet_preprocess(data, int(prep["image_size"]), int(prep.get("shorter", RESIZE_SHORTER)))
    return image_to_array(data, int(prep["image_size"]), int(prep["channels"]))


def _nvjpeg_decoder() -> Any:
    """torchvision's batched GPU JPEG decoder, or None where torchvision is not installed."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # noqa: BLE001 - any import failure means: no GPU decode here
        return None
    return lambda tensors: decode_jpeg(tensors, device="cuda", mode=ImageReadMode.RGB)


class TopKImageCore:
    """Shared batch loop: prepare (CPU or GPU) -> forward (bf16 on CUDA, torch or ONNX Runtime on CPU) -> top-k."""

    channels = 3
    size = IMAGENET_SIZE

    def __init__(self, model: nn.Module, classes: list[str], top_k: int, batch_size: int, device: str | None):
        self.device = pick_device(device)
        self.cuda = self.device.type == "cuda"
        # channels_last on CPU too: the convolutions of oneDNN prefer it (measured in bench/infer_runtime.py).
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.classes = classes
        self.top_k = min(top_k, len(classes))
        self.batch_size = batch_size
        self.decoded_on_gpu = 0  # images nvJPEG decoded (the rest went through OpenCV)
        self.runtime = "torch"
        self.ort: OrtGraph | None = None

    def graph_spec(self) -> GraphSpec:
        """The model as an ONNX graph: normalised N×C×H×W float pixels in, logits out (dynamic batch)."""
        example = torch.zeros(1, self.channels, self.size, self.size)
        return GraphSpec(MODEL_ONNX, self.model.cpu().to(memory_format=torch.contiguous_format), (example,),  # type: ignore[call-overload]
                         ["pixels"], ["logits"], {"pixels": {0: "batch"}, "logits": {0: "batch"}})

    def use_runtime(self, preference: str, graph: Path | None) -> None:
        """Run the forward pass with ONNX Runtime when :func:`choose_runtime` says so."""
        self.runtime = choose_runtime(preference, self.device, graph)
        if self.runtime == "onnxruntime" and graph is not None:
            self.ort = OrtGraph(graph)

    def prepare_one(self, data: bytes) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, items: list[tuple[int, bytes]], errors: list[str | None]) -> tuple[list[int], torch.Tensor | None]:
        """Decode + resize on the CPU: (row indices that succeeded, N×C×H×W uint8 on the device)."""
        ok, pixels = [], []
        for i, data in items:
            try:
                pixels.append(self.prepare_one(data))
                ok.append(i)
            except ImageTooLarge as e:
                errors[i] = error_text("IMAGE_TOO_LARGE", e)
            except Exception as e:  # noqa: BLE001 - one record's failure is that row's error, never the batch's
                errors[i] = error_text("UNDECODABLE_IMAGE", f"{type(e).__name__}: {e}")
        if not pixels:
            return ok, None
        host = torch.from_numpy(np.stack(pixels))  # N×H×W×C: as N×C×H×W this is already channels_last
        if self.cuda:
            host = host.pin_memory()
        return ok, host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)

    def _launch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start the forward pass (asynchronous on CUDA); top-k stays on the device until collected."""
        if self.ort is not None:
            return self._launch_ort(x)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            x = x.float().div_(255.0).sub_(0.5).div_(0.5).contiguous(memory_format=torch.channels_last)
            probs = torch.softmax(self.model(x).float(), dim=1)
            return torch.topk(probs, self.top_k, dim=1)

    def calibration_batches(self, rows: pd.DataFrame, batch: int = 16) -> list[np.ndarray]:
        """Normalised N×C×H×W float batches of the rows' images (for static int8 calibration)."""
        pixels = []
        for data in rows["content"]:
            try:
                pixels.append(self.prepare_one(bytes(data)))
            except Exception:  # noqa: BLE001 - an unusable image is left out of calibration
                continue
        return [model_input(np.stack(pixels[s : s + batch])) for s in range(0, len(pixels), batch)]

    def _launch_ort(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = softmax_np(self.ort.run(model_input(x.permute(0, 2, 3, 1).numpy()))[0])  # type: ignore[union-attr]
        top = np.argsort(-probs, axis=1, kind="stable")[:, : self.top_k]
        return torch.from_numpy(np.take_along_axis(probs, top, axis=1)), torch.from_numpy(top)

    def predict(self, images: pd.Series) -> pd.DataFrame:
        n = len(images)
        labels: list[Any] = [None] * n
        probs: list[Any] = [None] * n
        errors: list[str | None] = [None] * n
        todo: list[tuple[int, bytes]] = []
        for i, data in enumerate(images):
            if is_empty(data):
                errors[i] = error_text("EMPTY_INPUT", "no image bytes")
            else:
                todo.append((i, bytes(data)))
        pending: tuple[list[int], tuple[torch.Tensor, torch.Tensor]] | None = None

        def collect(done: tuple[list[int], tuple[torch.Tensor, torch.Tensor]]) -> None:
            rows, (values, indices) = done
            for r, v, ix in zip(rows, values.cpu().tolist(), indices.cpu().tolist(), strict=True):
                labels[r] = [self.classes[j] for j in ix]
                probs[r] = v

        for start in range(0, len(todo), self.batch_size):
            ok, x = self._prepare(todo[start : start + self.batch_size], errors)  # overlaps the GPU's previous batch
            launched = (ok, self._launch(x)) if x is not None else None
            if pending is not None:
                collect(pending)
            pending = launched
        if pending is not None:
            collect(pending)
        return pd.DataFrame({"top_labels": labels, "top_probs": probs, "error": errors}, index=images.index)


class ImageNetClassifier(TopKImageCore):
    """EfficientNet-Lite0 (pretrained, ImageNet-1k) top-k classification of encoded images.

    ``predict`` returns one row per input with ``top_labels`` and ``top_probs``
    (best first) and ``error`` (None, or why the input could not be used).
    """

    def __init__(self, top_k: int = 5, batch_size: int = 64, device: str | None = None, model: nn.Module | None = None,
                 gpu_decode: bool = True, runtime: str = "torch"):
        from deepbatch.models.builders import efficientnet_lite0

        super().__init__(model or efficientnet_lite0(pretrained=True), imagenet_classes(), top_k, batch_size, device)
        self.nvjpeg = _nvjpeg_decoder() if (self.cuda and gpu_decode) else None
        self.version = "efficientnet-lite0-imagenet1k"
        self.use_runtime(runtime, self._imagenet_graph(runtime))

    def _imagenet_graph(self, runtime: str) -> Path | None:
        """The cached ONNX graph of the pretrained model, exported on first use; None where torch will run.

        Under ``auto`` a cache that cannot be written (a read-only home on an executor) means torch, with a
        warning; under ``onnxruntime`` it is an error that names the setting to change."""
        if runtime == "torch" or self.cuda or not onnxruntime_available():
            return None
        try:
            return cached_graph(self.graph_spec(), "efficientnet_lite0-imagenet1k")
        except OSError as e:
            if runtime == "onnxruntime":
                raise ConfigError(f"infer.runtime=onnxruntime: could not export the ImageNet graph into the cache ({e}); "
                                  "point DEEPBATCH_CACHE at a writable folder on the executors") from e
            log.warning("could not export the ImageNet graph into the cache (%s); scoring with torch. Set DEEPBATCH_CACHE "
                        "to a writable folder to use ONNX Runtime.", e)
            return None

    def prepare_one(self, data: bytes) -> np.ndarray:
        return imagenet_preprocess(data)

    def _prepare(self, items: list[tuple[int, bytes]], errors: list[str | None]) -> tuple[list[int], torch.Tensor | None]:
        if self.nvjpeg is None:
            return super()._prepare(items, errors)
        jpegs = [(i, d) for i, d in items if sniff_format(d) == "jpeg" and exif_orientation(d) == 1]  # turned ones: OpenCV
        gpu: list[torch.Tensor] = []
        if jpegs:
            try:
                decoded = self.nvjpeg([torch.frombuffer(bytearray(d), dtype=torch.uint8) for _, d in jpegs])
                gpu = list(resize_crop_many(decoded))
            except RuntimeError:  # one bad JPEG fails the batch: OpenCV then takes them one by one
                jpegs, gpu = [], []
        self.decoded_on_gpu += len(gpu)
        done = {i for i, _ in jpegs}
        ok_cpu, x_cpu = super()._prepare([(i, d) for i, d in items if i not in done], errors)
        ok = [i for i, _ in jpegs] + ok_cpu
        parts = ([torch.stack(gpu)] if gpu else []) + ([x_cpu] if x_cpu is not None else [])
        if not parts:
            return ok, None
        order = np.argsort(ok, kind="stable")  # back to input order
        x = torch.cat(parts)[torch.as_tensor(order, device=self.device)]
        return [ok[j] for j in order], x


class TrainedImageClassifier(TopKImageCore):
    """A ``models/image_cls/<version>/`` folder: the preprocessing it was trained with, top-k over its classes."""

    def __init__(self, model_dir: str, top_k: int = 3, batch_size: int = 256, device: str | None = None, runtime: str = "torch",
                 quantized: bool = False):
        from deepbatch.models.builders import build_image_model

        folder = ModelFolder.open(model_dir)
        settings = {**folder.model_settings, "in_channels": folder.preprocessing["channels"], "pretrained": False}  # weights come next
        model = folder.load_weights(build_image_model(len(folder.classes), settings))
        super().__init__(model, folder.classes, top_k, batch_size, device)
        self.preprocessing = dict(folder.preprocessing)
        self.size = int(folder.preprocessing["image_size"])
        self.channels = int(folder.preprocessing["channels"])
        self.version = folder.version
        self.use_runtime(runtime, folder.graph(quantized))

    def prepare_one(self, data: bytes) -> np.ndarray:
        return preprocess_image(data, self.preprocessing)

