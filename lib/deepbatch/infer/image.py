"""Image predictor cores: bytes in a pandas Series -> top-k labels and probabilities.

Testable without Spark; the Spark pandas-UDF wrapper (a later step) only calls
``predict`` on each Arrow batch. The model loads once per core instance.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from deepbatch.media.image import decode_image, to_channels

IMAGENET_SIZE = 224
RESIZE_SHORTER = 256


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in index order (shipped as package data)."""
    text = resources.files("deepbatch.models").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = [line for line in text.splitlines() if line]
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, expected 1000; the package data is damaged")
    return names


def imagenet_preprocess(data: bytes, size: int = IMAGENET_SIZE, shorter: int = RESIZE_SHORTER) -> np.ndarray:
    """Decode, resize the shorter side to ``shorter``, centre-crop ``size``; HxWx3 RGB uint8."""
    img = to_channels(decode_image(data), 3)
    h, w = img.shape[:2]
    scale = shorter / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(img[top : top + size, left : left + size])


class ImageNetClassifier:
    """EfficientNet-Lite0 (pretrained, ImageNet-1k) top-k classification of encoded images.

    ``predict`` returns one row per input with ``labels`` and ``probs`` (top-k,
    best first) and ``error`` (None, or why the input could not be used).
    """

    def __init__(self, top_k: int = 5, batch_size: int = 64, device: str | None = None, model: torch.nn.Module | None = None):
        from deepbatch.models.builders import efficientnet_lite0

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = (model or efficientnet_lite0(pretrained=True)).eval().to(self.device)
        self.classes = imagenet_classes()
        self.top_k = top_k
        self.batch_size = batch_size

    def _forward(self, pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixels).to(self.device).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5).div_(0.5)
        with torch.inference_mode():
            return torch.softmax(self.model(x).float(), dim=1).cpu().numpy()

    def predict(self, images: pd.Series) -> pd.DataFrame:
        labels: list[Any] = [None] * len(images)
        probs: list[Any] = [None] * len(images)
        errors: list[str | None] = [None] * len(images)
        ok_idx, pixels = [], []
        for i, data in enumerate(images):
            if data is None or len(data) == 0:
                errors[i] = "EMPTY_INPUT: no image bytes"
                continue
            try:
                pixels.append(imagenet_preprocess(bytes(data)))
                ok_idx.append(i)
            except ValueError as e:
                errors[i] = f"UNDECODABLE_IMAGE: {e}"
        for start in range(0, len(ok_idx), self.batch_size):
            p = self._forward(np.stack(pixels[start : start + self.batch_size]))
            top = np.argsort(-p, axis=1)[:, : self.top_k]
            for row, i in enumerate(ok_idx[start : start + self.batch_size]):
                labels[i] = [self.classes[j] for j in top[row]]
                probs[i] = [float(p[row, j]) for j in top[row]]
        return pd.DataFrame({"labels": labels, "probs": probs, "error": errors}, index=images.index)


def make_predict_fn(top_k: int = 5, batch_size: int = 64) -> Any:
    """The factory the Spark wrapper calls once per Python worker (predict_batch_udf pattern)."""
    core = ImageNetClassifier(top_k=top_k, batch_size=batch_size)
    return core.predict
