"""The peer benchmark compares like with like: its engine-neutral work is deepbatch's, minus deepbatch's levers."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepbatch.cores.image import imagenet_preprocess
from deepbatch.demo.sources import photo_files

pytestmark = pytest.mark.unit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "peers"))
import peer_ops  # noqa: E402


def _jpegs() -> list[bytes]:
    return [cv2.imencode(".jpg", cv2.imread(str(p), cv2.IMREAD_COLOR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for p in photo_files()[:4]]


def test_the_peers_preprocess_exactly_as_deepbatch_does_without_dct_scaling() -> None:
    for data in _jpegs():
        assert np.array_equal(peer_ops.imagenet_pixels(data), imagenet_preprocess(data, dct_scaled=False))
    with pytest.raises(ValueError, match="undecodable"):
        peer_ops.imagenet_pixels(b"not an image")


def test_the_peers_probe_refuses_what_does_not_decode_and_hashes_the_bytes() -> None:
    good = _jpegs()[0]
    ok, w, h, sha = peer_ops.probe_image(good)
    assert ok and (h, w) == cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_COLOR).shape[:2] and len(sha) == 64
    assert peer_ops.probe_image(b"\xff\xd8\xff\xe0 not really a jpeg")[0] is False
