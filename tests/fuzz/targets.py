"""Fuzz targets: the per-record functions and check's scanners, each given arbitrary bytes.

The property of every target: it returns a value or a reason, and never raises. A target raises ``AssertionError``
when the value it returns breaks its contract (an image probe with neither geometry nor reason, say); any other
exception is a crash. Both the seeded hypothesis tests (tests/unit/test_fuzz_properties.py) and the coverage-guided
runs (``make fuzz``: tests/fuzz/run.py with atheris) call these.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
_SCRATCH = Path(tempfile.mkdtemp(prefix="deepbatch-fuzz-"))


def image_probe(data: bytes) -> None:
    from deepbatch.media.image import exif_orientation, probe_image

    p = probe_image(data, max_pixels=4_000_000)
    if p.reason is None:
        assert p.width and p.height and p.channels in (1, 2, 3, 4) and p.image_format and 1 <= (p.orientation or 0) <= 8, p
    else:
        assert p.reason in ("EMPTY_FILE", "UNSUPPORTED_FORMAT", "UNDECODABLE_IMAGE", "IMAGE_TOO_LARGE") and p.detail, p
    assert 1 <= exif_orientation(data) <= 8


def video_probe(data: bytes) -> None:
    from deepbatch.media.video import probe_video

    p = probe_video(data, max_frames=50, suffix=".avi", max_seconds=5.0)
    if p.reason is None:
        assert p.width and p.height and p.fps and p.fps > 0 and p.frame_count and p.frame_count > 0, p
    else:
        assert p.reason in ("EMPTY_FILE", "NOT_A_VIDEO", "UNDECODABLE_VIDEO", "VIDEO_TOO_SLOW", "BAD_VIDEO_METADATA") and p.detail, p


def text_normalise(data: bytes) -> None:
    from deepbatch.media.text import normalise_text

    out = normalise_text(data.decode("utf-8", errors="replace"))
    assert out == out.strip() and "  " not in out


def _scanner(kind: str, suffix: str) -> Callable[[bytes], None]:
    """check's scanner of one record kind over one file holding ``data``."""

    def scan(data: bytes) -> None:
        from deepbatch.sources import Source, reader
        from deepbatch.sources.survey import Sample, SourceCheck
        from deepbatch.storage import FileEntry

        path = _SCRATCH / f"f{os.getpid()}{suffix}"
        path.write_bytes(data)
        src = Source("fuzz", kind, str(_SCRATCH), f"*{suffix}", "field", "id", "text", "label", ("meta",), "text")
        sc, sample = SourceCheck("fuzz", kind, str(_SCRATCH)), Sample()
        type(reader(kind)).scan_fn(sc, sample, src, [FileEntry(f"file:{path}", len(data), 0)])
        assert sc.records >= 0 and sample.sampled <= max(sc.records, 0) + 1

    scan.__name__ = f"{kind}_scan"
    return scan


def _gzip_scan(data: bytes) -> None:
    """A compressed record file: the driver's stream check says why it is unreadable, or the scanner reads it."""
    from deepbatch.sources.records import unreadable_reason
    from deepbatch.storage import FileEntry

    path = _SCRATCH / f"g{os.getpid()}.jsonl.gz"
    path.write_bytes(data)
    entry = FileEntry(f"file:{path}", len(data), 0)
    why = unreadable_reason(entry, {})
    if not why:
        _scanner("jsonl", ".jsonl.gz")(data)
    else:
        assert why.startswith("UNREADABLE_FILE: "), why


TARGETS: dict[str, Callable[[bytes], None]] = {
    "image_probe": image_probe,
    "video_probe": video_probe,
    "text_normalise": text_normalise,
    "jsonl_scan": _scanner("jsonl", ".jsonl"),
    "json_scan": _scanner("json", ".json"),
    "csv_scan": _scanner("csv", ".csv"),
    "parquet_scan": _scanner("parquet", ".parquet"),
    "gzip_scan": _gzip_scan,
}


def seeds(target: str) -> list[bytes]:
    """The target's seed corpus (tests/fuzz/corpus/<target>/): valid and unusual inputs to mutate."""
    folder = CORPUS / target
    return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []
