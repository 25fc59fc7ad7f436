"""The modality registry: every modality keeps the contract, tasks resolve through it, and no code outside it
compares modality names."""

from __future__ import annotations

import pytest
import torch

from deepbatch.errors import ConfigError
from deepbatch.modality import (
    MODALITIES,
    CoreSpec,
    ModalityContract,
    core_factory,
    is_trained,
    modality_of,
    model_of,
    model_settings,
)
from deepbatch.train.data import to_inputs
from tests.conftest import make_conf

pytestmark = pytest.mark.unit

CONTRACT = sorted(n for n in dir(ModalityContract) if not n.startswith("_"))


@pytest.mark.parametrize("name", sorted(MODALITIES))
def test_every_modality_keeps_the_whole_contract(name) -> None:
    modality = MODALITIES[name]
    assert isinstance(modality, ModalityContract) and modality.name == name
    missing = [m for m in CONTRACT if not hasattr(modality, m)]
    assert missing == []
    gold = modality.gold_schema(("speaker",))
    assert {"record_id", "label", "label_index", "split"} <= set(gold.names) and "label_index" in modality.petastorm_fields
    assert ("speaker" in gold.names) == modality.reads_records  # a text source's metadata fields pass through to gold
    assert modality.core_kind in modality.cores and set(modality.export_check_rows) == {"val", "test", "train"}


def test_core_kinds_come_from_the_registry_and_an_unknown_one_names_those_there_are() -> None:
    assert core_factory("imagenet") is MODALITIES["image"].cores["imagenet"]
    assert core_factory("hf_text") is MODALITIES["text"].cores["hf_text"]
    with pytest.raises(ConfigError, match=r"unknown predictor core 'audio': the registered modalities provide .*hf_text.*imagenet"):
        CoreSpec("audio").build()


def test_an_entry_point_that_is_not_a_modality_is_refused_by_name(monkeypatch) -> None:
    import deepbatch.modality as registry

    monkeypatch.setattr(registry, "_entry_points", lambda: {"audio": "deepbatch.errors:ConfigError"})
    MODALITIES.reload()
    try:
        with pytest.raises(ConfigError, match=r"entry point audio = deepbatch.errors:ConfigError \(group deepbatch.modalities\) is not a modality"):
            list(MODALITIES)
    finally:
        monkeypatch.undo()
        MODALITIES.reload()
    assert sorted(MODALITIES) == ["image", "text", "video"]


def test_tasks_resolve_to_their_modality_and_model_and_an_unknown_task_is_refused(tmp_path) -> None:
    conf = make_conf(tmp_path)
    assert {t: modality_of(conf, t).name for t in conf.tasks} == {"image_cls": "image", "text_cls": "text", "video_cls": "video",
                                                                 "imagenet": "image"}
    assert {t: model_of(conf, t) for t in conf.tasks} == {"image_cls": "compact_cnn", "text_cls": "minilm", "video_cls": "efficientnet_lite0",
                                                          "imagenet": "imagenet"}
    assert [t for t in conf.tasks if not is_trained(conf, t)] == ["imagenet"]
    with pytest.raises(ConfigError, match="unknown task 'audio_cls': declared tasks are image_cls, text_cls, video_cls, imagenet"):
        modality_of(conf, "audio_cls")


def test_the_registry_gives_each_task_its_settings_inputs_and_core_options(tmp_path) -> None:
    conf = make_conf(tmp_path)
    settings, prep = model_settings(conf, "image_cls")
    assert settings["in_channels"] == conf.datasets.image_channels and prep["image_size"] == conf.datasets.image_size
    (x,), y = to_inputs("image", {"image": torch.zeros(2, 28, 28, dtype=torch.uint8), "label_index": torch.tensor([1, 2])}, torch.device("cpu"))
    assert x.shape == (2, 1, 28, 28) and float(x.min()) == -1.0 and y.tolist() == [1, 2]
    (ids, mask), _ = to_inputs("text", {"input_ids": torch.ones(2, 8, dtype=torch.int32), "label_index": torch.tensor([0, 1]),
                                             "attention_mask": torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]])},
                               torch.device("cpu"))
    assert ids.shape == (2, 3) and mask.dtype == torch.long  # padding columns dropped
    assert modality_of(conf, "image_cls").core_options(conf, ["a", "b", "c"])["top_k"] == 3
    assert modality_of(conf, "video_cls").core_options(conf, ["a"])["frames_per_clip"] == conf.infer.video.frames_per_clip


def test_efficientnet_lite0_image_tasks_use_the_imagenet_preprocessing_and_a_frozen_backbone(tmp_path) -> None:
    import cv2
    import numpy as np

    from deepbatch.cores.image import imagenet_preprocess, preprocess_image
    from deepbatch.train.cached import supports_feature_cache

    conf = make_conf(tmp_path, "tasks.image_cls.model=efficientnet_lite0")
    settings, prep = model_settings(conf, "image_cls")
    assert (prep["image_size"], prep["channels"], prep["resize"]) == (224, 3, "shorter_crop") and settings["model"] == "efficientnet_lite0"
    png = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (40, 60), dtype=np.uint8))[1].tobytes()
    assert np.array_equal(preprocess_image(png, prep), imagenet_preprocess(png))  # defined once, used by training and the core
    assert preprocess_image(png, model_settings(make_conf(tmp_path), "image_cls")[1]).shape == (28, 28, 1)  # compact_cnn: squashed
    model = MODALITIES["image"].build(4, {**settings, "pretrained": False}).train()
    assert supports_feature_cache(model) and not model.backbone.training and model.head.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    assert model(x).shape == (2, 4)
    model.eval()
    assert torch.allclose(model(features=model.encode(x)), model(x))
    tuned = MODALITIES["image"].build(4, {**settings, "pretrained": False, "freeze_encoder": False}).train()
    assert not supports_feature_cache(tuned) and tuned.backbone.training and all(p.requires_grad for p in tuned.backbone.parameters())


