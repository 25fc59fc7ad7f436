"""The settings a task's model is built from and the preprocessing it expects, derived from conf."""

from __future__ import annotations

from typing import Any

from deepbatch.config import Conf


def model_settings(conf: Conf, task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_settings, preprocessing) of ``task`` from ``conf``: what training records in the model folder
    (config.json's model_settings, preprocessing.json) and what inference rebuilds the model from."""
    from deepbatch.models.pretrained import resolve_pretrained

    d, hp = conf.datasets, getattr(conf.train, task)
    if task == "image_cls":
        return ({"in_channels": d.image_channels, "width": hp.width, "dropout": hp.dropout},
                {"image_size": d.image_size, "channels": d.image_channels, "scale": "x/255", "mean": 0.5, "std": 0.5})  # fmt: skip
    if task == "text_cls":
        encoder = str(resolve_pretrained(conf.train.text_encoder))
        return ({"encoder_dir": encoder, "freeze_encoder": hp.freeze_encoder, "head_hidden": hp.head_hidden, "dropout": hp.dropout},
                {"tokenizer": str(resolve_pretrained(d.text_tokenizer)), "max_length": d.text_max_length, "padding": "max_length",
                 "truncation": True})  # fmt: skip
    if task == "video_cls":
        return ({"pooling": hp.pooling, "pretrained": True, "dropout": hp.dropout},
                {"frames": d.video_frames, "size": d.video_size, "colour": "RGB", "scale": "x/255", "mean": 0.5, "std": 0.5})  # fmt: skip
    raise ValueError(f"unknown task {task!r}")
