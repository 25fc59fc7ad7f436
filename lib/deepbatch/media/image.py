"""Image decode checks. Pure functions: bytes in, plain values out.

Formats are sniffed from the content, never from the file name. The pixel count is
read from the header before anything is decoded, so a small file that declares a
huge canvas (a decompression bomb) is refused without allocating it.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_MAX_PIXELS = 50_000_000

# Leading bytes of the formats deepbatch accepts: what OpenCV decodes, plus GIF's first frame
# (WebP is RIFF....WEBP and the Netpbm family is parsed, both in sniff_format).
_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"BM": "bmp", b"GIF87a": "gif", b"GIF89a": "gif",
          b"II*\x00": "tiff", b"MM\x00*": "tiff", b"#?RADIANCE": "hdr", b"#?RGBE": "hdr", b"\x59\xa6\x6a\x95": "sunraster",
          b"\x00\x00\x00\x0cjP  \r\n\x87\n": "jp2", b"\xff\x4f\xff\x51": "jp2"}
# Netpbm (PBM/PGM/PPM/PFM): magic, then width and height in ASCII, comments allowed; PAM names them.
_NETPBM = re.compile(rb"^P([1-6Ff])\s+(?:#[^\n]*\n\s*)*(\d+)\s+(?:#[^\n]*\n\s*)*(\d+)")
_PAM = re.compile(rb"^P7\s.*?WIDTH\s+(\d+).*?HEIGHT\s+(\d+)", re.S)

# OpenCV's own pixel limit for the formats whose header is not read here: see deepbatch/__init__.py.


class ImageTooLarge(ValueError):
    pass


# libjpeg decodes at 1/2, 1/4 or 1/8 scale by dropping DCT coefficients: far less work than a full decode and a resize.
_JPEG_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def jpeg_reduction(height: int, width: int, min_side: int) -> int:
    """The largest DCT scale divisor (8, 4, 2, else 1) whose decoded shorter side stays at or above ``min_side``.

    libjpeg's scaled size is ceil(side / k), so a 512-pixel side at k=2 is 256, still enough for a 256 target."""
    if min_side <= 0:
        return 1
    short = min(height, width)
    return next((k for k in (8, 4, 2) if -(-short // k) >= min_side), 1)


@dataclass(frozen=True)
class ImageProbe:
    width: int | None
    height: int | None
    channels: int | None
    image_format: str | None
    reason: str | None  # None when the image is usable
    detail: str | None
    orientation: int | None = None  # EXIF orientation applied (1: as stored); width and height are upright


def _netpbm_size(data: bytes) -> tuple[int, int] | None:
    head = data[:512]
    m = _NETPBM.match(head)
    if m:
        return int(m.group(2)), int(m.group(3))
    m = _PAM.match(head)
    return (int(m.group(1)), int(m.group(2))) if m else None


def sniff_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:1] == b"P" and _netpbm_size(data) is not None:
        return "netpbm"
    for magic, name in _MAGIC.items():
        if data.startswith(magic):
            return name
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOFn segment."""
    frame = _jpeg_frame(data)
    return None if frame is None else frame[:2]


def _jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from the first SOFn segment, walking the segments by their lengths."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h, data[i + 9]
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25:
        b = int.from_bytes(data[21:25], "little")
        return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30:
        return struct.unpack("<H", data[26:28])[0] & 0x3FFF, struct.unpack("<H", data[28:30])[0] & 0x3FFF
    return None


def declared_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) as the header declares it, without decoding; None when not found."""
    try:
        if fmt == "png" and len(data) >= 24:
            w, h = struct.unpack(">II", data[16:24])
            return w, h
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "bmp" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if fmt == "gif" and len(data) >= 10:
            w, h = struct.unpack("<HH", data[6:10])
            return w, h
        if fmt == "webp":
            return _webp_size(data)
        if fmt == "netpbm":
            return _netpbm_size(data)
        if fmt == "sunraster" and len(data) >= 12:
            w, h = struct.unpack(">II", data[4:12])
            return w, h
    except struct.error:
        return None
    return None  # TIFF, JPEG 2000, Radiance HDR: OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS) applies


def _tiff_orientation(tiff: bytes) -> int:
    """Tag 274 (Orientation) of a TIFF/EXIF block's first IFD; 1 (as stored) when absent or out of range."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    end = "<" if tiff[:2] == b"II" else ">"
    offset = struct.unpack(end + "I", tiff[4:8])[0]
    if offset + 2 > len(tiff):
        return 1
    count = struct.unpack(end + "H", tiff[offset : offset + 2])[0]
    for k in range(min(count, 512)):
        entry = tiff[offset + 2 + 12 * k : offset + 14 + 12 * k]
        if len(entry) < 12:
            return 1
        tag, kind = struct.unpack(end + "HH", entry[:4])
        if tag == 274 and kind == 3:  # SHORT
            value = struct.unpack(end + "H", entry[8:10])[0]
            return value if 1 <= value <= 8 else 1
    return 1


def _exif_block(data: bytes, fmt: str) -> bytes | None:
    """The EXIF (TIFF-structured) bytes of a JPEG (APP1), PNG (eXIf), WebP (EXIF chunk) or TIFF file."""
    if fmt == "tiff":
        return data
    if fmt == "jpeg":
        for marker, start, end in _jpeg_segments(data):
            if marker == 0xE1 and data[start : start + 6] == b"Exif\x00\x00":
                return data[start + 6 : end]
        return None
    if fmt == "png":
        i = 8
        while i + 12 <= len(data):
            length, kind = struct.unpack(">I4s", data[i : i + 8])
            if kind == b"eXIf":
                return data[i + 8 : i + 8 + length]
            if kind in (b"IDAT", b"IEND"):  # eXIf must come before the image data
                return None
            i += 12 + length
        return None
    if fmt == "webp":
        i = 12
        while i + 8 <= len(data):
            kind, length = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])[0]
            if kind == b"EXIF":
                body = data[i + 8 : i + 8 + length]
                return body[6:] if body.startswith(b"Exif\x00\x00") else body
            i += 8 + length + (length & 1)
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) a camera or phone recorded: how the stored pixels must be turned to be seen upright.
    1 when there is none; never raises."""
    fmt = sniff_format(data)
    try:
        block = _exif_block(data, fmt) if fmt else None
        return _tiff_orientation(block) if block else 1
    except struct.error:
        return 1


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels (HxWxC) turned upright for an EXIF orientation: 2 mirrored, 3 upside down, 4 flipped,
    5 transposed, 6 turned a quarter clockwise to view, 7 transversed, 8 turned a quarter counter-clockwise."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: a[::-1].transpose(1, 0, 2),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: a[:, ::-1].transpose(1, 0, 2),
    }.get(orientation)
    return img if turned is None else np.ascontiguousarray(turned(img))


def to_uint8(img: np.ndarray) -> np.ndarray:
    """8 bits per channel, preserving order: 16-bit scales by 1/257, floats in [0, 1] by 255."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        f = np.nan_to_num(img.astype(np.float64), nan=0.0)
        scale = 255.0 if f.size and float(f.max()) <= 1.0 else 1.0
        return np.clip(np.rint(f * scale), 0, 255).astype(np.uint8)
    info = np.iinfo(img.dtype)
    f = (img.astype(np.float64) - info.min) / (info.max - info.min)
    return np.clip(np.rint(f * 255), 0, 255).astype(np.uint8)


def _decode_gif(data: bytes) -> np.ndarray | None:
    """The first frame of a GIF (OpenCV's wheel has no GIF decoder), as BGR."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.seek(0)
        rgb = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _decode_flags(fmt: str | None, size: tuple[int, int] | None, min_side: int) -> int:
    """IMREAD_UNCHANGED, or a DCT-scaled colour decode for a JPEG larger than the caller needs.

    The scaled modes would apply EXIF orientation themselves; IGNORE_ORIENTATION leaves that to ``orient``, as for
    every other format. They always give 3 channels (BGR), which ``to_channels`` turns into grey where asked."""
    if fmt != "jpeg" or size is None or min_side <= 0:
        return cv2.IMREAD_UNCHANGED
    k = jpeg_reduction(size[1], size[0], min_side)
    return cv2.IMREAD_UNCHANGED if k == 1 else _JPEG_REDUCED[k] | cv2.IMREAD_IGNORE_ORIENTATION


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 0) -> np.ndarray:
    """Decode to an HxWxC uint8 array (C is 1 for greyscale), turned upright by its EXIF orientation.

    With ``min_side`` > 0 a JPEG is decoded DCT-scaled (1/2, 1/4, 1/8) as far as its shorter side stays at or
    above ``min_side``: the caller then resizes a smaller image, from about the same information. A scaled decode
    is always 3 channels (BGR), a grey JPEG included.
    Raises ImageTooLarge when the header declares more than max_pixels, and ValueError when the
    bytes are unreadable; any decoder error (cv2.error, MemoryError, ...) becomes a ValueError."""
    fmt = sniff_format(data)
    size = declared_size(data, fmt) if fmt else None
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageTooLarge(f"header declares {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, above {max_pixels:,}")
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _decode_flags(fmt, size, min_side))
        if img is None and fmt == "gif":
            img = _decode_gif(data)
    except cv2.error as e:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(e):
            raise ImageTooLarge(f"OpenCV refused the image size: {str(e).strip().splitlines()[-1]}") from e
        raise ValueError(f"OpenCV could not decode the bytes: {str(e).strip().splitlines()[-1]}") from e
    except (MemoryError, OSError, SyntaxError) as e:
        raise ValueError(f"decoder failed: {type(e).__name__}: {e}") from e
    if img is None or img.size == 0:
        raise ValueError("OpenCV could not decode the bytes")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageTooLarge(f"{img.shape[1]}x{img.shape[0]} pixels, above {max_pixels:,}")
    if img.ndim == 2:
        img = img[:, :, None]
    # OpenCV's TIFF decoder turns the pixels itself; for the other formats IMREAD_UNCHANGED leaves them as stored.
    return to_uint8(img) if fmt == "tiff" else orient(to_uint8(img), exif_orientation(data))


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, body start, body end) of each JPEG header segment, up to and including the first SOS."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if length < 2:
            return
        yield marker, i + 4, min(i + 2 + length, len(data))
        if marker == 0xDA:
            return
        i += 2 + length


