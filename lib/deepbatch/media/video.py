"""Video decode checks with OpenCV. Pure functions: bytes in, plain values out."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class VideoProbe:
    width: int | None
    height: int | None
    channels: int | None
    fps: float | None
    frame_count: int | None
    reason: str | None
    detail: str | None
    frame_count_capped: bool | None = None  # counting stopped at max_frames with frames left: frame_count is a lower bound


@contextmanager
def clip_file(data: bytes, suffix: str = ".mp4") -> Iterator[str]:
    """Clip bytes in a temporary file for the duration of the block (OpenCV reads from files)."""
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="deepbatch-clip-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        os.unlink(path)


def probe_video_file(path: str, max_frames: int = 10000, max_seconds: float = 120.0) -> VideoProbe:
    """Open a clip, read its first frame, and count decodable frames (up to max_frames, within max_seconds)."""
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return VideoProbe(None, None, None, None, None, "UNDECODABLE_VIDEO", "OpenCV could not open the container")
        ok, frame = cap.read()
        if not ok or frame is None:
            return VideoProbe(None, None, None, None, 0, "UNDECODABLE_VIDEO", "first frame is not readable")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count, deadline = 1, time.monotonic() + max_seconds
        # grab() demuxes and decodes without converting to BGR: the cheap way to count.
        while count < max_frames and cap.grab():
            count += 1
            if time.monotonic() > deadline:
                return VideoProbe(None, None, None, None, count, "VIDEO_TOO_SLOW",
                                  f"decoding took longer than {max_seconds:.0f} s after {count} frames", True)
        capped = count >= max_frames and cap.grab()  # one frame more exists: the count stopped at the cap
        h, w = frame.shape[:2]
        c = 1 if frame.ndim == 2 else int(frame.shape[2])
        if fps <= 0:
            return VideoProbe(w, h, c, None, count, "BAD_VIDEO_METADATA", "container reports no frame rate", capped)
        return VideoProbe(int(w), int(h), c, fps, count, None, None, capped)
    finally:
        cap.release()


def probe_video(data: bytes | None, max_frames: int = 10000, suffix: str = ".mp4", max_seconds: float = 120.0) -> VideoProbe:
    """Probe clip bytes (through a temporary file). Never raises: a failure is the record's reason.

    Still images are refused whatever their name: FFmpeg would open a JPEG as a one-frame video."""
    from deepbatch.media.image import sniff_format

    if data is None or len(data) == 0:
        return VideoProbe(None, None, None, None, None, "EMPTY_FILE", "zero-byte file")
    still = sniff_format(data)
    if still is not None:
        return VideoProbe(None, None, None, None, None, "NOT_A_VIDEO", f"the bytes are a {still.upper()} image, not a video")
    try:
        with clip_file(data, suffix) as path:
            return probe_video_file(path, max_frames, max_seconds)
    except Exception as e:  # noqa: BLE001 - one record's failure must never stop the stage
        return VideoProbe(None, None, None, None, None, "UNDECODABLE_VIDEO", f"{type(e).__name__}: {e}"[:500])


def count_frames(path: str) -> int:
    """Decodable frames in a clip (grab() demuxes and decodes without colour conversion)."""
    cap = cv2.VideoCapture(path)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def clip_length(path: str, frame_count: int | None) -> int:
    """The probe's frame count when known (> 0), else the frames counted in the clip."""
    return int(frame_count) if frame_count and frame_count > 0 else count_frames(path)


def uniform_indices(total: int, frames: int) -> list[int]:
    """``frames`` frame indices spread uniformly over ``total`` frames (repeating when the clip is shorter)."""
    return [] if total <= 0 else [int(i) for i in np.linspace(0, total - 1, frames).round().astype(int)]


def frames_at(path: str, wanted: list[int]) -> tuple[dict[int, np.ndarray], float]:
    """({index: BGR frame}, fps) for the wanted indices, in one pass that stops after the last one.

    Frames in between are grabbed (decoded, never colour-converted or kept), so memory holds only the wanted ones."""
    cap = cv2.VideoCapture(path)
    got: dict[int, np.ndarray] = {}
    try:
        if not cap.isOpened():
            raise ValueError("OpenCV could not open the container")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        want, last, i = set(wanted), max(wanted, default=-1), 0
        while i <= last and cap.grab():
            if i in want:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    got[i] = frame
            i += 1
    finally:
        cap.release()
    return got, fps


def _nearest(got: dict[int, np.ndarray], j: int) -> int:
    return min(got, key=lambda k: (abs(k - j), k))


def sample_frames_file(path: str, frames: int, size: int, frame_count: int | None = None) -> np.ndarray:
    """``frames`` RGB frames spread uniformly over the clip, resized to size×size.

    Clips shorter than ``frames`` repeat their frames so the tensor shape is fixed. ``frame_count`` (the probe's,
    when it was not capped) spares the counting pass; only the sampled frames are ever held.
    """
    known = bool(frame_count and frame_count > 0)
    total = 1 if frames == 1 and not known else clip_length(path, frame_count)  # one frame is the first, whatever the length
    got, _ = frames_at(path, uniform_indices(total, frames))
    if not got:
        raise ValueError(f"no decodable frames in {path}")
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for i, j in enumerate(uniform_indices(total, frames)):
        frame = got[j] if j in got else got[_nearest(got, j)]  # a frame that did not decode: its nearest neighbour
        out[i] = cv2.cvtColor(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return out


def sample_frames(data: bytes, frames: int, size: int, suffix: str = ".mp4", frame_count: int | None = None) -> np.ndarray:
    with clip_file(data, suffix) as path:
        return sample_frames_file(path, frames, size, frame_count)
