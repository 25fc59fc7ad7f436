from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from deepbatch.cores.common import latest_model_dir, local_path
from deepbatch.cores.image import (
    ImageNetClassifier,
    TrainedImageClassifier,
    imagenet_classes,
    imagenet_preprocess,
    resize_crop_array,
    resize_crop_tensor,
)
from deepbatch.errors import ConfigError
from deepbatch.media.image import decode_image, to_channels

pytestmark = pytest.mark.unit

PHOTOS = Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0]) / "data"
CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}


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
    photos = pd.Series([(PHOTOS / n).read_bytes() for n in ("chelsea.png", "coffee.png", "rocket.jpg")])
    out = core.predict(photos)
    assert CATS & set(out.at[0, "top_labels"]), out.at[0, "top_labels"]
    assert {"espresso", "cup", "coffee mug", "eggnog", "cappuccino"} & set(out.at[1, "top_labels"]), out.at[1, "top_labels"]
    assert {"missile", "projectile", "space shuttle"} & set(out.at[2, "top_labels"]), out.at[2, "top_labels"]
    for probs in out["top_probs"]:
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


def test_full_distribution_sums_to_one_and_bad_inputs_give_error_rows(core) -> None:
    full = ImageNetClassifier(top_k=1000, batch_size=4, model=core.model)
    good = (PHOTOS / "astronaut.png").read_bytes()
    out = full.predict(pd.Series([good, b"", b"\x89PNG\r\n\x1a\nbroken", None], index=[10, 11, 12, 13]))
    assert list(out.index) == [10, 11, 12, 13]  # rows stay aligned with the input batch
    assert sum(out.at[10, "top_probs"]) == pytest.approx(1.0, abs=1e-4) and out.at[10, "error"] is None
    assert out.at[11, "error"].startswith("EMPTY_INPUT") and out.at[11, "top_labels"] is None
    assert out.at[12, "error"].startswith("UNDECODABLE_IMAGE")
    assert out.at[13, "error"].startswith("EMPTY_INPUT")


def test_batching_does_not_change_predictions(core) -> None:
    photos = pd.Series([(PHOTOS / n).read_bytes() for n in ("chelsea.png", "coffee.png", "camera.png")])
    one = ImageNetClassifier(top_k=5, batch_size=1, model=core.model).predict(photos)
    three = ImageNetClassifier(top_k=5, batch_size=3, model=core.model).predict(photos)
    assert list(one["top_labels"]) == list(three["top_labels"])
    np.testing.assert_allclose(np.array(list(one["top_probs"])), np.array(list(three["top_probs"])), atol=1e-5)


def test_gpu_path_resize_matches_the_cpu_one_and_keeps_the_label(core) -> None:
    """The tensor resize/crop the CUDA path uses, run here on the CPU, agrees with OpenCV's."""
    img = to_channels(decode_image((PHOTOS / "chelsea.png").read_bytes()), 3)
    cpu = resize_crop_array(img)
    gpu_style = resize_crop_tensor(torch.from_numpy(img).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    assert gpu_style.shape == cpu.shape == (224, 224, 3)
    assert np.abs(cpu.astype(int) - gpu_style.astype(int)).mean() < 2.0
    x = torch.from_numpy(np.stack([cpu, gpu_style])).permute(0, 3, 1, 2)
    _, idx = core._launch(x)
    assert idx[0, 0] == idx[1, 0]


def test_trained_image_core_reads_its_folder(model_root) -> None:
    model_dir = latest_model_dir(model_root / "models", "image_cls")
    core = TrainedImageClassifier(str(model_dir), top_k=10)
    pngs = sorted((PHOTOS).glob("*.png"))[:3]
    out = core.predict(pd.Series([p.read_bytes() for p in pngs] + [b"junk"]))
    assert core.version == "v1" and core.size == 28 and core.channels == 1
    for labels, probs in zip(out["top_labels"][:3], out["top_probs"][:3], strict=True):
        assert sorted(labels) == sorted(core.classes) and sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert out.at[3, "error"].startswith("UNDECODABLE_IMAGE")


def test_model_folders_are_found_or_refused_clearly(model_root, tmp_path) -> None:
    assert latest_model_dir(f"file://{model_root}/models", "image_cls").name == "v1"
    assert latest_model_dir(model_root / "models", "image_cls", "v1").name == "v1"
    with pytest.raises(ConfigError, match="no trained image_cls model"):
        latest_model_dir(tmp_path, "image_cls")
    with pytest.raises(ConfigError, match="no trained image_cls model at"):
        latest_model_dir(model_root / "models", "image_cls", "v9")
    (tmp_path / "image_cls" / "v2").mkdir(parents=True)
    (tmp_path / "image_cls" / "v2" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="missing config.json"):
        TrainedImageClassifier(str(tmp_path / "image_cls" / "v2"))
    assert local_path("file:/a/b") == "/a/b" and local_path("file:///a/b") == "/a/b" and local_path("hdfs://nn/a") == "hdfs://nn/a"


def test_batched_gpu_resize_crops_pre_resized_images_without_interpolating() -> None:
    from deepbatch.cores.image import resize_crop_many

    torch.manual_seed(0)
    wide = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    square = torch.randint(0, 256, (3, 256, 256), dtype=torch.uint8)
    out = resize_crop_many([wide, square, wide])
    assert out.shape == (3, 3, 224, 224) and out.dtype == torch.uint8
    assert torch.equal(out[1], square[:, 16:240, 16:240])  # already at scale: a pure crop
    assert torch.equal(out[0], resize_crop_tensor(wide)) and torch.equal(out[0], out[2])


def _version(root, name: str, trained_for: str | None) -> None:
    folder = root / "image_cls" / name
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    if trained_for:
        (folder / "_train_manifest.json").write_text(json.dumps({"run_date": trained_for}))


def test_a_run_date_is_scored_with_its_own_model_never_a_later_one(tmp_path) -> None:
    from deepbatch.cores.common import model_for_run

    _version(tmp_path, "2026-12-03", None)  # named by its run date (train.version empty)
    _version(tmp_path, "v-late", "2026-12-04")
    _version(tmp_path, "v-early", "2026-12-01")
    _version(tmp_path, "odd", None)  # neither a date nor a manifest: never chosen by run
    picks = {d: (c.path.name, c.trained_for) for d in ("2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2027-01-01")
             for c in [model_for_run(tmp_path, "image_cls", d)]}
    assert picks == {"2026-12-01": ("v-early", "2026-12-01"), "2026-12-02": ("v-early", "2026-12-01"),
                     "2026-12-03": ("2026-12-03", "2026-12-03"), "2026-12-04": ("v-late", "2026-12-04"),
                     "2027-01-01": ("v-late", "2026-12-04")}
    assert model_for_run(tmp_path, "image_cls", "2026-12-02", "").choice == "run"
    latest = model_for_run(tmp_path, "image_cls", "2026-12-02", "latest")
    assert (latest.path.name, latest.choice) == ("v-late", "latest")
    assert model_for_run(tmp_path, "image_cls", "2026-12-02", "odd").describe() == {"model_choice": "pinned", "model_trained_for": None}
    with pytest.raises(ConfigError, match=r"no image_cls model was trained for run date 2026-11-30 or before .*v-late \(for 2026-12-04\)"):
        model_for_run(tmp_path, "image_cls", "2026-11-30")
