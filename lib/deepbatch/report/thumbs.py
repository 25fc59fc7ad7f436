"""Thumbnails and contact sheets for the run report (PNG bytes, never the original media).

Every helper returns a PNG that loads: media that cannot be decoded becomes a labelled
placeholder, so a report page never shows a broken image.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from deepbatch.media.image import decode_image

THUMB_PX = 96
_MAX_PREVIEW_PIXELS = 50_000_000


def _rgb(img: np.ndarray) -> np.ndarray:
    """OpenCV's HxWxC (BGR, BGRA or grey) as HxWx3 RGB or HxW grey."""
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] >= 3:
        return img[:, :, 2::-1]
    return img


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def array_png(arr: np.ndarray, size: int = THUMB_PX) -> bytes:
    """An RGB or grey uint8 array, shrunk to fit size x size (small images are scaled up)."""
    img = Image.fromarray(np.ascontiguousarray(arr))
    scale = size / max(img.width, img.height)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.Resampling.NEAREST if scale > 2 else Image.Resampling.LANCZOS)
    return _png(img)


def decode_preview(data: bytes | None) -> np.ndarray | None:
    """The image as RGB/grey, or None when the bytes are not a decodable image."""
    if not data:
        return None
    try:
        return _rgb(decode_image(data, _MAX_PREVIEW_PIXELS, min_side=THUMB_PX))  # a thumbnail needs no full-size decode
    except ValueError:
        return None


def clip_frames(data: bytes, frames: int, size: int) -> list[np.ndarray]:
    """``frames`` RGB frames spread over a clip, size x size; [] when the clip does not decode."""
    from deepbatch.media.video import sample_frames

    try:
        return list(sample_frames(data, frames, size))
    except Exception:  # noqa: BLE001 - any clip the decoder refuses is shown as missing, never fails a report
        return []


def placeholder_png(text: str, size: int = THUMB_PX) -> bytes:
    """A grey tile that names why there is no picture."""
    img = Image.new("RGB", (size, size), (226, 226, 226))
    draw = ImageDraw.Draw(img)
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > 14 and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    for i, ln in enumerate(lines[:6]):
        draw.text((4, 4 + 13 * i), ln, fill=(90, 90, 90))
    return _png(img)


def thumbnail_png(data: bytes | None, size: int = THUMB_PX) -> bytes:
    arr = decode_preview(data)
    return placeholder_png("no preview: not a decodable image", size) if arr is None else array_png(arr, size)


def clip_preview(data: bytes | None, size: int = THUMB_PX) -> bytes:
    """A clip's first sampled frame as a thumbnail."""
    frames = clip_frames(data, 1, size) if data else []
    return array_png(frames[0], size) if frames else placeholder_png("no preview: clip did not decode", size)


def contact_sheet(rows: list[tuple[str, list[np.ndarray]]], cell: int = 64) -> bytes:
    """One PNG: a labelled row of pictures per class (images, or a clip's sampled frames)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max((len(r[1]) for r in rows), default=1) or 1
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 1.4, 1.1 * len(rows) + 0.2), squeeze=False)
    for (label, pictures), ax_row in zip(rows, axes, strict=True):
        for j, ax in enumerate(ax_row):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(pictures):
                pic = pictures[j]
                ax.imshow(pic, cmap="gray" if pic.ndim == 2 else None, vmin=0, vmax=255)
        ax_row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()
