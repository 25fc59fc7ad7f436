from __future__ import annotations

import json

import numpy as np
import pytest

from deepbatch.modality import MODALITIES
from deepbatch.report.data import MediaSamples, QuarantineSample, clip_sheet, data_part, image_sheet
from deepbatch.report.model import model_part
from deepbatch.report.page import Part, render_page
from deepbatch.report.predictions import ScoredSample, predictions_part
from deepbatch.report.thumbs import array_png, thumbnail_png
from deepbatch.stages.analyse import class_balance, compare_runs

pytestmark = pytest.mark.unit


def _profile(counts: dict[str, int]) -> dict:
    bal = class_balance(counts, ["a", "b", "c"])
    return {
        "rows": sum(counts.values()),
        "by_split": {"train": sum(counts.values())},
        "balance": bal,
        "balance_by_split": {s: class_balance(counts if s == "train" else {}, ["a", "b", "c"]) for s in ("train", "val", "test")},
        "text_chars": {"min": 1.0, "p50": 5.0, "p90": 9.0, "max": 10.0, "mean": 5.0},
        "text_chars_hist": {0: 3, 20: 1},
    }


def test_class_balance_counts_every_class_and_the_ratio() -> None:
    bal = class_balance({"a": 10, "b": 5}, ["a", "b", "c"])
    assert bal == {"counts": {"a": 10, "b": 5, "c": 0}, "imbalance_ratio": 2.0, "missing_classes": ["c"]}
    assert class_balance({}, ["a", "b"])["imbalance_ratio"] is None


def test_compare_runs_reports_deltas() -> None:
    now = {"tasks": {"t": _profile({"a": 6, "b": 2})}}
    before = {"run_date": "2026-11-26", "tasks": {"t": _profile({"a": 4, "b": 4})}}
    comp = compare_runs(now, before)
    assert comp["previous_run_date"] == "2026-11-26"
    assert comp["tasks"]["t"]["rows_delta"] == 0
    assert comp["tasks"]["t"]["class_share_delta"]["a"] == pytest.approx(0.25)
    assert compare_runs(now, None) is None


def _png_bytes(shade: int, size: int = 12) -> bytes:
    return array_png(np.full((size, size), shade, dtype=np.uint8), size)


def _srcs(page: str) -> list[str]:
    import re

    return re.findall(r'<img src="([^"]+)"', page)


def test_data_part_renders_charts_sample_sheets_and_quarantine_previews_that_all_exist() -> None:
    report = {"run_date": "2026-11-27", "conf_hash": "abc", "tasks": {"text_cls": _profile({"a": 6, "b": 2}), "img": _profile({"a": 1, "b": 1})},
              "quarantine": {"silver/text": {"EMPTY_TEXT": 2}}, "comparison": None}
    samples = {"img": MediaSamples(*MODALITIES["image"].report_samples({"a": [_png_bytes(10), _png_bytes(200)], "b": [_png_bytes(90)]}))}
    quarantined = [QuarantineSample("quarantine/clean/images", "UNDECODABLE_IMAGE", "bad bytes", "landing/x.png", b"not an image"),
                   QuarantineSample("quarantine/clean/images", "IMAGE_TOO_LARGE", None, "landing/y.png", None)]
    part = data_part(report, samples, quarantined)
    files = render_page("2026-11-27", [part])
    page = files["report.html"].decode()
    srcs = _srcs(page)
    assert {"data/class_balance_text_cls.png", "data/text_chars_hist_text_cls.png", "data/quarantine.png", "data/samples_img.png",
            "data/quarantined_0.png", "data/quarantined_1.png"} <= set(srcs)
    assert all(files[s].startswith(b"\x89PNG") for s in srcs)  # every picture exists, even for undecodable bytes
    assert "UNDECODABLE_IMAGE" in page and "IMAGE_TOO_LARGE" in page and "3.00" in page
    assert "data/samples_text_cls.png" not in srcs  # a text table has no pictures
    assert 'nothing yet for this run date: run <code>deepbatch train</code>' in page


def test_sample_sheets_skip_undecodable_samples_and_give_none_when_nothing_decodes() -> None:
    assert image_sheet({"a": [b"junk"], "b": [b""]}) is None
    sheet = image_sheet({"a": [b"junk", _png_bytes(50)]})
    assert sheet is not None and sheet.startswith(b"\x89PNG")
    assert clip_sheet({"a": [b"not a clip"]}) is None
    assert MODALITIES["video"].report_samples({"a": [b"not a clip"]}) == ("sampled frames of one clip per class", None)
    assert MODALITIES["text"].samples_per_class(8) == 0 and MODALITIES["video"].samples_per_class(8) == 1


