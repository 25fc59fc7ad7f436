"""A catalogue of bad (and merely unusual) landing inputs, built by the tests themselves.

Each case is (source, path under landing/, bytes, where it must end): ``"silver"`` for inputs
deepbatch must accept, otherwise the quarantine reason code. Build for the category: images by
content (any name, any case), pixel caps from headers, bit depths, still images posing as videos,
and records with broken encodings, types or shapes.
"""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # the bronze/silver table it lands in
    path: str  # under landing/
    data: bytes
    expect: str  # "silver" or a quarantine reason
    link: str = ""  # written as a symbolic link to this target (relative to the link's folder, or absolute) instead of data
    age_s: int = 0  # written this many seconds in the past (the first arrival wins a duplicate)


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def declared_png(width: int, height: int) -> bytes:
    """A ~70-byte PNG whose header declares width x height (its data is one scanline)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 2)) + _chunk(b"IEND", b"")


def png_bomb(side: int = 12000) -> bytes:
    """A real decompression bomb: side x side grey zeros, deflated to a few hundred KB."""
    row = b"\x00" * (side + 1)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def tiff_bomb(side: int = 8000) -> bytes:
    """A deflated TIFF of side x side zeros: no header parser here, OpenCV's own limit must refuse it."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint8)).save(buf, format="TIFF", compression="tiff_deflate")
    return buf.getvalue()


def ramp16() -> bytes:
    return _png(np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1)))


def _gif() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(buf, format="GIF")
    return buf.getvalue()


def _grey_alpha(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.dstack([rgb[:, :, 0], rgb[:, :, 1]])), mode="LA").save(buf, format="PNG")
    return buf.getvalue()


def _clip(frames: int = 6, size: int = 32) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "c.avi")
        w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
        for i in range(frames):
            w.write(np.full((size, size, 3), 40 * i % 255, np.uint8))
        w.release()
        return Path(path).read_bytes()


