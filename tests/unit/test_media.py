from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepbatch.demo.sources import real_video_clips
from deepbatch.demo.synthetic_video import render_clip, write_clip
from deepbatch.media.image import probe_image
from deepbatch.media.text import normalise_text
from deepbatch.media.video import probe_video, probe_video_file

pytestmark = pytest.mark.unit


def _png(h: int = 5, w: int = 7, c: int = 3) -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (h, w, c), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def test_probe_image_reports_geometry_of_png_and_jpeg() -> None:
    p = probe_image(_png())
    assert (p.width, p.height, p.channels, p.image_format, p.reason) == (7, 5, 3, "png", None)
    jpg = cv2.imencode(".jpg", np.zeros((9, 4), np.uint8))[1].tobytes()
    p = probe_image(jpg)
    assert (p.width, p.height, p.channels, p.image_format, p.reason) == (4, 9, 1, "jpeg", None)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "EMPTY_FILE"),
        (None, "EMPTY_FILE"),
        (b"not an image at all", "UNSUPPORTED_FORMAT"),
        (_png()[:40], "UNDECODABLE_IMAGE"),
        (cv2.imencode(".jpg", np.zeros((30, 30), np.uint8))[1].tobytes()[:-50], "UNDECODABLE_IMAGE"),
    ],
)
def test_probe_image_rejects_bad_bytes(data: bytes | None, reason: str) -> None:
    assert probe_image(data).reason == reason


def test_normalise_text_nfc_and_whitespace() -> None:
    decomposed = "Cafe\u0301\t  was\n\ngreat  "
    assert normalise_text(decomposed) == "Caf\u00e9 was great"
    assert normalise_text("   ") == ""
    assert normalise_text(None) is None


def test_synthetic_clip_round_trips_through_opencv(tmp_path) -> None:
    frames = render_clip("triangle", 10, 48, np.random.default_rng(1))
    path = tmp_path / "c.mp4"
    write_clip(path, frames)
    p = probe_video_file(str(path))
    assert (p.width, p.height, p.frame_count, p.reason) == (48, 48, 10, None)
    assert p.fps == pytest.approx(12.0)


def test_real_clips_frame_counts() -> None:
    clips = {c.name: c for c in real_video_clips()}
    p = probe_video(clips["bikes.mp4"].read_bytes())
    assert p.reason is None and p.frame_count == 250
    p = probe_video(clips["bigbuckbunny.mp4"].read_bytes())
    assert p.reason is None and p.frame_count == 132


def test_probe_video_rejects_garbage_and_empty() -> None:
    assert probe_video(b"").reason == "EMPTY_FILE"
    assert probe_video(np.random.default_rng(0).bytes(2048)).reason == "UNDECODABLE_VIDEO"


def test_every_catalogue_image_probes_to_its_reason_without_spark() -> None:
    from deepbatch.media.image import probe_image
    from tests.faults import catalogue

    existing = cv2.imencode(".png", np.zeros((5, 5), np.uint8))[1].tobytes()
    for case in [*catalogue.image_cases(existing), *catalogue.camera_cases()]:
        if case.expect in ("DUPLICATE_CONTENT", "DUPLICATE_ID"):  # decided across records, in Spark
            continue
        probe = probe_image(case.data)
        assert (probe.reason or "silver") == case.expect, (case.name, probe)


def test_still_images_are_not_videos_and_any_video_failure_is_a_reason() -> None:
    from deepbatch.media.video import probe_video
    from tests.faults import catalogue

    for case in catalogue.video_cases():
        probe = probe_video(case.data, suffix="." + case.path.rsplit(".", 1)[-1].lower())
        assert (probe.reason or "silver") == case.expect, (case.name, probe)


def test_higher_bit_depths_scale_to_8_bits_in_order() -> None:
    from deepbatch.media.image import to_uint8

    ramp16 = np.arange(0, 65536, 257, dtype=np.uint16)
    assert np.array_equal(to_uint8(ramp16), np.arange(256, dtype=np.uint8))
    floats = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    out = to_uint8(floats)
    assert out[0] == 0 and out[-1] == 255 and (np.diff(out.astype(int)) > 0).all()
    assert to_uint8(np.array([-3.0, 0.5, np.nan], np.float32)).tolist() == [0, 128, 0]


def _with_exif(stored: np.ndarray, orientation: int, fmt: str) -> bytes:
    import io

    from PIL import Image

    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[274] = orientation
    buf = io.BytesIO()
    im.save(buf, format=fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "JPEG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_decoding_turns_every_exif_orientation_upright_as_pillow_does(fmt: str, orientation: int) -> None:
    import io

    from PIL import Image, ImageOps

    from deepbatch.media.image import decode_image, exif_orientation

    stored = np.random.default_rng(orientation).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    data = _with_exif(stored, orientation, fmt)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    got = decode_image(data)[:, :, ::-1]
    assert exif_orientation(data) == orientation and got.shape == upright.shape
    assert np.abs(got.astype(int) - upright.astype(int)).max() <= (0 if fmt != "JPEG" else 2)
    p = probe_image(data)
    assert (p.width, p.height, p.orientation) == (upright.shape[1], upright.shape[0], orientation)


def test_training_and_inference_see_a_turned_photo_upright() -> None:
    from deepbatch.cores.image import preprocess_image

    upright = np.random.default_rng(1).integers(0, 255, (24, 16, 3), dtype=np.uint8)
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # the sensor's view; orientation 6 turns it a quarter clockwise
    for prep in ({"resize": "shorter_crop", "image_size": 16, "shorter": 16}, {"image_size": 12, "channels": 3}):
        plain = preprocess_image(cv2.imencode(".png", upright[:, :, ::-1])[1].tobytes(), prep)
        assert np.array_equal(preprocess_image(_with_exif(stored, 6, "PNG"), prep), plain)


def test_bytes_after_the_end_marker_are_not_the_image_but_a_cut_scan_is_refused() -> None:
    jpg = cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8))[1].tobytes()
    assert probe_image(jpg + b"\x00\x00\x00\x18ftypmp42" + bytes(500)).reason is None  # a motion photo
    assert probe_image(_png() + b"IEND" * 3 + bytes(50)).reason is None
    cut = probe_image(jpg[:-40])
    assert (cut.reason, cut.detail) == ("UNDECODABLE_IMAGE", "JPEG is truncated (no EOI marker after its scan data)")
    assert probe_image(_png()[:-20]).detail == "PNG is truncated (no IEND chunk)"


def test_a_capped_frame_count_is_flagged_and_a_full_count_is_not(tmp_path) -> None:
    path = str(tmp_path / "c.avi")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 16))
    for i in range(12):
        w.write(np.full((16, 16, 3), 20 * i, np.uint8))
    w.release()
    assert (probe_video_file(path, max_frames=5).frame_count, probe_video_file(path, max_frames=5).frame_count_capped) == (5, True)
    assert (probe_video_file(path, max_frames=12).frame_count, probe_video_file(path, max_frames=12).frame_count_capped) == (12, False)
    assert probe_video_file(path, max_frames=50).frame_count_capped is False