def _jpeg_end(data: bytes) -> int | None:
    """The offset just past the image's EOI marker (bytes after it, such as a motion photo's MP4, are not the
    image's); None when the entropy-coded data never ends. Header segments are skipped by their lengths, so an
    EXIF thumbnail's own EOI is not taken for the image's."""
    sos_end = next((end for marker, _, end in _jpeg_segments(data) if marker == 0xDA), None)
    if sos_end is None:
        return None
    eoi = data.find(b"\xff\xd9", sos_end)  # 0xFF in entropy-coded data is always stuffed (FF00) or a marker
    return None if eoi < 0 else eoi + 2


def _png_end(data: bytes) -> int | None:
    """The offset just past the IEND chunk, walking the chunks by their lengths; None when the file ends before it."""
    i = 8
    while i + 12 <= len(data):
        length = struct.unpack(">I", data[i : i + 4])[0]
        if data[i + 4 : i + 8] == b"IEND":
            return i + 12
        i += 12 + length
    return None


def _truncation(data: bytes, fmt: str) -> str | None:
    # libpng and libjpeg decode a file cut inside its image data without complaint: a complete file has its end marker.
    if fmt == "png" and _png_end(data) is None:
        return "PNG is truncated (no IEND chunk)"
    if fmt == "jpeg" and _jpeg_end(data) is None:
        return "JPEG is truncated (no EOI marker after its scan data)"
    return None


