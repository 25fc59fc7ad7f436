"""The run report's charts: PNG bytes from plain figures (matplotlib, Agg), no Spark."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_SPLIT_COLOURS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def class_balance_chart(task: str, prof: dict[str, Any]) -> bytes:
    classes = list(prof["balance"]["counts"])
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(classes) + 2), 3.6))
    width = 0.27
    for i, split in enumerate(("train", "val", "test")):
        counts = prof["balance_by_split"][split]["counts"]
        ax.bar([x + (i - 1) * width for x in range(len(classes))], [counts[c] for c in classes], width, label=split, color=_SPLIT_COLOURS[split])
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=30, ha="right")
    ratio = prof["balance"]["imbalance_ratio"]
    ax.set_title(f"{task}: class balance (imbalance ratio {ratio:.2f})" if ratio else f"{task}: class balance")
    ax.set_ylabel("records")
    ax.legend()
    return _png(fig)


def bar_chart(title: str, counts: dict[Any, int], xlabel: str, horizontal: bool = False) -> bytes:
    keys = [str(k) for k in counts]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.35 * len(keys) + 1) if horizontal else 3.4))
    if horizontal:
        ax.barh(keys, list(counts.values()), color="#C44E52")
        ax.set_xlabel("records")
    else:
        ax.bar(keys, list(counts.values()), color="#4C72B0")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("records")
        if len(keys) > 12:
            ax.set_xticks(range(0, len(keys), max(1, len(keys) // 12)))
    ax.set_title(title)
    return _png(fig)


def training_curves(history: list[dict[str, Any]]) -> bytes:
    """Loss and accuracy per epoch, train against val."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            ax.plot(epochs, [h[f"{split}_{metric}"] for h in history], marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_title("loss" if metric == "loss" else "accuracy")
        ax.legend()
    return _png(fig)


def confusion_heatmap(title: str, matrix: list[list[int]], classes: list[str]) -> bytes:
    """Rows: true class, columns: predicted; each cell shows its count, shaded by the row's share."""
    import numpy as np

    cm = np.asarray(matrix, dtype=float)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(classes) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels(classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7, color="white" if share[i, j] > 0.5 else "#333")
    ax.set_title(title)
    return _png(fig)


def histogram(title: str, bins: dict[float, int], xlabel: str, width: float) -> bytes:
    """Counts per bin (the bin's lower edge as key)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar([float(k) for k in bins], list(bins.values()), width=width, align="edge", color="#4C72B0", edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records")
    ax.set_title(title)
    return _png(fig)
