"""Labelled synthetic clips: one moving shape per clip, labelled by the shape.

No labelled video data set ships offline, so the video classifier trains on
these. The label is learnable by construction; colour, size, start position,
direction, speed and background noise vary so it is not trivial.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle")


def _draw(frame: np.ndarray, shape: str, cx: float, cy: float, r: int, colour: tuple[int, int, int]) -> None:
    c = (int(round(cx)), int(round(cy)))
    if shape == "circle":
        cv2.circle(frame, c, r, colour, thickness=-1, lineType=cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(frame, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r), colour, thickness=-1)
    elif shape == "triangle":
        pts = np.array([[c[0], c[1] - r], [c[0] - r, c[1] + r], [c[0] + r, c[1] + r]], dtype=np.int32)
        cv2.fillPoly(frame, [pts], colour, lineType=cv2.LINE_AA)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_clip(shape: str, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Return frames×size×size×3 uint8 BGR frames of one shape moving in a straight line."""
    r = int(rng.integers(size // 10, size // 5))
    x, y = rng.uniform(r, size - r, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.5, 2.5)
    vx, vy = speed * np.cos(angle), speed * np.sin(angle)
    colour = tuple(int(v) for v in rng.integers(80, 256, size=3))
    background = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for i in range(frames):
        frame = background.copy()
        _draw(frame, shape, x, y, r, colour)  # type: ignore[arg-type]
        out[i] = frame
        x, y = x + vx, y + vy
        if not r <= x <= size - r:
            vx = -vx
        if not r <= y <= size - r:
            vy = -vy
    return out


def write_clip(path: Path, frames: np.ndarray, fps: float = 12.0) -> None:
    """Write frames as MPEG-4 Part 2 (``mp4v``): OpenCV's bundled FFmpeg has no H.264 encoder."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV could not open a video writer for {path}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