def probe_image(data: bytes | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageProbe:
    """Check that bytes are a complete, decodable image of a sane size and report its geometry (upright: EXIF applied).

    Never raises: whatever goes wrong with one record is its reason and detail."""
    if data is None or len(data) == 0:
        return ImageProbe(None, None, None, None, "EMPTY_FILE", "zero-byte file")
    fmt = sniff_format(data)
    if fmt is None:
        return ImageProbe(None, None, None, None, "UNSUPPORTED_FORMAT", f"not an image format deepbatch reads (magic bytes {data[:8].hex()})")
    truncated = _truncation(data, fmt)
    if truncated:
        return ImageProbe(None, None, None, fmt, "UNDECODABLE_IMAGE", truncated)
    try:
        # A JPEG is checked at 1/8 scale: libjpeg still entropy-decodes every coefficient (where corruption shows),
        # and skips most of the inverse DCT; its geometry then comes from the frame header the decoder followed.
        img = decode_image(data, max_pixels, min_side=1 if fmt == "jpeg" else 0)
    except ImageTooLarge as e:
        return ImageProbe(None, None, None, fmt, "IMAGE_TOO_LARGE", str(e))
    except Exception as e:  # noqa: BLE001 - one record's failure must never stop the stage
        return ImageProbe(None, None, None, fmt, "UNDECODABLE_IMAGE", f"{type(e).__name__}: {e}"[:500])
    orientation = exif_orientation(data)
    h, w, c = img.shape
    frame = _jpeg_frame(data) if fmt == "jpeg" else None
    if frame is not None and jpeg_reduction(frame[1], frame[0], 1) > 1:
        w, h = (frame[1], frame[0]) if orientation >= 5 else frame[:2]  # 5-8 turn the image a quarter
        c = 1 if frame[2] == 1 else 3  # what a full decode gives: grey stays grey, YCbCr and CMYK become BGR
    return ImageProbe(int(w), int(h), int(c), fmt, None, None, orientation)


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """A decoded OpenCV image (grey, grey+alpha, BGR or BGRA) as HxWx1 grey or HxWx3 RGB."""
    if img.shape[2] == 2:  # grey + alpha
        img = img[:, :, :1]
    if channels == 1:
        return img if img.shape[2] == 1 else cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2GRAY)[:, :, None]
    if img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2RGB)


def image_to_array(data: bytes, size: int, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS, dct_scaled: bool = False) -> np.ndarray:
    """Decode and resize to size×size×channels uint8 (area interpolation when shrinking); ``dct_scaled``: a large JPEG
    is decoded at the smallest DCT scale that keeps its shorter side at or above ``size``."""
    img = to_channels(decode_image(data, max_pixels, size if dct_scaled else 0), channels)
    if img.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
        if img.ndim == 2:
            img = img[:, :, None]
    return np.ascontiguousarray(img, dtype=np.uint8)
