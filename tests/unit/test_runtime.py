"""ONNX Runtime cores against the torch cores: export, equivalence, the runtime choice, int8."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from deepbatch.cores.image import ImageNetClassifier
from deepbatch.cores.runtime import choose_runtime
from deepbatch.demo.sources import real_video_clips
from deepbatch.errors import ConfigError, ExportMismatchError
from deepbatch.infer.export import Scored, agreement, build_core, check_equivalence, export_folder, quantize_folder, score
from deepbatch.modality import MODALITIES

pytestmark = pytest.mark.unit

PHOTOS = Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0]) / "data"
TEXTS = ["A wonderful, moving film.", "Dull and far too long.", "The cast is fine but the plot is thin.", "I loved every minute of it!",
         "Not worth the ticket.", "A quiet triumph.", "", "Forgettable."]
VIDEO = {"frames_per_clip": 4, "every_n": 0, "max_frames": 64, "imagenet_top1": False}


def _photos() -> pd.DataFrame:
    names = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "camera.png", "page.png", "coins.png"]
    rows = [(n, (PHOTOS / n).read_bytes()) for n in names if (PHOTOS / n).is_file()] + [("bad", b"not an image")]
    return pd.DataFrame(rows, columns=["record_id", "content"])


def _clips() -> pd.DataFrame:
    paths = sorted(real_video_clips())[:3]
    return pd.DataFrame({"record_id": [p.stem for p in paths], "content": [p.read_bytes() for p in paths],
                         "source_path": [str(p) for p in paths], "frame_count": [None] * len(paths)})


@pytest.fixture(scope="module")
def folders(model_root, tmp_path_factory) -> dict[str, Path]:
    """Copies of the model folders with their ONNX graphs exported."""
    root = tmp_path_factory.mktemp("onnx_models")
    out = {}
    for task, kind, options in (("image_cls", "image", {"top_k": 10}), ("text_cls", "text", {}), ("video_cls", "video", VIDEO)):
        folder = shutil.copytree(model_root / "models" / task / "v1", root / task)
        assert export_folder(MODALITIES[kind], folder, **options) == (["frames.onnx", "model.onnx"] if kind == "video" else ["model.onnx"])
        out[kind] = folder
    return out


def test_auto_picks_onnxruntime_on_cpu_only_where_the_graph_exists(tmp_path) -> None:
    graph = tmp_path / "model.onnx"
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_runtime("auto", cpu, graph) == "torch"  # no graph yet: a folder from before the export
    graph.write_bytes(b"x")
    assert choose_runtime("auto", cpu, graph) == "onnxruntime"
    assert choose_runtime("auto", cuda, graph) == "torch"
    assert choose_runtime("torch", cpu, graph) == "torch"
    assert choose_runtime("onnxruntime", cpu, graph) == "onnxruntime"
    with pytest.raises(ConfigError, match="runs on CPU executors only"):
        choose_runtime("onnxruntime", cuda, graph)
    with pytest.raises(ConfigError, match=r"needs the ONNX graph .*missing\.onnx"):
        choose_runtime("onnxruntime", cpu, tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="infer.runtime"):
        choose_runtime("tensorrt", cpu, graph)


@pytest.mark.parametrize(("kind", "options"), [("image", {"top_k": 10}), ("text", {}), ("video", VIDEO)])
def test_torch_and_onnxruntime_cores_agree_on_the_same_rows(folders, kind, options) -> None:
    rows = {"image": _photos(), "text": pd.DataFrame({"text": TEXTS}), "video": _clips()}[kind]
    result = check_equivalence(MODALITIES[kind], folders[kind], rows, **options)
    assert result["top1_agreement"] >= 0.99 and result["max_prob_diff"] <= 1e-3
    assert result["rows"] == len(rows) - (1 if kind in ("image", "text") else 0)  # the bad image and the empty text are errors in both
    ort = build_core(kind, folders[kind], "auto", **options)
    assert (ort.ort_frames if kind == "video" else ort.ort) is not None  # auto on a CPU with a graph: ONNX Runtime


def test_the_imagenet_core_exports_once_into_the_cache_and_matches_torch(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPBATCH_CACHE", str(tmp_path))
    photos = _photos()["content"]
    ort = ImageNetClassifier(top_k=5, runtime="auto")
    assert ort.runtime == "onnxruntime" and len(list(tmp_path.glob("onnx/efficientnet_lite0-imagenet1k-*/model.onnx"))) == 1
    a = score(ImageNetClassifier(top_k=1000, runtime="torch"), MODALITIES["image"], pd.DataFrame({"content": photos}))
    b = score(ImageNetClassifier(top_k=1000, runtime="onnxruntime"), MODALITIES["image"], pd.DataFrame({"content": photos}))
    result = agreement(a, b)
    assert result["top1_agreement"] == 1.0 and result["max_prob_diff"] < 1e-3
    assert ort.predict(photos.head(1))["top_labels"][0][0] in ("tabby", "tiger cat", "Egyptian cat")  # chelsea the cat


def test_a_folder_without_a_graph_still_scores_with_torch(model_root) -> None:
    core = build_core("image", model_root / "models" / "image_cls" / "v1", "auto", top_k=3)
    assert core.runtime == "torch" and core.ort is None
    assert core.predict(_photos()["content"])["error"].notna().sum() == 1


def test_a_mismatch_beyond_the_tolerance_fails_with_the_figures() -> None:
    a = Scored(np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32), np.array([True, True]))
    b = Scored(np.array([[0.4, 0.6], [0.2, 0.8]], dtype=np.float32), np.array([True, True]))
    assert agreement(a, b) == {"rows": 2, "top1_agreement": 0.5, "max_prob_diff": pytest.approx(0.5), "rows_refused_by_one_runtime": 0}
    with pytest.raises(ExportMismatchError, match="no row could be scored"):
        agreement(a, Scored(b.probs, np.array([False, False])))


def test_int8_is_kept_within_the_allowed_drop_and_refused_beyond_it(folders, tmp_path) -> None:
    folder = shutil.copytree(folders["image"], tmp_path / "image")
    test = _photos().assign(label=["Bag"] * len(_photos()))
    kept = quantize_folder(MODALITIES["image"], folder, "static", 100.0, test, _photos(), top_k=10)
    assert kept["kept"] and (folder / "model.int8.onnx").is_file() and kept["bytes_int8"] < kept["bytes_fp32"]
    assert build_core("image", folder, "auto", quantized=True, top_k=10).ort.path.name == "model.int8.onnx"
    refused = quantize_folder(MODALITIES["image"], folder, "static", -1.0, test, _photos(), top_k=10)  # any change at all is too much
    assert not refused["kept"] and not (folder / "model.int8.onnx").exists()
    assert build_core("image", folder, "auto", quantized=True, top_k=10).ort.path.name == "model.onnx"  # falls back, and says so
    text = quantize_folder(MODALITIES["text"], folders["text"], "static", 100.0, pd.DataFrame({"text": TEXTS[:6], "label": ["fresh"] * 6}), pd.DataFrame())
    assert text["mode"] == "dynamic"  # encoders quantise their weights only
    json.dumps(text)  # recorded in metrics.json as is


def test_an_unwritable_graph_cache_means_torch_under_auto_and_an_error_under_onnxruntime(tmp_path, monkeypatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("DEEPBATCH_CACHE", str(blocked))
    assert ImageNetClassifier(runtime="auto").runtime == "torch"
    with pytest.raises(ConfigError, match="DEEPBATCH_CACHE"):
        ImageNetClassifier(runtime="onnxruntime")


def test_a_core_that_scores_with_onnxruntime_never_builds_its_torch_model(folders, tmp_path, monkeypatch) -> None:
    import deepbatch.models.builders as builders

    monkeypatch.setenv("DEEPBATCH_CACHE", str(tmp_path))
    ImageNetClassifier(runtime="onnxruntime")  # the first worker exports the graph into the cache
    calls: list[str] = []
    real = builders.efficientnet_lite0
    monkeypatch.setattr(builders, "efficientnet_lite0", lambda *a, **k: calls.append("built") or real(*a, **k))
    lean = ImageNetClassifier(runtime="onnxruntime")
    assert lean.model is None and lean.ort is not None and calls == []
    assert lean.predict(_photos()["content"].head(1))["top_labels"][0][0] in ("tabby", "tiger cat", "Egyptian cat")
    with pytest.raises(RuntimeError, match="runtime='torch'"):
        lean.graph_spec()
    assert ImageNetClassifier(runtime="torch").model is not None and calls == ["built"]
    trained = build_core("image", folders["image"], "onnxruntime", top_k=3)
    assert trained.model is None and trained.ort is not None
    text = build_core("text", folders["text"], "onnxruntime")
    assert text.model is None and text.ort is not None
    assert text.predict(pd.Series(TEXTS))["error"].notna().sum() == 1  # the empty one; every other row scored
    assert build_core("text", folders["text"], "torch").model is not None


@pytest.mark.parametrize(("batch", "size", "cuda", "expected"), [(64, 224, False, 16), (8, 224, False, 8), (64, 28, False, 64),
                                                                 (64, 224, True, 64), (64, 1024, False, 1)])
def test_the_cpu_forward_batch_is_bounded_by_pixels_not_only_by_rows(batch: int, size: int, cuda: bool, expected: int) -> None:
    from deepbatch.cores.image import forward_batch

    assert forward_batch(batch, size, cuda) == expected
