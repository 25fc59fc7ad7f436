from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepbatch.demo.replicate import replica_bytes, replicate_landing
from deepbatch.demo.sources import real_video_clips
from deepbatch.media.image import probe_image
from deepbatch.media.video import probe_video

pytestmark = pytest.mark.unit


def test_replicas_differ_in_bytes_but_decode_the_same() -> None:
    img = (np.arange(28 * 28, dtype=np.uint8).reshape(28, 28) * 3).astype(np.uint8)
    png = cv2.imencode(".png", img)[1].tobytes()
    jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))[1].tobytes()
    for name, data in (("a.png", png), ("a.jpg", jpg)):
        rep = replica_bytes(name, data, 2)
        assert rep != data and replica_bytes(name, data, 0) == data
        assert probe_image(rep).reason is None
        assert np.array_equal(cv2.imdecode(np.frombuffer(rep, np.uint8), cv2.IMREAD_UNCHANGED),
                              cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
    clip = real_video_clips()[0].read_bytes()
    rep = replica_bytes("c.mp4", clip, 1)
    assert rep != clip and probe_video(rep).frame_count == probe_video(clip).frame_count
    assert replica_bytes("e.png", b"", 3) == b""


def test_replicate_landing_multiplies_records_under_new_ids(tmp_path) -> None:
    src = tmp_path / "src"
    (src / "images" / "set").mkdir(parents=True)
    (src / "labels").mkdir()
    (src / "text").mkdir()
    cv2.imwrite(str(src / "images" / "set" / "im-1.png"), np.zeros((4, 4), np.uint8))
    (src / "labels" / "image_labels.csv").write_text("id,label\nim-1,Bag\n")
    (src / "text" / "t.jsonl").write_text(json.dumps({"review_id": "rt-1", "text": "Fine.", "label": "fresh"}) + "\n{broken\n")
    (src / "_demo.json").write_text("{}")
    counts = replicate_landing(src, tmp_path / "dst", 3)
    dst = tmp_path / "dst"
    assert sorted(p.name for p in (dst / "images" / "set").iterdir()) == ["im-1-r0.png", "im-1-r1.png", "im-1-r2.png"]
    assert (dst / "labels" / "image_labels.csv").read_text().splitlines() == ["id,label", "im-1-r0,Bag", "im-1-r1,Bag", "im-1-r2,Bag"]
    lines = (dst / "text" / "t.jsonl").read_text().splitlines()
    assert len(lines) == 6 and lines.count("{broken") == 3
    recs = [json.loads(x) for x in lines if x != "{broken"]
    assert [r["review_id"] for r in recs] == ["rt-1-r0", "rt-1-r1", "rt-1-r2"] and recs[2]["text"] == "Fine. [replica 2]"
    assert counts == {"files": 3, "text_lines": 6, "label_rows": 3} and (dst / "_demo.json").is_file()
    assert Path(dst).is_dir()