@pytest.mark.parametrize("sequence_classification", [False, True])
def test_an_hf_text_model_is_any_local_checkpoint_loaded_from_safetensors(tmp_path, sequence_classification) -> None:
    from tests.conftest import tiny_hf_checkpoint

    folder = tiny_hf_checkpoint(tmp_path / "ckpt", sequence_classification)
    conf = make_conf(tmp_path, f"tasks.text_cls.model=hf:{folder}")
    settings, prep = model_settings(conf, "text_cls")
    assert settings["encoder_dir"] == prep["tokenizer"] == str(folder)  # its own tokenizer, not MiniLM's
    model = MODALITIES["text"].build(2, settings).eval()
    ids, mask = torch.randint(0, 1000, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    assert model.encode(ids, mask).shape == (2, 32) and model(ids, mask).shape == (2, 2)


def test_an_hf_checkpoint_without_safetensors_or_a_folder_is_refused_by_name(tmp_path) -> None:
    from tests.conftest import tiny_hf_checkpoint

    folder = tiny_hf_checkpoint(tmp_path / "pickled", safetensors=False)
    with pytest.raises(ConfigError, match=r"model 'hf:.*pickled': .* holds no \*.safetensors weights; .*use_safetensors=True"):
        model_settings(make_conf(tmp_path, f"tasks.text_cls.model=hf:{folder}"), "text_cls")
    with pytest.raises(ConfigError, match=r"'tasks.text_cls.model' must be one of minilm, hf:<local folder> for modality text"):
        make_conf(tmp_path, "tasks.text_cls.model=bert")


def test_an_inference_only_text_task_needs_a_sequence_classification_checkpoint(tmp_path) -> None:
    from deepbatch.models.pretrained import sequence_classifier_folder
    from tests.conftest import tiny_hf_checkpoint

    encoder = tiny_hf_checkpoint(tmp_path / "encoder")
    classifier = tiny_hf_checkpoint(tmp_path / "classifier", sequence_classification=True)
    conf = make_conf(tmp_path, f"tasks.shipped={{modality: text, source: text, labels: none, model: 'hf:{classifier}'}}")
    assert not is_trained(conf, "shipped") and is_trained(conf, "text_cls")
    assert sequence_classifier_folder(str(classifier), "tasks.shipped.model") == classifier
    with pytest.raises(ConfigError, match=r"conf key 'tasks.shipped.model': .*encoder is not a sequence-classification checkpoint"):
        sequence_classifier_folder(str(encoder), "tasks.shipped.model")


def test_a_modality_from_an_entry_point_joins_the_registry_and_its_tasks_resolve(monkeypatch, tmp_path) -> None:
    import deepbatch.modality as registry
    from deepbatch.catalog import source

    monkeypatch.setattr(registry, "_entry_points", lambda: {"audio": "tests.plugins.audio_modality:MODALITY"})
    MODALITIES.reload()
    try:
        assert sorted(MODALITIES) == ["audio", "image", "text", "video"] and isinstance(MODALITIES["audio"], ModalityContract)
        assert core_factory("audio") is MODALITIES["audio"].cores["audio"]
        conf = make_conf(tmp_path, "sources.tones={kind: files}", "tasks.pitch={modality: audio, source: tones, labels: folder}")
        assert modality_of(conf, "pitch") is MODALITIES["audio"] and model_of(conf, "pitch") == "spectrum_mlp"
        assert (source(conf, "tones").glob, source(conf, "tones").id_from) == ("*.wav", "path")
        assert model_settings(conf, "pitch")[0] == {"hidden": 16}  # the section's default
        tuned = make_conf(tmp_path, "sources.tones={kind: files}", "tasks.pitch={modality: audio, source: tones, labels: folder}",
                          "modalities.audio.hidden=24")
        assert model_settings(tuned, "pitch")[0] == {"hidden": 24}
        with pytest.raises(ConfigError, match=r"unknown conf key 'modalities.audio.width'; valid keys here: hidden"):
            make_conf(tmp_path, "modalities.audio.width=3")
        with pytest.raises(ConfigError, match=r"conf key 'modalities.audio.hidden': Input should be a valid integer, got 'wide'"):
            make_conf(tmp_path, "modalities.audio.hidden=wide")
    finally:
        monkeypatch.undo()
        MODALITIES.reload()
    with pytest.raises(ConfigError, match=r"conf key 'tasks.pitch.modality' must be one of image, text, video, got 'audio'"):
        make_conf(tmp_path, "sources.tones={kind: files}", "tasks.pitch={modality: audio, source: tones, labels: folder}")
    with pytest.raises(ConfigError, match=r"conf key 'modalities.audio': no modality 'audio' is registered .* install its package"):
        make_conf(tmp_path, "modalities.audio.hidden=3")
    with pytest.raises(ConfigError, match=r"modality 'image' takes no settings of its own \(conf key 'modalities.image'\)"):
        make_conf(tmp_path, "modalities.image.size=3")
