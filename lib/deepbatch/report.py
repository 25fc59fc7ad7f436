"""Render the analyse report: PNG charts (matplotlib, Agg) and one HTML page.

Pure: a report dict in, ``{file name: bytes}`` out, so it is testable without
Spark and the stage decides where the files are published.
"""

from __future__ import annotations

import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_SPLIT_COLOURS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def class_balance_chart(task: str, prof: dict[str, Any]) -> bytes:
    classes = list(prof["balance"]["counts"])
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(classes) + 2), 3.6))
    width = 0.27
    for i, split in enumerate(("train", "val", "test")):
        counts = prof["balance_by_split"][split]["counts"]
        ax.bar([x + (i - 1) * width for x in range(len(classes))], [counts[c] for c in classes], width, label=split, color=_SPLIT_COLOURS[split])
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=30, ha="right")
    ratio = prof["balance"]["imbalance_ratio"]
    ax.set_title(f"{task}: class balance (imbalance ratio {ratio:.2f})" if ratio else f"{task}: class balance")
    ax.set_ylabel("records")
    ax.legend()
    return _png(fig)


def bar_chart(title: str, counts: dict[Any, int], xlabel: str, horizontal: bool = False) -> bytes:
    keys = [str(k) for k in counts]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.35 * len(keys) + 1) if horizontal else 3.4))
    if horizontal:
        ax.barh(keys, list(counts.values()), color="#C44E52")
        ax.set_xlabel("records")
    else:
        ax.bar(keys, list(counts.values()), color="#4C72B0")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("records")
        if len(keys) > 12:
            ax.set_xticks(range(0, len(keys), max(1, len(keys) // 12)))
    ax.set_title(title)
    return _png(fig)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(report: dict[str, Any]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    sections = []
    for task, prof in report["tasks"].items():
        chart = f"class_balance_{task}.png"
        files[chart] = class_balance_chart(task, prof)
        bal = prof["balance"]
        ratio = f"{bal['imbalance_ratio']:.2f}" if bal["imbalance_ratio"] else "n/a (no labelled rows)"
        missing = f"; classes with no records: {', '.join(bal['missing_classes'])}" if bal["missing_classes"] else ""
        parts = [
            f"<h2>{html.escape(task)}</h2>",
            f"<p>{prof['rows']} rows; imbalance ratio (largest / smallest class) <b>{ratio}</b>{html.escape(missing)}</p>",
            _table(sorted(prof["by_split"].items()), ("split", "rows")),
            _table([(c, n, *(prof["balance_by_split"][s]["counts"][c] for s in ("train", "val", "test"))) for c, n in bal["counts"].items()], ("class", "all", "train", "val", "test")),
            f'<img src="{chart}" alt="class balance of {html.escape(task)}">',
        ]
        if "image_sizes" in prof:
            files["image_sizes.png"] = bar_chart("image sizes (w x h)", prof["image_sizes"], "size")
            parts.append('<img src="image_sizes.png" alt="image sizes">')
        if "text_chars_hist" in prof:
            files["text_length.png"] = bar_chart("text length (characters, 20-char bins)", prof["text_chars_hist"], "characters")
            s = prof["text_chars"]
            parts.append(_table([(k, "" if v is None else round(v, 1)) for k, v in s.items()], ("text_chars", "value")))
            parts.append('<img src="text_length.png" alt="text length histogram">')
        if "frame_count" in prof:
            files["video_frames.png"] = bar_chart("frames per clip", prof["frame_count_hist"], "frames")
            parts.append(_table([(k, "" if v is None else round(v, 1)) for k, v in prof["frame_count"].items()], ("frame_count", "value")))
            parts.append('<img src="video_frames.png" alt="video frame sizes">')
        sections.append("\n".join(parts))
    q_rows = [(t, r, n) for t, reasons in sorted(report["quarantine"].items()) for r, n in sorted(reasons.items())]
    if q_rows:
        files["quarantine.png"] = bar_chart("rejected records by table and reason", {f"{t}: {r}": n for t, r, n in q_rows}, "", horizontal=True)
    quarantine = (
        "<h2>Quarantine and deduplication</h2>"
        + (_table(q_rows, ("table", "reason", "records")) + '<img src="quarantine.png" alt="quarantine by reason">' if q_rows else "<p>nothing rejected</p>")
    )
    comp = report.get("comparison")
    if comp:
        c_rows = [(t, v.get("rows_before", ""), v.get("rows_now", ""), v.get("rows_delta", ""), v.get("max_abs_share_delta", "")) for t, v in comp["tasks"].items()]
        comparison = f"<h2>Compared with {html.escape(str(comp['previous_run_date']))}</h2>" + _table(c_rows, ("task", "rows before", "rows now", "delta", "max class-share change"))
    else:
        comparison = "<h2>Comparison</h2><p>no earlier run date to compare with</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deepbatch report {html.escape(report['run_date'])}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:.6em 0}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}th{{background:#f3f3f3}}img{{display:block;margin:.8em 0;max-width:100%}}</style>
</head><body>
<h1>deepbatch data report: run date {html.escape(report['run_date'])}</h1>
<p>conf hash {html.escape(report['conf_hash'])}. Machine-readable copy: <a href="report.json">report.json</a>.</p>
{''.join(sections)}
{quarantine}
{comparison}
</body></html>
"""
    files["report.html"] = page.encode("utf-8")
    return files
