"""Frozen-encoder training: run the frozen part once, then train the head on its features.

With a frozen MiniLM or EfficientNet backbone every epoch would recompute the
same features; computing them once per shard makes epochs cost a head's
forward/backward only (the "frozen encoder + linear model" recipe).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def encode_split(model: nn.Module, loader: Any, modality: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) for every row a finite loader yields, computed with the frozen part."""
    from deepbatch.train.data import to_inputs

    feats, labels = [], []
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = to_inputs(modality, batch, device)
                feats.append(model.encode(*x))  # type: ignore[operator]
                labels.append(y)
    finally:
        loader.reader.stop()
        loader.reader.join()
    if not feats:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(feats), torch.cat(labels)


def epoch_order(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)


def supports_feature_cache(model: nn.Module) -> bool:
    return bool(getattr(model, "frozen", False)) and callable(getattr(model, "encode", None))