def test_thumbnail_of_bytes_that_are_no_image_is_a_placeholder_png() -> None:
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(thumbnail_png(b"\x89PNG\r\n\x1a\ntruncated")))
    assert img.size == (96, 96)
    colours = img.convert("RGB").getcolors(10_000)
    assert colours is not None and len(colours) > 1  # grey tile with its reason written on it


def _metrics() -> dict:
    return {"history": [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "train_acc": 0.5 + e / 10, "val_acc": 0.4 + e / 10} for e in (1, 2, 3)],
            "best_val_acc": 0.7, "hparams": {"lr": 0.01, "epochs": 3},
            "test": {"accuracy": 0.75, "n": 4, "confusion_matrix": [[2, 0], [1, 1]],
                     "per_class": {"cat": {"precision": 0.6667, "recall": 1.0, "support": 2}, "dog": {"precision": 1.0, "recall": 0.5, "support": 2}}}}


def test_model_part_shows_curves_confusion_matrix_per_class_scores_settings_and_the_mlflow_run() -> None:
    part = model_part("pets", _metrics(), {"dataset_version": "2026-11-27", "mlflow_run_id": "run123", "epochs_done": 3}, ["cat", "dog"])
    assert set(part.files) == {"confusion_pets.png", "curves_pets.png"}
    page = render_page("2026-11-27", [part])["report.html"].decode()
    assert "run123" in page and "2026-11-27" in page and "0.7500" in page
    assert '<td>dog</td><td class="num">1</td><td class="num">0.5</td><td class="num">2</td>' in page  # precision, recall, support
    assert '<td>lr</td><td class="num">0.01</td>' in page
    assert json.loads(part.to_files()["part.json"])["data"]["test"]["accuracy"] == 0.75


def test_predictions_part_shows_confident_errors_as_thumbnails_or_text_and_unlabelled_samples_with_top_k() -> None:
    stats = {"records": 10, "accuracy_by_split": {"test": {"n": 4, "accuracy": 0.5}}, "errors_by_reason": {"UNDECODABLE_IMAGE": 1}}
    errors = [ScoredSample("r1", "cat", "dog", 0.97, content=_png_bytes(30)), ScoredSample("r2", "dog", "cat", 0.9, content=None)]
    image = predictions_part("pets", MODALITIES["image"].preview, stats, {0.5: 3, 0.95: 6}, errors, [])
    page = render_page("d", [image])["report.html"].decode()
    assert {"predictions_pets/error_0.png", "predictions_pets/error_1.png", "predictions_pets/confidence.png"} == set(_srcs(page))
    assert "true: cat" in page and "UNDECODABLE_IMAGE" in page and '<td>test</td><td class="num">4</td><td class="num">0.5</td>' in page
    text = predictions_part("reviews", MODALITIES["text"].preview, {"records": 2}, {0.6: 2}, [ScoredSample("t1", "fresh", "rotten", 0.8, text="<b>dull</b> film")], [])
    page = render_page("d", [text])["report.html"].decode()
    assert "&lt;b&gt;dull&lt;/b&gt; film" in page and "no labelled rows" in page
    shown = predictions_part("imagenet", MODALITIES["image"].preview, {"records": 1}, {}, [], [ScoredSample("p1", None, "tabby", 0.6, [("tabby", 0.6), ("tiger cat", 0.3)], _png_bytes(80))])
    page = render_page("d", [shown])["report.html"].decode()
    assert "tabby 0.600" in page and "tiger cat 0.300" in page and "A sample of predictions" in page


def test_part_round_trips_through_its_files_and_refuses_unknown_kinds_and_blocks() -> None:
    part = Part("model_x", "model", "Model: x", [{"type": "p", "text": "hi"}], {"a.png": b"\x89PNG"}, {"k": 1})
    back = Part.from_files(part.to_files())
    assert (back.key, back.kind, back.blocks, back.files, back.data) == (part.key, part.kind, part.blocks, part.files, part.data)
    with pytest.raises(ValueError, match="kind 'plots'"):
        Part("x", "plots", "X")
    with pytest.raises(ValueError, match="unknown type 'video'"):
        render_page("d", [Part("x", "data", "X", [{"type": "video"}])])


def test_page_orders_sections_and_keeps_each_parts_files_apart() -> None:
    parts = [Part("predictions_b", "predictions", "P", [{"type": "img", "src": "c.png"}], {"c.png": b"1"}),
             Part("model_a", "model", "M", [{"type": "img", "src": "c.png"}], {"c.png": b"2"}),
             Part("data", "data", "D", [], {})]
    files = render_page("2026-11-27", parts)
    page = files["report.html"].decode()
    assert page.index('id="data"') < page.index('id="model"') < page.index('id="predictions"')
    assert files["model_a/c.png"] == b"2" and files["predictions_b/c.png"] == b"1"
    assert 'name="viewport"' in page and "nothing yet" not in page
