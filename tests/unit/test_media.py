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


@pytest.mark.parametrize(("h", "w", "min_side", "k"), [(3000, 4000, 256, 8), (2048, 1536, 256, 4), (1024, 1024, 256, 4),
                                                       (512, 700, 256, 2), (511, 700, 256, 2), (510, 700, 256, 1), (300, 451, 256, 1),
                                                       (4000, 3000, 0, 1), (28, 28, 28, 1)])
def test_jpeg_reduction_keeps_the_shorter_side_at_or_above_the_target(h: int, w: int, min_side: int, k: int) -> None:
    from deepbatch.media.image import jpeg_reduction

    assert jpeg_reduction(h, w, min_side) == k


def _photo_like(h: int, w: int) -> np.ndarray:
    """Smooth gradients plus texture, so a scaled decode and a full one can be compared fairly."""
    rng = np.random.default_rng(7)
    base = cv2.resize(rng.integers(0, 255, (h // 64 + 2, w // 64 + 2, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base.astype(int) + rng.integers(-12, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def test_a_large_jpeg_is_decoded_dct_scaled_to_no_less_than_the_target_and_upright() -> None:
    from deepbatch.media.image import decode_image

    stored = _photo_like(1536, 2048)
    data = _with_exif(stored, 6, "JPEG")  # turned a quarter: upright it is 2048 high, 1536 wide
    assert decode_image(data).shape == (2048, 1536, 3)
    assert decode_image(data, min_side=256).shape == (512, 384, 3)  # 1/4: 384 >= 256, 1/8 would give 192
    assert decode_image(data, min_side=1536).shape == (2048, 1536, 3)  # no smaller scale keeps the target
    png = cv2.imencode(".png", stored)[1].tobytes()
    assert decode_image(png, min_side=256).shape == (1536, 2048, 3)  # only JPEGs have DCT scaling


def test_dct_scaled_preprocessing_matches_the_full_decode_closely_and_old_model_folders_keep_the_full_decode() -> None:
    from deepbatch.cores.image import imagenet_preprocess, preprocess_image

    data = cv2.imencode(".jpg", _photo_like(1500, 2000), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    full, scaled = imagenet_preprocess(data, dct_scaled=False), imagenet_preprocess(data)
    assert full.shape == scaled.shape == (224, 224, 3)
    assert not np.array_equal(full, scaled) and np.abs(full.astype(int) - scaled.astype(int)).mean() < 2.0
    prep = {"resize": "shorter_crop", "image_size": 224, "shorter": 256}
    assert np.array_equal(preprocess_image(data, prep), full)  # written before jpeg_dct_scaling: as trained
    assert np.array_equal(preprocess_image(data, {**prep, "jpeg_dct_scaling": True}), scaled)
    squash = {"image_size": 64, "channels": 1}
    grey_full, grey_scaled = preprocess_image(data, squash), preprocess_image(data, {**squash, "jpeg_dct_scaling": True})
    assert grey_full.shape == grey_scaled.shape == (64, 64, 1) and np.abs(grey_full.astype(int) - grey_scaled.astype(int)).mean() < 2.0


def test_sampled_frames_are_the_same_with_and_without_the_probe_count_and_repeat_in_short_clips(tmp_path) -> None:
    from deepbatch.media.video import count_frames, sample_frames_file

    frames = np.stack([np.full((32, 48, 3), 10 * i, np.uint8) for i in range(20)])  # frame i is grey level 10*i
    path = tmp_path / "ramp.mp4"
    write_clip(path, frames)
    assert count_frames(str(path)) == 20
    counted, known = sample_frames_file(str(path), 5, 16), sample_frames_file(str(path), 5, 16, frame_count=20)
    assert np.array_equal(counted, known) and counted.shape == (5, 16, 16, 3)
    levels = [int(round(f.mean() / 10)) for f in counted]
    assert levels == [0, 5, 10, 14, 19]  # np.linspace(0, 19, 5) rounded: the whole clip, first and last frames included
    assert [int(round(f.mean() / 10)) for f in sample_frames_file(str(path), 1, 16)] == [0]
    long = sample_frames_file(str(path), 30, 16, frame_count=20)
    assert long.shape == (30, 16, 16, 3) and int(round(long[-1].mean() / 10)) == 19


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (480, 640), (1500, 2000)])
def test_the_scaled_jpeg_check_reports_what_a_full_decode_would(mode: str, shape: tuple[int, int]) -> None:
    import io

    from PIL import Image

    from deepbatch.media.image import decode_image

    im = Image.fromarray(_photo_like(max(shape[0], 2), max(shape[1], 2))[: shape[0], : shape[1]]).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="JPEG")
    data = buf.getvalue()
    full = decode_image(data)
    p = probe_image(data)
    assert p.reason is None and (p.height, p.width, p.channels) == full.shape


def test_a_jpeg_whose_scan_is_cut_or_garbled_is_still_refused_by_the_scaled_check() -> None:
    data = cv2.imencode(".jpg", _photo_like(600, 800))[1].tobytes()
    assert probe_image(data[: len(data) // 2]).reason == "UNDECODABLE_IMAGE"  # no EOI after the scan
    sos = data.find(b"\xff\xda")
    garbled = data[: sos + 20] + b"\xff\xd0" * 10 + data[-2:]  # restart markers where the scan data should be, then EOI
    assert probe_image(garbled).reason in (None, "UNDECODABLE_IMAGE")  # libjpeg's call either way, as at full scale
    assert (probe_image(garbled).reason is None) == (cv2.imdecode(np.frombuffer(garbled, np.uint8), cv2.IMREAD_UNCHANGED) is not None)
