"""Video predictor core: clips -> sampled frames -> per-frame CNN features -> a clip label.

For each clip the core decodes frames with OpenCV, either every n-th frame or k
frames spread uniformly over the clip, computes EfficientNet-Lite0 features per
frame (at the size the clip model was trained on), optionally the frame's
ImageNet top-1 label, and classifies the clip with the trained clip model
(``models/video_cls/<version>/``) from the frames' features.

Clip bytes come inline, or, for clips larger than the inline limit the Spark
wrapper sets, from ``source_path`` (local, ``file:``, or any URI pyarrow can
open), so large videos do not travel through Arrow.

``predict`` maps a pandas batch of clips to frame rows (one clip becomes many
rows); the clip-level columns (``predicted``, ``predicted_prob``, ``class_probs``) repeat on each of its frame rows. A clip that
cannot be used becomes one row with ``frame_index`` null and an ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from deepbatch.cores.common import ModelFolder, error_text, is_empty, local_copy, pick_device
from deepbatch.cores.image import IMAGENET_SIZE, RESIZE_SHORTER, imagenet_classes, resize_crop_array
from deepbatch.cores.runtime import MODEL_ONNX, GraphSpec, OrtGraph, choose_runtime, model_input, softmax_np
from deepbatch.media.video import clip_file, clip_length, frames_at, uniform_indices

FRAME_COLUMNS = ["record_id", "frame_index", "timestamp_s", "features", "imagenet_label", "imagenet_prob",
                 "predicted", "predicted_prob", "class_probs", "frames_used", "error"]


@dataclass(frozen=True)
class Sampling:
    """Which frames to decode: every n-th (``every_n`` > 0, at most ``max_frames``) or k uniform per clip."""

    frames_per_clip: int = 8
    every_n: int = 0
    max_frames: int = 64

    def indices(self, total: int) -> list[int]:
        if total <= 0:
            return []
        if self.every_n > 0:
            idx = list(range(0, total, self.every_n))
            if len(idx) > self.max_frames:  # keep the spread over the whole clip, not its start
                idx = [idx[i] for i in np.linspace(0, len(idx) - 1, self.max_frames).round().astype(int)]
            return idx
        return uniform_indices(total, self.frames_per_clip)


def read_frames(path: str, sampling: Sampling, frame_count: int | None = None) -> tuple[list[int], list[np.ndarray], float]:
    """(frame indices, RGB frames, fps) for the sampled frames, in one decoding pass."""
    total = clip_length(path, frame_count)
    wanted = sampling.indices(total)
    got, fps = frames_at(path, wanted)
    kept = [j for j in wanted if j in got]
    return kept, [cv2.cvtColor(got[j], cv2.COLOR_BGR2RGB) for j in kept], fps


class VideoClipClassifier:
    """A trained clip model plus frame sampling; see the module docstring."""

    def __init__(self, model_dir: str, sampling: Sampling | None = None, imagenet_top1: bool = True,
                 imagenet_size: int = IMAGENET_SIZE, batch_size: int = 64, device: str | None = None, runtime: str = "torch",
                 quantized: bool = False):
        from deepbatch.models.builders import build_clip_model

        folder = ModelFolder.open(model_dir)
        self.device = pick_device(device)
        self.cuda = self.device.type == "cuda"
        # The backbone's weights are in model.safetensors: build without loading the pretrained file twice.
        model = build_clip_model(len(folder.classes), {**folder.model_settings, "pretrained": False})
        self.model = folder.load_weights(model).to(self.device)
        self.classes = folder.classes
        self.size = int(folder.preprocessing["size"])
        self.sampling = sampling or Sampling(frames_per_clip=int(folder.preprocessing.get("frames", 8)))
        self.imagenet_top1 = imagenet_top1
        self.imagenet_size = imagenet_size
        self.imagenet = imagenet_classes() if imagenet_top1 else []
        self.batch_size = batch_size
        self.version = folder.version
        self.runtime = choose_runtime(runtime, self.device, folder.graph(quantized, "frames"))
        self.ort_frames = OrtGraph(folder.graph(quantized, "frames")) if self.runtime == "onnxruntime" else None
        self.ort_head = OrtGraph(folder.graph(False, "model")) if self.runtime == "onnxruntime" else None

    @property
    def _net(self) -> Any:
        return self.model.backbone.net  # type: ignore[union-attr]

    def graph_specs(self) -> list[GraphSpec]:
        """``frames.onnx``: frames (any batch and size) -> features and ImageNet logits; ``model.onnx``: features -> clip logits."""
        model = self.model.cpu()
        frames = torch.zeros(2, 3, self.size, self.size)
        feats = torch.zeros(1, 4, 1280)
        return [
            GraphSpec("frames.onnx", _FrameGraph(self._net), (frames,), ["pixels"], ["features", "logits"],
                      {"pixels": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch"}, "logits": {0: "batch"}}),
            GraphSpec(MODEL_ONNX, _HeadGraph(model), (feats,), ["features"], ["logits"],
                      {"features": {0: "clips", 1: "frames"}, "logits": {0: "clips"}}),
        ]

    def _forward(self, pixels: np.ndarray, full: bool) -> torch.Tensor:
        """N×H×W×3 uint8 -> 1280-d features (``full=False``) or ImageNet logits (``full=True``)."""
        if self.ort_frames is not None:
            return self._forward_ort(pixels, full)
        outs = []
        for s in range(0, len(pixels), self.batch_size):
            x = torch.from_numpy(pixels[s : s + self.batch_size]).to(self.device).permute(0, 3, 1, 2)
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
                x = x.float().div_(255.0).sub_(0.5).div_(0.5)
                outs.append((self._net(x) if full else self.model.backbone(x)).float())  # type: ignore[operator]
        return torch.cat(outs)

    def calibration_batches(self, rows: pd.DataFrame) -> list[np.ndarray]:
        """Normalised frame batches (one per clip) of the rows' clips, for static int8 calibration of frames.onnx."""
        out = []
        for r in rows.itertuples(index=False):
            try:
                _, frames, _ = self._frames_of(getattr(r, "content", None), getattr(r, "source_path", None), None)
            except Exception:  # noqa: BLE001 - an unusable clip is left out of calibration
                continue
            if frames:
                x = np.stack([cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_AREA) for f in frames])
                out.append(model_input(x))
        return out

    def _forward_ort(self, pixels: np.ndarray, full: bool) -> torch.Tensor:
        """As :meth:`_forward`; the frame graph gives features and ImageNet logits in one pass, so both are kept."""
        feats, logits = [], []
        for s in range(0, len(pixels), self.batch_size):
            f, lg = self.ort_frames.run(model_input(pixels[s : s + self.batch_size]))  # type: ignore[union-attr]
            feats.append(torch.from_numpy(f))
            logits.append(torch.from_numpy(lg))
        self._last_logits = torch.cat(logits)
        return self._last_logits if full else torch.cat(feats)

    def _imagenet_logits(self, feats: torch.Tensor) -> torch.Tensor:
        if self.ort_frames is not None:  # computed with these features
            return self._last_logits
        with torch.inference_mode():
            return self._net._fc(feats)  # type: ignore[no-any-return]

    def _clip_probs(self, feats: torch.Tensor) -> np.ndarray:
        if self.ort_head is not None:
            return softmax_np(self.ort_head.run(np.ascontiguousarray(feats[None].numpy(), dtype=np.float32))[0])[0]
        with torch.inference_mode():
            return np.asarray(torch.softmax(self.model(features=feats[None]).float(), dim=1)[0].cpu().numpy())  # type: ignore[operator]

    def _frames_of(self, content: Any, source_path: str | None, frame_count: int | None) -> tuple[list[int], list[np.ndarray], float]:
        suffix = Path(str(source_path or "clip.mp4")).suffix or ".mp4"
        if not is_empty(content):
            with clip_file(bytes(content), suffix) as path:
                return read_frames(path, self.sampling, frame_count)
        if not source_path:
            raise FileNotFoundError("no clip bytes and no source path")
        with local_copy(str(source_path), suffix) as path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{source_path} is not readable here")
            return read_frames(path, self.sampling, frame_count)

    def predict(self, clips: pd.DataFrame) -> pd.DataFrame:
        """Columns ``record_id``, ``content`` (bytes or null), ``source_path``, ``frame_count`` (optional) -> frame rows."""
        per_clip: list[tuple[Any, list[int], list[np.ndarray], float, str | None]] = []
        for r in clips.itertuples(index=False):
            fc = getattr(r, "frame_count", None)
            fc = None if fc is None or pd.isna(fc) else int(fc)
            try:
                idx, frames, fps = self._frames_of(getattr(r, "content", None), getattr(r, "source_path", None), fc)
                err = None if frames else error_text("UNDECODABLE_VIDEO", "no frame could be decoded")
            except FileNotFoundError as e:
                idx, frames, fps, err = [], [], 0.0, error_text("MISSING_FILE", e)
            except Exception as e:  # noqa: BLE001 - one clip's failure is that clip's error row
                idx, frames, fps, err = [], [], 0.0, error_text("UNDECODABLE_VIDEO", f"{type(e).__name__}: {e}")
            per_clip.append((r.record_id, idx, frames, fps, err))
        all_frames = [f for _, _, frames, _, _ in per_clip for f in frames]
        rows: list[dict[str, Any]] = []
        if all_frames:
            small = np.stack([cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_AREA) for f in all_frames])
            feats = self._forward(small, full=False)
            top1_label: list[str | None] = [None] * len(all_frames)
            top1_prob: list[float | None] = [None] * len(all_frames)
            if self.imagenet_top1:
                if self.imagenet_size == self.size:
                    logits = self._imagenet_logits(feats)
                else:
                    big = np.stack([resize_crop_array(f, self.imagenet_size, round(self.imagenet_size * RESIZE_SHORTER / IMAGENET_SIZE))
                                    for f in all_frames])
                    logits = self._forward(big, full=True)
                p, j = torch.softmax(logits.float(), dim=1).max(dim=1)
                top1_label = [self.imagenet[k] for k in j.cpu().tolist()]
                top1_prob = p.cpu().tolist()
            feats_np = feats.cpu().numpy()
        start = 0
        for rid, idx, frames, fps, err in per_clip:
            if err is not None:
                rows.append(dict.fromkeys(FRAME_COLUMNS) | {"record_id": rid, "frames_used": 0, "error": err})
                continue
            probs = self._clip_probs(feats[start : start + len(frames)])
            best = int(probs.argmax())
            for k, fi in enumerate(idx):
                rows.append({
                    "record_id": rid, "frame_index": fi, "timestamp_s": (fi / fps) if fps > 0 else None,
                    "features": feats_np[start + k].tolist(), "imagenet_label": top1_label[start + k],
                    "imagenet_prob": top1_prob[start + k], "predicted": self.classes[best], "predicted_prob": float(probs[best]),
                    "class_probs": [float(v) for v in probs], "frames_used": len(frames), "error": None,
                })
            start += len(frames)
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)


class _FrameGraph(torch.nn.Module):
    """EfficientNet-Lite0 frames -> (pooled 1280-d features, ImageNet logits), one pass."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.net.extract_features(x).mean(dim=(2, 3))  # type: ignore[operator]
        return feats, self.net._fc(feats)  # type: ignore[operator]


class _HeadGraph(torch.nn.Module):
    """Per-frame features of clips (clips × frames × 1280) -> clip logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features=features)  # type: ignore[no-any-return]
