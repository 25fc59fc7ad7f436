"""The one registry of what varies by modality (image, text, video).

Each modality's module (:mod:`.image`, :mod:`.text`, :mod:`.video`) defines the same functions;
stages look them up through :func:`modality_of` instead of branching on a task's name:

- ``profile(df)``: analyse's size or length distributions of a gold table;
- ``unischema(d)`` and ``encode_rows(rows, schema, d, tokenizer_dir)``: materialize's Petastorm schema and encoder;
- ``to_inputs(batch, device)``: a Petastorm batch as model inputs;
- ``settings(conf, hp)``: the model settings and preprocessing a model folder records;
- ``build(num_classes, settings)``: the model;
- ``save_assets(folder, params, model)``: files a model folder needs besides the weights;
- ``core_options(conf, classes)``: how the predictor core is built to check a model folder.

The modules import torch, Spark and the media libraries inside their functions, so the
registry itself is light enough for the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepbatch.errors import ConfigError


@dataclass(frozen=True)
class Modality:
    name: str
    gold_schema: str  # the StructType's name in deepbatch.schemas.tables
    petastorm_fields: tuple[str, ...]  # what training reads of a Petastorm row
    core_kind: str  # the predictor core (deepbatch.infer.spark.CoreSpec kind) that scores its model folders
    uses_tokenizer: bool = False

    def fn(self, name: str) -> Callable[..., Any]:
        """This modality's implementation of ``name`` (see the module docstring)."""
        return getattr(importlib.import_module(f"deepbatch.modality.{self.name}"), name)  # type: ignore[no-any-return]


MODALITIES: dict[str, Modality] = {
    "image": Modality("image", "GOLD_IMAGE_CLS", ("image", "label_index"), "image"),
    "text": Modality("text", "GOLD_TEXT_CLS", ("input_ids", "attention_mask", "label_index"), "text", uses_tokenizer=True),
    "video": Modality("video", "GOLD_VIDEO_CLS", ("frames", "label_index"), "video"),
}

# The demo's tasks and their modalities.
TASK_MODALITY: dict[str, str] = {"image_cls": "image", "text_cls": "text", "video_cls": "video"}


def modality_of(task: str) -> Modality:
    try:
        return MODALITIES[TASK_MODALITY[task]]
    except KeyError:
        raise ConfigError(f"unknown task {task!r}; tasks: {', '.join(TASK_MODALITY)}") from None
