"""The one registry of what varies by modality (image, text, video).

Each modality's module (:mod:`.image`, :mod:`.text`, :mod:`.video`) defines the same functions;
stages look them up through :func:`modality_of` instead of branching on a task's name:

- ``silver_schema(metadata)`` and ``gold_schema(metadata)``: its source's silver table and its tasks' gold table;
- ``check(df, conf)``: clean's checks of its source's bronze rows;
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
    petastorm_fields: tuple[str, ...]  # what training reads of a Petastorm row
    core_kind: str  # the predictor core (deepbatch.infer.spark.CoreSpec kind) that scores its model folders
    models: tuple[str, ...]  # the models a task of this modality may train (tasks.<name>.model); the first is the default
    pretrained: tuple[str, ...] = ()  # models that score without training (an inference-only task: labels none)
    prefixes: tuple[str, ...] = ()  # model families named with a prefix, e.g. hf:<local folder>
    uses_tokenizer: bool = False

    def fn(self, name: str) -> Callable[..., Any]:
        """This modality's implementation of ``name`` (see the module docstring)."""
        return getattr(importlib.import_module(f"deepbatch.modality.{self.name}"), name)  # type: ignore[no-any-return]


MODALITIES: dict[str, Modality] = {
    # efficientnet_lite0 (pretrained ImageNet backbone, frozen or fine-tuned) is the default for photographs;
    # compact_cnn is for small greyscale images (the demo's Fashion-MNIST).
    "image": Modality("image", ("image", "label_index"), "image", ("efficientnet_lite0", "compact_cnn"), ("imagenet",)),
    "text": Modality("text", ("input_ids", "attention_mask", "label_index"), "text", ("minilm",), prefixes=("hf:",), uses_tokenizer=True),
    "video": Modality("video", ("frames", "label_index"), "video", ("efficientnet_lite0",)),
}


def modality_of(conf: Any, task: str) -> Modality:
    """The modality of the declared task ``task`` (conf key tasks.<task>.modality)."""
    name = conf.task(task).modality
    if name not in MODALITIES:
        raise ConfigError(f"conf key 'tasks.{task}.modality' must be one of {', '.join(MODALITIES)}, got {name!r}")
    return MODALITIES[name]


def model_of(conf: Any, task: str) -> str:
    """The task's model name: tasks.<task>.model, or its modality's default."""
    return str(conf.task(task).model or modality_of(conf, task).models[0])


def is_trained(conf: Any, task: str) -> bool:
    """Whether the task trains a model (False: labels none, an inference-only task scoring with a pretrained model)."""
    return bool(conf.task(task).labels != "none")