def image_cases(existing_png: bytes) -> list[Case]:
    rgb = np.random.default_rng(3).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    jpg = _encode(rgb, ".jpg")
    png = _png(rgb)
    corrupt_idat = png[:40] + bytes(b ^ 0x5A for b in png[40:-12]) + png[-12:]
    return [
        Case("declared 40000x40000 PNG", "images", "images/odd/bomb_declared.png", declared_png(40000, 40000), "IMAGE_TOO_LARGE"),
        Case("real decompression bomb", "images", "images/odd/bomb_real.png", png_bomb(), "IMAGE_TOO_LARGE"),
        Case("16-bit ramp", "images", "images/odd/ramp16.png", ramp16(), "silver"),
        Case("uppercase .JPG", "images", "images/odd/UPPER.JPG", jpg, "silver"),
        Case("PNG named .jpg", "images", "images/odd/png_named.jpg", _png(rgb[:, ::-1]), "silver"),
        Case("BMP", "images", "images/odd/picture_bmp.bmp", _encode(rgb[::-1], ".bmp"), "silver"),
        Case("WebP", "images", "images/odd/picture_webp.webp", _encode(rgb[:, :, ::-1], ".webp"), "silver"),
        Case("GIF (first frame)", "images", "images/odd/picture_gif.gif", _gif(), "silver"),
        Case("TIFF", "images", "images/odd/picture_tiff.tiff", _encode(rgb[::-1, ::-1], ".tiff"), "silver"),
        Case("PPM (Netpbm)", "images", "images/odd/picture_ppm.ppm", _encode(rgb, ".ppm"), "silver"),
        Case("PGM with a comment", "images", "images/odd/picture_pgm.pgm", b"P5\n# made by hand\n4 2\n255\n" + bytes(range(0, 256, 32)), "silver"),
        Case("Sun raster", "images", "images/odd/picture_sr.sr", _encode(rgb[::-1], ".sr"), "silver"),
        Case("Radiance HDR (float)", "images", "images/odd/picture_hdr.hdr", _encode(rgb.astype(np.float32) / 255, ".hdr"), "silver"),
        Case("PPM declaring 40000x40000", "images", "images/odd/bomb_declared.ppm", b"P6\n40000 40000\n255\n" + b"\x00" * 64, "IMAGE_TOO_LARGE"),
        Case("TIFF bomb (64 MP, deflated)", "images", "images/odd/bomb_tiff.tif", tiff_bomb(), "IMAGE_TOO_LARGE"),
        Case("grey + alpha PNG", "images", "images/odd/grey_alpha.png", _grey_alpha(rgb), "silver"),
        Case("image in a hidden folder", "images", "images/_tmp/hidden_dir.png", _png(rgb[::2]), "silver"),
        Case("no extension", "images", "images/odd/noext", _png(rgb[1:]), "silver"),
        Case("text file among images", "images", "images/odd/notes.txt", b"just some notes\n", "UNSUPPORTED_FORMAT"),
        Case("hidden junk file", "images", "images/odd/.DS_Store", b"\x00\x00\x00\x01Bud1" + b"\x00" * 40, "UNSUPPORTED_FORMAT"),
        Case("random bytes named .png", "images", "images/odd/random.png", np.random.default_rng(1).bytes(300), "UNSUPPORTED_FORMAT"),
        Case("zero-byte image", "images", "images/odd/empty.png", b"", "EMPTY_FILE"),
        Case("truncated PNG", "images", "images/odd/truncated.png", png[: len(png) // 2], "UNDECODABLE_IMAGE"),
        Case("truncated JPEG", "images", "images/odd/truncated.jpg", jpg[: len(jpg) // 2], "UNDECODABLE_IMAGE"),
        Case("PNG with corrupt pixel data", "images", "images/odd/corrupt_idat.png", corrupt_idat, "UNDECODABLE_IMAGE"),
        Case("copy of a landed image", "images", "images/odd/copy.png", existing_png, "DUPLICATE_CONTENT"),
    ]


def video_cases() -> list[Case]:
    clip = _clip()
    jpg = _encode(np.zeros((16, 16, 3), np.uint8), ".jpg")
    return [
        Case("JPEG named .mp4", "videos", "videos/odd/still.mp4", jpg, "NOT_A_VIDEO"),
        Case("PNG named .avi", "videos", "videos/odd/still.avi", _png(np.zeros((8, 8), np.uint8)), "NOT_A_VIDEO"),
        Case("text named .avi", "videos", "videos/odd/text.avi", b"not a video at all\n" * 20, "UNDECODABLE_VIDEO"),
        Case("truncated clip", "videos", "videos/odd/truncated.avi", clip[:200], "UNDECODABLE_VIDEO"),
        Case("zero-byte clip", "videos", "videos/odd/empty.mov", b"", "EMPTY_FILE"),
        Case("uppercase .AVI clip", "videos", "videos/odd/CLIP.AVI", clip, "silver"),
    ]


def _jsonl(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


def text_cases() -> list[Case]:
    lines = [
        ("a good record", b'{"review_id": "odd-ok", "text": "A fine film.", "label": "fresh"}', "silver"),
        ("JSON array as text", b'{"review_id": "odd-array", "text": ["a", "list"], "label": "fresh"}', "SCHEMA_MISMATCH"),
        ("JSON object as text", b'{"review_id": "odd-object", "text": {"nested": "x"}, "label": "fresh"}', "SCHEMA_MISMATCH"),
        ("latin-1 bytes (not UTF-8)", b'{"review_id": "odd-latin1", "text": "caf\xe9 cr\xe8me", "label": "fresh"}', "INVALID_UTF8"),
        ("blank line", b"", "MALFORMED_RECORD"),
        ("line cut mid-record", b'{"review_id": "odd-cut", "text": "cut off', "MALFORMED_RECORD"),
        ("record without an id", b'{"text": "no id at all", "label": "fresh"}', "MISSING_ID"),
        ("numeric id", b'{"review_id": 12345, "text": "A numeric id.", "label": "rotten"}', "silver"),
        ("label outside the classes", b'{"review_id": "odd-label", "text": "Unknown label.", "label": "meh"}', "UNKNOWN_LABEL"),
        ("whitespace-only text", b'{"review_id": "odd-empty", "text": "   ", "label": "fresh"}', "EMPTY_TEXT"),
        ("first of two lines with one id", b'{"review_id": "odd-dup", "text": "First of two with one id.", "label": "fresh"}', "silver"),
        ("second of two lines with one id", b'{"review_id": "odd-dup", "text": "Second of two with one id.", "label": "rotten"}', "DUPLICATE_ID"),
        ("same text as line 1, later line", b'{"review_id": "odd-ok-2", "text": "A fine film.", "label": "fresh"}', "DUPLICATE_CONTENT"),
    ]
    body = _jsonl(*[line for _, line, _ in lines])
    cases = [Case(f"JSONL: {name}", "text", f"text/odd.jsonl#{i + 1}", body, e) for i, (name, _, e) in enumerate(lines)]
    return [*cases,
            Case("a .txt among JSONL", "text", "text/readme.txt", b"these are notes, not records\n", "UNSUPPORTED_FORMAT"),
            Case("zero-byte JSONL", "text", "text/empty.jsonl", b"", "EMPTY_FILE"),
            Case("uppercase .JSONL", "text", "text/UPPER.JSONL#1", _jsonl(b'{"review_id": "odd-upper", "text": "Loud.", "label": "rotten"}'), "silver")]


def label_cases() -> list[Case]:
    rows = [("a good label row", b"odd-l1,Coat", "silver"), ("label outside the classes", b"odd-l2,NotAClass", "UNKNOWN_LABEL"),
            ("row without an id", b",Coat", "MISSING_ID"), ("latin-1 label", b"odd-l4,Caf\xe9", "UNKNOWN_LABEL")]
    body = b"id,label\n" + b"\n".join(r for _, r, _ in rows) + b"\n"
    return [*[Case(f"CSV: {name}", "image_labels", f"labels/image_labels_odd.csv#{i + 1}", body, e) for i, (name, _, e) in enumerate(rows)],
            Case("stray file among label tables", "image_labels", "labels/notes.md", b"# notes\n", "UNSUPPORTED_FORMAT")]


def exif_jpeg(rgb: np.ndarray, orientation: int, thumbnail: bool = False) -> bytes:
    """A JPEG whose EXIF says how to turn it (phones store pixels as the sensor saw them), optionally with a thumbnail."""
    from PIL import Image

    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[274] = orientation
    buf = io.BytesIO()
    if thumbnail:  # an EXIF thumbnail is a whole JPEG (with its own EOI) inside APP1, before the image's scan
        thumb = io.BytesIO()
        im.resize((8, 8)).save(thumb, format="JPEG")
        exif_bytes = b"Exif\x00\x00" + exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else exif.tobytes()
        app1 = exif_bytes + thumb.getvalue()
        im.save(buf, format="JPEG", quality=95)
        body = buf.getvalue()
        return body[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + body[2:]
    im.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def camera_cases() -> list[Case]:
    """What cameras and phones write: motion photos (an MP4 after the JPEG), EXIF orientation, thumbnails."""
    rgb = np.random.default_rng(5).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    jpg, png = _encode(rgb, ".jpg"), _png(rgb[::-1])
    mp4ish = b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(6).bytes(2000)
    with_thumb = exif_jpeg(rgb[:, ::-1], 1, thumbnail=True)
    return [
        Case("motion photo (MP4 after the JPEG)", "images", "images/cam/motion.jpg", jpg + mp4ish, "silver"),
        Case("PNG with bytes after IEND", "images", "images/cam/trailing.png", png + b"trailing bytes" * 20, "silver"),
        Case("JPEG turned by EXIF (orientation 6)", "images", "images/cam/rotated.jpg", exif_jpeg(rgb[::-1, ::-1], 6), "silver"),
        Case("JPEG with an EXIF thumbnail", "images", "images/cam/thumb.jpg", with_thumb, "silver"),
        Case("JPEG cut after its EXIF thumbnail", "images", "images/cam/thumb_cut.jpg", with_thumb[: len(with_thumb) - 200],
             "UNDECODABLE_IMAGE"),
        Case("NFC name", "images", "images/cam/caf\u00e9.png", _png(rgb[1:]), "silver", age_s=60),
        Case("NFD twin of that name", "images", "images/cam/cafe\u0301.png", _png(rgb[2:]), "DUPLICATE_ID"),
    ]


def link_cases(outside: Path) -> list[Case]:
    """Symbolic links: read only when they resolve inside the landing zone; the target of any other is never read."""
    rgb = np.random.default_rng(7).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    return [
        Case("a linked image's target", "images", "images/links/target.png", _png(rgb), "silver", age_s=60),
        Case("link inside the landing zone", "images", "images/links/z_inside.png", b"", "DUPLICATE_CONTENT", link="target.png"),  # same time as its target: the path breaks the tie
        Case("link outside the landing zone", "images", "images/links/outside.png", b"", "UNSUPPORTED_FORMAT", link=str(outside)),
        Case("link to a missing target", "images", "images/links/dangling.png", b"", "UNREADABLE_FILE", link="no_such_file.png"),
        Case("link to a folder", "images", "images/links/loop", b"", "UNSUPPORTED_FORMAT", link=".."),
    ]


def clip_cases(frames: int) -> list[Case]:
    """A clip longer than the probe counts (conf quality.max_video_probe_frames below ``frames``)."""
    return [Case("clip longer than the probe's cap", "videos", "videos/odd/long.avi", _clip(frames, 16), "silver")]


def record_cases() -> list[Case]:
    """Nulls where ids and labels belong, and compressed files that are not what their names say."""
    import bz2
    import gzip

    lines = [
        ("null id", b'{"review_id": null, "text": "An id that is null.", "label": "fresh"}', "MISSING_ID"),
        ("null label", b'{"review_id": "odd-null-label", "text": "A label that is null.", "label": null}', "MISSING_LABEL"),
        ("absent label", b'{"review_id": "odd-no-label", "text": "No label field at all."}', "MISSING_LABEL"),
        ("blank label", b'{"review_id": "odd-blank-label", "text": "A blank label.", "label": "  "}', "MISSING_LABEL"),
    ]
    body = _jsonl(*[line for _, line, _ in lines])
    good = gzip.compress(_jsonl(b'{"review_id": "odd-gz", "text": "Read from a gzip file.", "label": "fresh"}'))
    long = gzip.compress(_jsonl(*[b'{"review_id": "gz-%d", "text": "line %d", "label": "fresh"}' % (i, i) for i in range(2000)]))
    return [*[Case(f"JSONL: {name}", "text", f"text/nulls.jsonl#{i + 1}", body, e) for i, (name, _, e) in enumerate(lines)],
            Case("JSONL in gzip", "text", "text/packed.jsonl.gz#1", good, "silver"),
            Case("zlib data named .jsonl.gz", "text", "text/not_gzip.jsonl.gz", zlib.compress(body), "UNREADABLE_FILE"),
            Case("truncated .jsonl.gz", "text", "text/cut.jsonl.gz", long[: len(long) // 2], "UNREADABLE_FILE"),
            Case("text named .jsonl.bz2", "text", "text/not_bz2.jsonl.bz2", body, "UNREADABLE_FILE"),
            Case("label table in bzip2", "image_labels", "labels/image_labels_packed.csv.bz2#1", bz2.compress(b"id,label\nodd-bz,Coat\n"), "silver")]


def all_cases(existing_png: bytes, outside: Path | None = None) -> list[Case]:
    extra = link_cases(outside) if outside is not None else []
    return [*image_cases(existing_png), *video_cases(), *text_cases(), *label_cases(), *camera_cases(), *record_cases(),
            *clip_cases(CAPPED_CLIP_FRAMES), *extra]


CAPPED_CLIP_FRAMES = 40  # frames in the long clip; the catalogue run probes at most PROBE_CAP
PROBE_CAP = 25


def write(landing: Path, cases: list[Case]) -> None:
    for c in cases:
        path = landing / c.path.split("#", 1)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        if c.link:
            path.symlink_to(c.link)
        else:
            path.write_bytes(c.data)
        if c.age_s:
            os.utime(path, (time.time() - c.age_s,) * 2)
