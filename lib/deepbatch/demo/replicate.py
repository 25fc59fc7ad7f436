"""Grow a landing zone k-fold by replicating its real records under new ids (scaling benchmarks).

Replica r of a record gets the id ``<id>-r<r>`` (r = 0 keeps the original).
Replicas must not be folded by content deduplication, so each replica's bytes
differ without changing what they decode to: PNG files get a ``tEXt`` chunk,
JPEG files a comment segment, MP4 files a trailing ``free`` box, and text
snippets a `` [replica r]`` suffix. Label rows are replicated with their
records. Deliberately bad records are replicated too, so the share of rejects
stays what it was.
"""

from __future__ import annotations

import csv
import json
import shutil
import struct
import zlib
from pathlib import Path

from deepbatch.errors import DemoDataError


def _png_with_text(data: bytes, text: str) -> bytes:
    at = data.rfind(b"IEND")
    if len(data) == 0 or at < 4:
        return data  # empty or truncated: the clean stage rejects it whatever its bytes
    body = b"tEXt" + b"deepbatch\x00" + text.encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return data[: at - 4] + chunk + data[at - 4 :]


def _jpeg_with_comment(data: bytes, text: str) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        return data
    payload = text.encode()
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def _mp4_with_free_box(data: bytes, text: str) -> bytes:
    if len(data) == 0:
        return data
    payload = text.encode()
    return data + struct.pack(">I", len(payload) + 8) + b"free" + payload


def replica_bytes(name: str, data: bytes, r: int) -> bytes:
    if r == 0:
        return data
    tag = f"replica {r}"
    suffix = name.rsplit(".", 1)[-1].lower()
    if suffix == "png":
        return _png_with_text(data, tag)
    if suffix in ("jpg", "jpeg"):
        return _jpeg_with_comment(data, tag)
    if suffix in ("mp4", "mov"):
        return _mp4_with_free_box(data, tag)
    return data + f"\n{tag}".encode() if data else data


def replicate_landing(src: Path, dst: Path, factor: int) -> dict[str, int]:
    """Write ``dst`` as ``src`` with every record replicated ``factor`` times; returns files/records written."""
    if factor < 1:
        raise DemoDataError(f"replication factor must be >= 1, got {factor}")
    if not src.is_dir():
        raise DemoDataError(f"no landing zone at {src}")
    if dst.exists():
        shutil.rmtree(dst)
    counts = {"files": 0, "text_lines": 0, "label_rows": 0}
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src)
        out_dir = dst / rel.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] == "labels" and path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            header, body = rows[0], rows[1:]
            with (out_dir / path.name).open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(header)
                for r in range(factor):
                    w.writerows([[f"{row[0]}-r{r}", *row[1:]] if row and row[0] else row for row in body])
            counts["label_rows"] += len(body) * factor
        elif path.suffix == ".jsonl":  # the demo's text records
            lines = path.read_text(encoding="utf-8").splitlines()
            out = []
            for r in range(factor):
                for line in lines:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        out.append(line)  # malformed lines stay malformed
                        continue
                    if isinstance(rec, dict) and rec.get("review_id"):
                        rec["review_id"] = f"{rec['review_id']}-r{r}"
                    if isinstance(rec, dict) and isinstance(rec.get("text"), str) and rec["text"].strip() and r:
                        rec["text"] = f"{rec['text']} [replica {r}]"
                    out.append(json.dumps(rec, ensure_ascii=False))
            (out_dir / path.name).write_text("\n".join(out) + "\n", encoding="utf-8")
            counts["text_lines"] += len(out)
        elif rel.name.startswith("_"):
            shutil.copyfile(path, out_dir / path.name)
        else:
            data = path.read_bytes()
            for r in range(factor):
                (out_dir / f"{path.stem}-r{r}{path.suffix}").write_bytes(replica_bytes(path.name, data, r))
            counts["files"] += factor
    return counts
