from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from deepbatch.cores.common import latest_model_dir
from deepbatch.cores.text import HFSequenceClassifier, TrainedTextClassifier
from deepbatch.errors import ConfigError

pytestmark = pytest.mark.unit

TEXTS = ["a moving, beautifully acted film", "dull, lifeless and far too long", "ok", "the cast is superb but the plot never lands at all"]


@pytest.fixture(scope="module")
def core(model_root) -> TrainedTextClassifier:
    return TrainedTextClassifier(str(latest_model_dir(model_root / "models", "text_cls")), batch_size=2)


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory, core) -> Path:
    """A small local sequence-classification checkpoint, written with save_pretrained."""
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=core.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3,
                     id2label={0: "negative", 1: "neutral", 2: "positive"}, label2id={"negative": 0, "neutral": 1, "positive": 2})
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "tiny-sentiment"
    BertForSequenceClassification(cfg).save_pretrained(str(out))
    core.tokenizer.save_pretrained(str(out))
    return out


def test_probabilities_sum_to_one_and_label_is_the_argmax(core) -> None:
    out = core.predict(pd.Series(TEXTS))
    assert core.classes == ["fresh", "rotten"] and core.version == "v1"
    for probs, label, prob in zip(out["class_probs"], out["predicted"], out["predicted_prob"], strict=True):
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert label == core.classes[int(np.argmax(probs))] and prob == pytest.approx(max(probs))
    assert out["error"].isna().all()


def test_dynamic_padding_and_sorting_do_not_change_predictions(core) -> None:
    together = np.array(list(core.predict(pd.Series(TEXTS))["class_probs"]))
    alone = np.array([core.predict(pd.Series([t]))["class_probs"][0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_matches_the_model_with_fixed_length_padding(core) -> None:
    """The core's dynamic padding gives what the training-time (max_length padding) forward gives."""
    enc = core.tokenizer(TEXTS, truncation=True, max_length=core.max_length, padding="max_length", return_tensors="pt")
    with torch.inference_mode():
        expected = torch.softmax(core.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]), dim=1).numpy()
    np.testing.assert_allclose(np.array(list(core.predict(pd.Series(TEXTS))["class_probs"])), expected, atol=1e-5)


def test_empty_text_gives_an_error_row(core) -> None:
    out = core.predict(pd.Series(["fine film", "", "   ", None]))
    assert out.at[0, "error"] is None
    assert all(e.startswith("EMPTY_INPUT") for e in out["error"][1:])
    assert out["predicted"][1:].isna().all()


def test_a_local_hugging_face_checkpoint_loads_with_its_labels(hf_checkpoint) -> None:
    hf = HFSequenceClassifier(f"file://{hf_checkpoint}", batch_size=4)
    out = hf.predict(pd.Series(TEXTS))
    assert hf.classes == ["negative", "neutral", "positive"] and hf.version == "tiny-sentiment"
    assert all(len(p) == 3 and sum(p) == pytest.approx(1.0, abs=1e-5) for p in out["class_probs"])
    assert set(out["predicted"]) <= set(hf.classes)


def test_a_folder_without_a_checkpoint_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not a Hugging Face checkpoint"):
        HFSequenceClassifier(str(tmp_path))
