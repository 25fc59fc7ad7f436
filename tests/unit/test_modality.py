"""The modality registry: every modality implements the same functions, and tasks resolve through it."""

from __future__ import annotations

import pytest
import torch

from deepbatch.errors import ConfigError
from deepbatch.modality import MODALITIES, TASK_MODALITY, modality_of
from deepbatch.models.settings import model_settings
from deepbatch.train.data import to_inputs
from tests.conftest import make_conf

pytestmark = pytest.mark.unit

FUNCTIONS = ("profile", "unischema", "encode_rows", "dataset_extra", "to_inputs", "settings", "build", "save_assets", "core_options")


@pytest.mark.parametrize("name", sorted(MODALITIES))
def test_every_modality_implements_every_function(name) -> None:
    modality = MODALITIES[name]
    assert all(callable(modality.fn(f)) for f in FUNCTIONS)
    from deepbatch.schemas import tables as T

    assert hasattr(T, modality.gold_schema) and "label_index" in modality.petastorm_fields


def test_tasks_resolve_to_their_modality_and_an_unknown_task_is_refused() -> None:
    assert {t: modality_of(t).name for t in TASK_MODALITY} == {"image_cls": "image", "text_cls": "text", "video_cls": "video"}
    with pytest.raises(ConfigError, match="unknown task 'audio_cls'"):
        modality_of("audio_cls")


def test_the_registry_gives_each_task_its_settings_inputs_and_core_options(tmp_path) -> None:
    conf = make_conf(tmp_path)
    settings, prep = model_settings(conf, "image_cls")
    assert settings["in_channels"] == conf.datasets.image_channels and prep["image_size"] == conf.datasets.image_size
    (x,), y = to_inputs("image_cls", {"image": torch.zeros(2, 28, 28, dtype=torch.uint8), "label_index": torch.tensor([1, 2])}, torch.device("cpu"))
    assert x.shape == (2, 1, 28, 28) and float(x.min()) == -1.0 and y.tolist() == [1, 2]
    (ids, mask), _ = to_inputs("text_cls", {"input_ids": torch.ones(2, 8, dtype=torch.int32), "label_index": torch.tensor([0, 1]),
                                             "attention_mask": torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]])},
                               torch.device("cpu"))  # fmt: skip
    assert ids.shape == (2, 3) and mask.dtype == torch.long  # padding columns dropped
    assert modality_of("image_cls").fn("core_options")(conf, ["a", "b", "c"])["top_k"] == 3
    assert modality_of("video_cls").fn("core_options")(conf, ["a"])["frames_per_clip"] == conf.infer.video.frames_per_clip
