"""Write the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/): small valid and unusual inputs.

    python -m tests.fuzz.make_corpus

The files are committed; atheris adds the inputs that reach new code to the same folders during ``make fuzz``.
"""

from __future__ import annotations

import gzip
import io
import json

import cv2
import numpy as np

from tests.faults import catalogue
from tests.fuzz.targets import CORPUS


def _images() -> dict[str, bytes]:
    rgb = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    out = {f"plain.{ext}": cv2.imencode(f".{ext}", rgb)[1].tobytes() for ext in ("png", "jpg", "bmp", "webp", "tiff", "ppm")}
    out["exif6.jpg"] = catalogue.exif_jpeg(rgb, 6)
    out["thumb.jpg"] = catalogue.exif_jpeg(rgb, 3, thumbnail=True)
    out["declared_huge.png"] = catalogue.declared_png(40000, 40000)
    out["grey16.png"] = catalogue.ramp16()
    out["motion.jpg"] = out["plain.jpg"] + b"\x00\x00\x00\x18ftypmp42" + bytes(64)
    return out


def _records() -> dict[str, dict[str, bytes]]:
    lines = [b'{"id": "a", "text": "fine", "label": "x", "meta": "m"}', b'{"id": null, "text": ["list"]}', b"{broken", b"",
             b'{"id": 7, "text": "caf\xe9", "label": null}', b"[" * 40 + b"]" * 40]
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", None, "c"], "label": ["x", "y", None], "text": ["t", "u", "v"]}), buf)
    return {
        "jsonl_scan": {"lines.jsonl": b"\n".join(lines) + b"\n", "bom.jsonl": b"\xef\xbb\xbf" + lines[0] + b"\r\n"},
        "json_scan": {"array.json": json.dumps([{"id": "a", "text": "t", "label": "x"}, {"id": 2}]).encode(), "one.json": b'{"id": "z"}'},
        "csv_scan": {"plain.csv": b"id,text,label\na,hello,x\nb,\"multi\nline\",y\n", "bom.csv": b"\xef\xbb\xbfid;label\n1;x\n"},
        "parquet_scan": {"table.parquet": buf.getvalue(), "cut.parquet": buf.getvalue()[:-30]},
        "gzip_scan": {"good.jsonl.gz": gzip.compress(b"\n".join(lines[:2]) + b"\n"), "zlib.jsonl.gz": __import__("zlib").compress(lines[0])},
        "text_normalise": {"mixed.txt": "  caf\u0065\u0301\t\n  cr\u00e8me  ".encode()},
    }


def main() -> None:
    sets = {"image_probe": _images(), "video_probe": {"clip.avi": catalogue._clip(4, 16), "still.jpg": _images()["plain.jpg"]},
            **_records()}
    for target, files in sets.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    print(f"wrote {sum(len(f) for f in sets.values())} seed files under {CORPUS}")


if __name__ == "__main__":
    main()
