"""Image decode checks. Pure functions: bytes in, plain values out."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Leading bytes of the formats deepbatch accepts.
_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"BM": "bmp", b"RIFF": "webp"}


@dataclass(frozen=True)
class ImageProbe:
    width: int | None
    height: int | None
    channels: int | None
    image_format: str | None
    reason: str | None  # None when the image is usable
    detail: str | None


def sniff_format(data: bytes) -> str | None:
    for magic, name in _MAGIC.items():
        if data.startswith(magic):
            return name
    return None


def decode_image(data: bytes) -> np.ndarray:
    """Decode to an HxWxC uint8 array (C is 1 for greyscale); raise ValueError if unreadable."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ValueError("OpenCV could not decode the bytes")
    if img.ndim == 2:
        img = img[:, :, None]
    return img


def _png_is_complete(data: bytes) -> bool:
    # libpng decodes a file cut after its image data without complaint; a complete PNG ends with IEND.
    return data.rstrip(b"\x00")[-12:].find(b"IEND") != -1


def probe_image(data: bytes | None) -> ImageProbe:
    """Check that bytes are a complete, decodable image and report its geometry."""
    if data is None or len(data) == 0:
        return ImageProbe(None, None, None, None, "EMPTY_FILE", "zero-byte file")
    fmt = sniff_format(data)
    if fmt is None:
        return ImageProbe(None, None, None, None, "UNSUPPORTED_FORMAT", f"unknown magic bytes {data[:8].hex()}")
    if fmt == "png" and not _png_is_complete(data):
        return ImageProbe(None, None, None, fmt, "UNDECODABLE_IMAGE", "PNG is truncated (no IEND chunk)")
    if fmt == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return ImageProbe(None, None, None, fmt, "UNDECODABLE_IMAGE", "JPEG is truncated (no EOI marker)")
    try:
        img = decode_image(data)
    except ValueError as e:
        return ImageProbe(None, None, None, fmt, "UNDECODABLE_IMAGE", str(e))
    h, w, c = img.shape
    return ImageProbe(int(w), int(h), int(c), fmt, None, None)


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """A decoded OpenCV image (grey, BGR or BGRA) as HxWx1 grey or HxWx3 RGB."""
    if channels == 1:
        return img if img.shape[2] == 1 else cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY)[:, :, None]
    if img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2RGB)


def image_to_array(data: bytes, size: int, channels: int) -> np.ndarray:
    """Decode and resize to size×size×channels uint8 (area interpolation when shrinking)."""
    img = to_channels(decode_image(data), channels)
    if img.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
        if img.ndim == 2:
            img = img[:, :, None]
    return np.ascontiguousarray(img, dtype=np.uint8)
