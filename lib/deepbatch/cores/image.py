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
from collections.abc import Callable
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
    cached_graph_for,
    choose_runtime,
    model_input,
    onnxruntime_available,
    softmax_np,
)
from deepbatch.errors import ConfigError
from deepbatch.media.image import ImageTooLarge, decode_image, exif_orientation, image_to_array, sniff_format, to_channels
from deepbatch.models.builders import pretrained_weights_digest

log = logging.getLogger(__name__)

IMAGENET_SIZE = 224
RESIZE_SHORTER = 256
# On a CPU the forward pass runs in batches of at most this many input pixels: 16 images at 224×224. ONNX Runtime's
# arena grows with the batch (a worker held 808 MB at 64 images, 281 MB at 16) while throughput stays flat from 16 up
# (bench/peers/cost.py); small images still go 'infer.batch_size' at a time.
CPU_FORWARD_PIXELS = 16 * IMAGENET_SIZE * IMAGENET_SIZE


def forward_batch(batch_size: int, size: int, cuda: bool) -> int:
    """Images per forward pass: ``batch_size`` on a GPU; on a CPU no more than CPU_FORWARD_PIXELS allows (at least 1)."""
    return batch_size if cuda else max(1, min(batch_size, CPU_FORWARD_PIXELS // (size * size)))


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


def imagenet_preprocess(data: bytes, size: int = IMAGENET_SIZE, shorter: int = RESIZE_SHORTER, dct_scaled: bool = True) -> np.ndarray:
    """Decode, resize the shorter side to ``shorter``, centre-crop ``size``; HxWx3 RGB uint8.

    ``dct_scaled``: a JPEG whose shorter side is at least twice ``shorter`` is decoded at 1/2, 1/4 or 1/8 scale
    (never below ``shorter``), which on phone-sized photos halves decode and resize time (bench/peers)."""
    return resize_crop_array(to_channels(decode_image(data, min_side=shorter if dct_scaled else 0), 3), size, shorter)


def preprocess_image(data: bytes, prep: dict[str, Any]) -> np.ndarray:
    """A model folder's preprocessing (preprocessing.json) applied to image bytes: HxWxC uint8, before normalisation.

    ``resize: shorter_crop`` is the ImageNet core's (shorter side, then centre crop: pretrained backbones);
    otherwise the image is squashed to ``image_size`` (small images for compact_cnn). ``jpeg_dct_scaling`` (absent in
    folders written before it existed: full decode) decodes large JPEGs DCT-scaled. Training data (materialize)
    and the predictor core both call this, so they cannot drift apart."""
    dct = bool(prep.get("jpeg_dct_scaling", False))
    if prep.get("resize") == "shorter_crop":
        return imagenet_preprocess(data, int(prep["image_size"]), int(prep.get("shorter", RESIZE_SHORTER)), dct)
    return image_to_array(data, int(prep["image_size"]), int(prep["channels"]), dct_scaled=dct)


def _nvjpeg_decoder() -> Any:
    """torchvision's batched GPU JPEG decoder, or None where torchvision is not installed."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # noqa: BLE001 - any import failure means: no GPU decode here
        return None
    return lambda tensors: decode_jpeg(tensors, device="cuda", mode=ImageReadMode.RGB)


def image_graph_spec(model: nn.Module, channels: int, size: int) -> GraphSpec:
    """An image model as an ONNX graph: normalised N×C×H×W float pixels in, logits out (dynamic batch)."""
    example = torch.zeros(1, channels, size, size)
    return GraphSpec(MODEL_ONNX, model.cpu().eval().to(memory_format=torch.contiguous_format), (example,),  # type: ignore[call-overload]
                     ["pixels"], ["logits"], {"pixels": {0: "batch"}, "logits": {0: "batch"}})


def _pretrained_spec() -> GraphSpec:
    from deepbatch.models.builders import efficientnet_lite0

    return image_graph_spec(efficientnet_lite0(pretrained=True), 3, IMAGENET_SIZE)


def pretrained_imagenet_graph() -> Path:
    """The shipped EfficientNet-Lite0 as an ONNX graph in the cache, keyed by its weights file's digest: exported (the
    torch model built) only on a cache miss. Raises OSError where the cache cannot be written."""
    return cached_graph_for("efficientnet_lite0-imagenet1k-file", pretrained_weights_digest(), _pretrained_spec)


class TopKImageCore:
    """Shared batch loop: prepare (CPU or GPU) -> forward (bf16 on CUDA, torch or ONNX Runtime on CPU) -> top-k.

    Lean workers: a core that scores with ONNX Runtime never builds its torch model (``build_model`` is not called),
    so a Python worker holds one runtime's weights, not two."""

    channels = 3
    size = IMAGENET_SIZE

    def __init__(self, build_model: Callable[[], nn.Module], classes: list[str], top_k: int, batch_size: int, device: str | None,
                 runtime: str = "torch", graph: Callable[[torch.device], Path | None] = lambda _device: None):
        self.device = pick_device(device)
        self.cuda = self.device.type == "cuda"
        self.classes = classes
        self.top_k = min(top_k, len(classes))
        self.batch_size = forward_batch(batch_size, self.size, self.cuda)
        self.decoded_on_gpu = 0  # images nvJPEG decoded (the rest went through OpenCV)
        path = graph(self.device) if runtime != "torch" else None
        self.runtime = choose_runtime(runtime, self.device, path)
        self.ort: OrtGraph | None = None
        self.model: nn.Module | None = None
        if self.runtime == "onnxruntime" and path is not None:
            self.ort = OrtGraph(path)
        else:
            # channels_last on CPU too: the convolutions of oneDNN prefer it (measured in bench/infer_runtime.py).
            self.model = build_model().eval().to(self.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def graph_spec(self) -> GraphSpec:
        """The model as an ONNX graph (a core built for torch: export needs the module)."""
        if self.model is None:
            raise RuntimeError("this core scores with ONNX Runtime and holds no torch model to export; build it with runtime='torch'")
        return image_graph_spec(self.model, self.channels, self.size)

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
            probs = torch.softmax(self.model(x).float(), dim=1)  # type: ignore[misc]  # no ORT session: the model was built
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

        self._given = model
        self._preference = runtime
        super().__init__(lambda: model or efficientnet_lite0(pretrained=True), imagenet_classes(), top_k, batch_size, device,
                         runtime, self._imagenet_graph)
        self.nvjpeg = _nvjpeg_decoder() if (self.cuda and gpu_decode) else None
        self.version = "efficientnet-lite0-imagenet1k"

    def _imagenet_graph(self, device: torch.device) -> Path | None:
        """The cached ONNX graph of the pretrained model, exported on first use; None where torch will run.

        The cache is keyed by the shipped weights file's digest, so a worker whose cache holds the graph never builds
        the torch model. Under ``auto`` a cache that cannot be written (a read-only home on an executor) means torch,
        with a warning; under ``onnxruntime`` it is an error that names the setting to change."""
        if device.type != "cpu" or not onnxruntime_available():
            return None
        try:
            if self._given is not None:
                return cached_graph(image_graph_spec(self._given, 3, IMAGENET_SIZE), "efficientnet_lite0-imagenet1k")
            return pretrained_imagenet_graph()
        except OSError as e:
            if self._preference == "onnxruntime":
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
        self.preprocessing = dict(folder.preprocessing)
        self.size = int(folder.preprocessing["image_size"])
        self.channels = int(folder.preprocessing["channels"])
        self.version = folder.version
        settings = {**folder.model_settings, "in_channels": folder.preprocessing["channels"], "pretrained": False}  # weights come next
        super().__init__(lambda: folder.load_weights(build_image_model(len(folder.classes), settings)), folder.classes, top_k,
                         batch_size, device, runtime, lambda _device: folder.graph(quantized))

    def prepare_one(self, data: bytes) -> np.ndarray:
        return preprocess_image(data, self.preprocessing)

