"""Model folders with freshly initialised heads, written exactly as ``deepbatch train`` writes them.

For wiring checks and throughput benchmarks before (or without) a training run:
the folder has the real layout (safetensors, config, label map, preprocessing,
the text encoder's assets) and the real pretrained parts (MiniLM encoder,
EfficientNet-Lite0 backbone); only the task heads are untrained, so the
predictions are meaningless but the compute is the trained model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from deepbatch.catalog import classes_of
from deepbatch.config import Conf
from deepbatch.modality import modality_of, model_settings
from deepbatch.train.outputs import save_model_folder


def write_untrained_model(conf: Conf, task: str, folder: Path, seed: int = 3, classes: list[str] | None = None,
                          trained_for: str | None = None) -> Path:
    """Write ``folder`` as a model folder for ``task`` with seeded, untrained heads; returns it. ``trained_for``: the run
    date infer's ``model_version: run`` takes it to be trained for (a train manifest saying so)."""
    settings, preprocessing = model_settings(conf, task)
    if "freeze_encoder" in settings:
        settings["freeze_encoder"] = True  # inference-only folder: nothing to fine-tune
    classes = classes or classes_of(conf, task) or ["class_0", "class_1"]
    modality = modality_of(conf, task)
    torch.manual_seed(seed)
    model = modality.build(len(classes), settings).eval()
    save_model_folder(folder, model.state_dict(), {"task": task, "model_settings": settings, "num_classes": len(classes)},
                      {c: i for i, c in enumerate(classes)}, preprocessing, {"history": [], "untrained": True})
    modality.save_assets(folder, {"preprocessing": preprocessing}, model)
    if trained_for:
        (folder / "_train_manifest.json").write_text(json.dumps({"stage": "train", "task": task, "run_date": trained_for, "untrained": True}))
    return folder
