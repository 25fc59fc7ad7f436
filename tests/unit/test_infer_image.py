from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepbatch.infer.image import ImageNetClassifier, imagenet_classes, imagenet_preprocess

pytestmark = pytest.mark.unit

PHOTOS = Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0]) / "data"


@pytest.fixture(scope="module")
def core() -> ImageNetClassifier:
    return ImageNetClassifier(top_k=5, batch_size=2)


def test_class_names_are_the_imagenet_ones() -> None:
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby"


def test_preprocess_centre_crops_to_224() -> None:
    out = imagenet_preprocess((PHOTOS / "chelsea.png").read_bytes())
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


def test_real_photos_get_plausible_top5_labels(core) -> None:
    photos = pd.Series([(PHOTOS / n).read_bytes() for n in ("chelsea.png", "coffee.png")])
    out = core.predict(photos)
    cats = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}
    assert cats & set(out.at[0, "labels"]), out.at[0, "labels"]
    assert {"espresso", "cup", "coffee mug", "eggnog", "cappuccino"} & set(out.at[1, "labels"]), out.at[1, "labels"]
    for probs in out["probs"]:
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


def test_full_distribution_sums_to_one_and_bad_inputs_give_error_rows(core) -> None:
    full = ImageNetClassifier(top_k=1000, batch_size=4, model=core.model)
    good = (PHOTOS / "astronaut.png").read_bytes()
    out = full.predict(pd.Series([good, b"", b"\x89PNG\r\n\x1a\nbroken", None]))
    assert sum(out.at[0, "probs"]) == pytest.approx(1.0, abs=1e-4) and out.at[0, "error"] is None
    assert out.at[1, "error"].startswith("EMPTY_INPUT") and out.at[1, "labels"] is None
    assert out.at[2, "error"].startswith("UNDECODABLE_IMAGE")
    assert out.at[3, "error"].startswith("EMPTY_INPUT")
