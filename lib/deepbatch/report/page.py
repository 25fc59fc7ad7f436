"""The run report page: parts (data, models, predictions) in, one HTML page and its images out.

Each stage publishes its own *part* (``part.json`` plus its images); the page is a pure
rendering of every part published for a run date, so analyse, train and infer can each
update it without knowing of the others. A part's body is a list of blocks:

``{"type": "p", "text": ...}``, ``{"type": "h4", "text": ...}``,
``{"type": "table", "header": [...], "rows": [[...], ...]}``,
``{"type": "img", "src": "file.png", "alt": ...}`` and
``{"type": "gallery", "items": [{"src": "file.png", "caption": [line, ...]}, ...]}``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PART_FILE = "part.json"
KINDS = {"data": "Data", "model": "Models", "predictions": "Predictions"}
_NOT_YET = {
    "data": "deepbatch analyse",
    "model": "deepbatch train",
    "predictions": "deepbatch infer",
}


@dataclass
class Part:
    """One stage's section of the run report."""

    key: str  # unique per run date, e.g. "data", "model_image_cls", "predictions_imagenet"
    kind: str  # data | model | predictions
    title: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # machine-readable figures behind the blocks

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"report part {self.key!r} has kind {self.kind!r}; expected one of {sorted(KINDS)}")

    def to_files(self) -> dict[str, bytes]:
        meta = {"key": self.key, "kind": self.kind, "title": self.title, "blocks": self.blocks, "data": self.data}
        return {**self.files, PART_FILE: json.dumps(meta, indent=1, default=str).encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> Part:
        meta = json.loads(files[PART_FILE])
        return cls(meta["key"], meta["kind"], meta["title"], meta["blocks"], {k: v for k, v in files.items() if k != PART_FILE},
                   meta.get("data", {}))


def _cell(value: Any) -> str:
    """A table cell; numbers are right-aligned, text left."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{html.escape('' if value is None else str(value))}</td>"
    return f'<td class="num">{value:.4g}</td>' if isinstance(value, float) else f'<td class="num">{value}</td>'


def _table(block: dict[str, Any], _: str) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block["header"])
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in block["rows"])
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _img(block: dict[str, Any], prefix: str) -> str:
    return f'<img src="{html.escape(prefix + block["src"])}" alt="{html.escape(block.get("alt", ""))}">'


def _gallery(block: dict[str, Any], prefix: str) -> str:
    items = []
    for item in block["items"]:
        caption = "<br>".join(html.escape(str(line)) for line in item.get("caption", []))
        alt = html.escape(str(item.get("caption", [""])[0]) if item.get("caption") else "")
        items.append(f'<figure><img src="{html.escape(prefix + item["src"])}" alt="{alt}"><figcaption>{caption}</figcaption></figure>')
    return f'<div class="gallery">{"".join(items)}</div>'


_BLOCKS: dict[str, Callable[[dict[str, Any], str], str]] = {
    "p": lambda b, _: f"<p>{html.escape(b['text'])}</p>",
    "h4": lambda b, _: f"<h4>{html.escape(b['text'])}</h4>",
    "table": _table,
    "img": _img,
    "gallery": _gallery,
}


def render_part(part: Part, prefix: str) -> str:
    body = []
    for block in part.blocks:
        render = _BLOCKS.get(block.get("type", ""))
        if render is None:
            raise ValueError(f"report part {part.key!r} has a block of unknown type {block.get('type')!r}; expected {sorted(_BLOCKS)}")
        body.append(render(block, prefix))
    return f'<article id="part-{html.escape(part.key)}"><h3>{html.escape(part.title)}</h3>\n' + "\n".join(body) + "</article>"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:0 auto;padding:1em;color:#222;line-height:1.4}
nav a{margin-right:1em}table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;vertical-align:top}td.num{text-align:right}
th{background:#f3f3f3}img{display:block;margin:.8em 0;max-width:100%;height:auto}.scroll{overflow-x:auto}
.gallery{display:flex;flex-wrap:wrap;gap:.6em}.gallery figure{margin:0;width:150px;font-size:.8em;overflow-wrap:anywhere}
.gallery img{margin:0 0 .2em;image-rendering:pixelated}article{border-top:1px solid #ddd;margin-top:1.2em}
@media (max-width:600px){.gallery figure{width:44%}body{padding:.5em}}"""


def render_page(run_date: str, parts: list[Part], header: str = "") -> dict[str, bytes]:
    """The page and every part's images (under ``<part key>/``), as ``{relative path: bytes}``."""
    files: dict[str, bytes] = {}
    sections = []
    for kind, title in KINDS.items():
        mine = sorted((p for p in parts if p.kind == kind), key=lambda p: p.key)
        body = "\n".join(render_part(p, f"{p.key}/") for p in mine) or f"<p>nothing yet for this run date: run <code>{_NOT_YET[kind]}</code>.</p>"
        sections.append(f'<section id="{kind}"><h2>{title}</h2>\n{body}</section>')
        for p in mine:
            files.update({f"{p.key}/{name}": data for name, data in p.files.items()})
    nav = " ".join(f'<a href="#{k}">{t}</a>' for k, t in KINDS.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>deepbatch run report {html.escape(run_date)}</title><link rel="icon" href="data:,"><style>{_STYLE}</style></head><body>
<h1>deepbatch run report: run date {html.escape(run_date)}</h1>
<nav>{nav}</nav>
{header}
{''.join(sections)}
</body></html>
"""
    files["report.html"] = page.encode("utf-8")
    return files
