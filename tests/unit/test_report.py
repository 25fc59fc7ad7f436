from __future__ import annotations

import pytest

from deepbatch.report import render_report
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


def test_render_report_writes_png_charts_referenced_by_the_html() -> None:
    report = {"run_date": "2026-11-27", "conf_hash": "abc", "tasks": {"text_cls": _profile({"a": 6, "b": 2})},
              "quarantine": {"silver/text": {"EMPTY_TEXT": 2}}, "comparison": None}
    files = render_report(report)
    pngs = [f for f in files if f.endswith(".png")]
    assert set(pngs) == {"class_balance_text_cls.png", "text_length.png", "quarantine.png"}
    assert all(files[f].startswith(b"\x89PNG") for f in pngs)
    page = files["report.html"].decode()
    assert all(f'src="{f}"' in page for f in pngs)
    assert "3.00" in page and "EMPTY_TEXT" in page
