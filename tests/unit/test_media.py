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
    for case in catalogue.image_cases(existing):
        if case.expect == "DUPLICATE_CONTENT":  # decided across records, in Spark
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
