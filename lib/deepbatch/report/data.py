"""The run report's data part: profiles, class balance, quarantine, and pictures of the data.

Pure: the analyse stage's profile dict and a few sampled records in, a :class:`Part` out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepbatch.report.charts import bar_chart, class_balance_chart
from deepbatch.report.page import Part
from deepbatch.report.thumbs import clip_frames, contact_sheet, decode_preview, placeholder_png, thumbnail_png

STRIP_FRAMES = 6
FRAME_PX = 64


@dataclass
class MediaSamples:
    """Pictures of one gold table's sampled records: what they show, and the contact sheet (None: nothing decoded)."""

    what: str  # e.g. "a sample of images per class"
    sheet: bytes | None


@dataclass
class QuarantineSample:
    table: str
    reason: str
    detail: str | None
    source_path: str | None
    content: bytes | None


def image_sheet(by_class: dict[str, list[bytes]]) -> bytes | None:
    """One row of images per class (the undecodable ones left out); None when nothing decodes."""
    rows = [(label, [p for p in (decode_preview(b) for b in items) if p is not None]) for label, items in sorted(by_class.items())]
    return contact_sheet(rows) if any(r[1] for r in rows) else None


def clip_sheet(by_class: dict[str, list[bytes]]) -> bytes | None:
    """One row of frames from one clip per class; None when no clip decodes."""
    rows = [(label, clip_frames(items[0], STRIP_FRAMES, FRAME_PX) if items else []) for label, items in sorted(by_class.items())]
    return contact_sheet(rows) if any(r[1] for r in rows) else None


def _balance_blocks(task: str, prof: dict[str, Any]) -> list[dict[str, Any]]:
    bal = prof["balance"]
    ratio = f"{bal['imbalance_ratio']:.2f}" if bal["imbalance_ratio"] else "n/a (no labelled rows)"
    missing = f"; classes with no records: {', '.join(bal['missing_classes'])}" if bal["missing_classes"] else ""
    splits = ("train", "val", "test")
    return [
        {"type": "p", "text": f"{prof['rows']} rows; imbalance ratio (largest / smallest class) {ratio}{missing}"},
        {"type": "table", "header": ["split", "rows"], "rows": sorted(prof["by_split"].items())},
        {"type": "table", "header": ["class", "all", *splits],
         "rows": [[c, n, *(prof["balance_by_split"][s]["counts"][c] for s in splits)] for c, n in bal["counts"].items()]},
        {"type": "img", "src": f"class_balance_{task}.png", "alt": f"class balance of {task}"},
    ]


def _size_blocks(task: str, prof: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, Any]]:
    """The modality's distributions, whichever the profile has."""
    blocks: list[dict[str, Any]] = []
    charts = (("image_sizes", "image sizes (w x h)", "size"), ("text_chars_hist", "text length (characters, 20-char bins)", "characters"),
              ("frame_count_hist", "frames per clip", "frames"))
    for key, title, xlabel in charts:
        if key in prof:
            files[f"{key}_{task}.png"] = bar_chart(title, prof[key], xlabel)
            blocks.append({"type": "img", "src": f"{key}_{task}.png", "alt": f"{title} of {task}"})
    for key in ("text_chars", "frame_count"):
        if key in prof:
            blocks.append({"type": "table", "header": [key, "value"], "rows": [[k, v] for k, v in prof[key].items()]})
    return blocks


def _samples_blocks(task: str, samples: MediaSamples | None, files: dict[str, bytes]) -> list[dict[str, Any]]:
    if samples is None or samples.sheet is None:
        return []
    files[f"samples_{task}.png"] = samples.sheet
    return [{"type": "h4", "text": f"{task}: {samples.what}"}, {"type": "img", "src": f"samples_{task}.png", "alt": f"{samples.what} of {task}"}]


def _quarantine_blocks(report: dict[str, Any], quarantined: list[QuarantineSample], files: dict[str, bytes]) -> list[dict[str, Any]]:
    q_rows = [[t, r, n] for t, reasons in sorted(report["quarantine"].items()) for r, n in sorted(reasons.items())]
    if not q_rows:
        return [{"type": "h4", "text": "Quarantine and deduplication"}, {"type": "p", "text": "nothing rejected"}]
    files["quarantine.png"] = bar_chart("rejected records by table and reason", {f"{t}: {r}": n for t, r, n in q_rows}, "", horizontal=True)
    blocks: list[dict[str, Any]] = [{"type": "h4", "text": "Quarantine and deduplication"}, {"type": "table", "header": ["table", "reason", "records"], "rows": q_rows},
              {"type": "img", "src": "quarantine.png", "alt": "quarantine by reason"}]
    items = []
    for i, q in enumerate(quarantined):
        files[f"quarantined_{i}.png"] = thumbnail_png(q.content) if q.content else placeholder_png("no bytes kept")
        name = (q.source_path or "").rstrip("/").rsplit("/", 1)[-1]
        items.append({"src": f"quarantined_{i}.png", "caption": [q.reason, name, (q.detail or "")[:120], q.table]})
    if items:
        blocks += [{"type": "p", "text": "A sample of quarantined media files with their reasons:"}, {"type": "gallery", "items": items}]
    return blocks


def _comparison_blocks(report: dict[str, Any]) -> list[dict[str, Any]]:
    comp = report.get("comparison")
    if not comp:
        return [{"type": "h4", "text": "Comparison"}, {"type": "p", "text": "no earlier run date to compare with"}]
    rows = [[t, v.get("rows_before", ""), v.get("rows_now", ""), v.get("rows_delta", ""), v.get("max_abs_share_delta", "")]
            for t, v in comp["tasks"].items()]
    return [{"type": "h4", "text": f"Compared with {comp['previous_run_date']}"},
            {"type": "table", "header": ["task", "rows before", "rows now", "delta", "max class-share change"], "rows": rows}]


def data_part(report: dict[str, Any], samples: dict[str, MediaSamples] | None = None,
              quarantined: list[QuarantineSample] | None = None) -> Part:
    """analyse's part: per task, balance, sizes and sample pictures; then quarantine and the comparison."""
    files: dict[str, bytes] = {}
    blocks: list[dict[str, Any]] = [{"type": "p", "text": f"conf hash {report['conf_hash']}; the figures are in data/part.json."}]
    for task, prof in report["tasks"].items():
        files[f"class_balance_{task}.png"] = class_balance_chart(task, prof)
        blocks.append({"type": "h4", "text": task})
        blocks += _balance_blocks(task, prof) + _size_blocks(task, prof, files) + _samples_blocks(task, (samples or {}).get(task), files)
    blocks += _quarantine_blocks(report, quarantined or [], files) + _comparison_blocks(report)
    return Part("data", "data", "Gold tables, quarantine and comparison", blocks, files, report)
