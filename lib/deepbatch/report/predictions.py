"""The run report's predictions part for one inference target.

Pure: the target's figures (counts, accuracy by split, a confidence histogram) and a few
scored records in, a :class:`Part` out. Records are shown as thumbnails (images, a clip's
first sampled frame) or as text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deepbatch.report.charts import histogram
from deepbatch.report.page import Part
from deepbatch.report.thumbs import placeholder_png

CONFIDENCE_BIN = 0.05
TEXT_CHARS = 240


@dataclass
class ScoredSample:
    """One scored record, with what the report needs to show it."""

    record_id: str
    label: str | None
    predicted: str | None
    confidence: float | None
    top: list[tuple[str, float]] = field(default_factory=list)
    content: bytes | None = None
    text: str | None = None


Preview = Callable[[bytes | None], bytes | None]  # a record's bytes as a PNG thumbnail; None: the record is shown as text


def preview_png(sample: ScoredSample, preview: Preview) -> bytes:
    if sample.content is None:
        return placeholder_png("no preview: bytes not kept")
    return preview(sample.content) or placeholder_png("no preview")


def _caption(s: ScoredSample) -> list[str]:
    lines = [s.record_id]
    if s.label is not None:
        lines.append(f"true: {s.label}")
    if s.top:
        lines += [f"{lbl} {p:.3f}" for lbl, p in s.top]
    else:
        lines.append(f"predicted: {s.predicted} ({(s.confidence or 0):.3f})")
    return lines


def samples_blocks(name: str, title: str, samples: list[ScoredSample], preview: Preview | None, files: dict[str, bytes]) -> list[dict[str, Any]]:
    """A gallery of thumbnails (records with a preview: images, clips); a table of texts (preview None)."""
    if not samples:
        return []
    if preview is None:
        rows = [[s.record_id, s.label, s.predicted, s.confidence, (s.text or "")[:TEXT_CHARS]] for s in samples]
        return [{"type": "h4", "text": title}, {"type": "table", "header": ["record", "true", "predicted", "confidence", "text"], "rows": rows}]
    items = []
    for i, s in enumerate(samples):
        files[f"{name}_{i}.png"] = preview_png(s, preview)
        items.append({"src": f"{name}_{i}.png", "caption": _caption(s)})
    return [{"type": "h4", "text": title}, {"type": "gallery", "items": items}]


def _figures_blocks(target: str, stats: dict[str, Any]) -> list[dict[str, Any]]:
    chosen = (f" (infer.model_version: {stats['model_choice']}; trained for run date {stats.get('model_trained_for') or 'unknown'})"
              if stats.get("model_choice") else "")
    blocks: list[dict[str, Any]] = [{"type": "p", "text": f"{stats.get('records', 0)} records scored by model {stats.get('model_version') or '-'}"
                                                          f"{chosen} at {stats.get('records_per_s') or '-'} records/s"}]
    acc = stats.get("accuracy_by_split") or {}
    if acc:
        blocks.append({"type": "table", "header": ["split", "labelled rows", "accuracy"], "rows": [[s, v["n"], v["accuracy"]] for s, v in acc.items()]})
    else:
        blocks.append({"type": "p", "text": f"{target} has no labelled rows: accuracy is not measured."})
    errors = stats.get("errors_by_reason") or {}
    if errors:
        blocks.append({"type": "table", "header": ["record error", "records"], "rows": sorted([r, n] for r, n in errors.items())})
    return blocks


def predictions_part(target: str, preview: Preview | None, stats: dict[str, Any], confidence_bins: dict[float, int],
                     confident_errors: list[ScoredSample], showcase: list[ScoredSample]) -> Part:
    """infer's part for ``target``: figures, the confidence histogram, the most confident errors and a sample."""
    files: dict[str, bytes] = {}
    blocks = _figures_blocks(target, stats)
    if confidence_bins:
        files["confidence.png"] = histogram(f"{target}: confidence of the top prediction", confidence_bins, "confidence", CONFIDENCE_BIN)
        blocks.append({"type": "img", "src": "confidence.png", "alt": f"confidence histogram of {target}"})
    blocks += samples_blocks("error", "Most confident errors", confident_errors, preview, files)
    blocks += samples_blocks("sample", "A sample of predictions", showcase, preview, files)
    data = {"target": target, **stats, "confidence_bins": {str(k): v for k, v in confidence_bins.items()},
            "confident_errors": [s.record_id for s in confident_errors]}
    return Part(f"predictions_{target}", "predictions", f"Predictions: {target}", blocks, files, data)
