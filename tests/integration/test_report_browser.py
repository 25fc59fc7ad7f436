"""The run report page in a real headless Chromium: every picture loads, no console errors, phone-width."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepbatch.report.data import MediaSamples, QuarantineSample, data_part, image_sheet
from deepbatch.report.model import model_part
from deepbatch.report.predictions import ScoredSample, predictions_part
from deepbatch.report.thumbs import array_png, thumbnail_png
from deepbatch.stages.analyse import class_balance
from tests.browser import check_page
from tests.conftest import REPO

pytestmark = pytest.mark.integration

SCREENSHOTS = REPO / "build" / "test-output"


def _profile() -> dict:
    counts = {"cat": 3, "dog": 2}
    return {"rows": 5, "by_split": {"train": 5}, "balance": class_balance(counts, ["cat", "dog"]), "image_sizes": {"12x12": 5},
            "balance_by_split": {s: class_balance(counts if s == "train" else {}, ["cat", "dog"]) for s in ("train", "val", "test")}}


def _parts() -> list:
    rng = np.random.default_rng(0)
    pics = [array_png(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8), 12) for _ in range(4)]
    report = {"run_date": "2026-11-27", "conf_hash": "h", "tasks": {"pets": _profile()}, "quarantine": {"silver/images": {"UNDECODABLE_IMAGE": 1}},
              "comparison": None}
    data = data_part(report, {"pets": MediaSamples("a sample of images per class", image_sheet({"cat": pics[:2], "dog": pics[2:]}))},
                     [QuarantineSample("quarantine/clean/images", "UNDECODABLE_IMAGE", "bad", "x.png", b"junk")])
    metrics = {"history": [{"epoch": 1, "train_loss": 1, "val_loss": 1, "train_acc": 0.5, "val_acc": 0.5}], "best_val_acc": 0.5, "hparams": {},
               "test": {"accuracy": 0.5, "n": 2, "confusion_matrix": [[1, 0], [1, 0]],
                        "per_class": {"cat": {"precision": 0.5, "recall": 1.0, "support": 1}, "dog": {"precision": 0.0, "recall": 0.0, "support": 1}}}}
    model = model_part("pets", metrics, {"mlflow_run_id": "r1"}, ["cat", "dog"])
    preds = predictions_part("pets", thumbnail_png, {"records": 5, "accuracy_by_split": {"test": {"n": 2, "accuracy": 0.5}}}, {0.5: 2, 0.9: 3},
                             [ScoredSample("d1", "dog", "cat", 0.93, content=pics[3]), ScoredSample("d2", "dog", "cat", 0.9, content=b"junk")], [])
    return [data, model, preds]


def test_report_page_loads_every_picture_without_console_errors_and_fits_a_phone(tmp_path: Path) -> None:
    from deepbatch.report.page import render_page

    for name, data in render_page("2026-11-27", _parts()).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    check = check_page(tmp_path / "report.html", SCREENSHOTS / "report_parts.png")
    assert len(check.images) == 10
    assert [i["src"] for i in check.images if i["naturalWidth"] == 0] == []
    assert check.console_errors == []
    assert {"data", "model", "predictions", "part-data", "part-model_pets", "part-predictions_pets"} <= check.ids
    assert check.phone_overflow_px <= 0
    assert check.screenshot.stat().st_size > 10_000


def test_a_missing_picture_is_caught_by_the_browser_check(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text('<!doctype html><html><body><img src="gone.png" alt="x"><img src="ok.png"></body></html>')
    (tmp_path / "ok.png").write_bytes(array_png(np.zeros((4, 4), dtype=np.uint8), 4))
    check = check_page(tmp_path / "report.html", tmp_path / "shot.png")
    assert [i["src"] for i in check.images if i["naturalWidth"] == 0] == ["gone.png"]
    assert any("gone.png" in e for e in check.console_errors)
