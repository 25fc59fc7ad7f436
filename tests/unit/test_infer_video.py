from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepbatch.cores.common import latest_model_dir
from deepbatch.cores.video import FRAME_COLUMNS, Sampling, VideoClipClassifier, read_frames
from deepbatch.demo.sources import real_video_clips
from deepbatch.media.video import count_frames

pytestmark = pytest.mark.unit

CLIPS = {p.stem: p for p in real_video_clips()}


@pytest.fixture(scope="module")
def core(model_root) -> VideoClipClassifier:
    return VideoClipClassifier(str(latest_model_dir(model_root / "models", "video_cls")), Sampling(frames_per_clip=4),
                               imagenet_top1=True, imagenet_size=96)


def test_sampling_every_nth_or_k_uniform() -> None:
    assert Sampling(every_n=10).indices(25) == [0, 10, 20]
    assert Sampling(frames_per_clip=4).indices(10) == [0, 3, 6, 9]
    assert Sampling(frames_per_clip=4).indices(2) == [0, 0, 1, 1]  # short clips repeat frames
    capped = Sampling(every_n=1, max_frames=5).indices(100)
    assert len(capped) == 5 and capped[0] == 0 and capped[-1] == 99
    assert Sampling().indices(0) == []


@pytest.mark.parametrize(("name", "frames"), [("bikes", 250), ("bigbuckbunny", 132), ("carphone_pristine", 120)])
def test_real_clips_give_the_right_frame_counts(name, frames) -> None:
    path = str(CLIPS[name])
    assert count_frames(path) == frames
    idx, got, fps = read_frames(path, Sampling(every_n=10))
    assert idx == list(range(0, frames, 10)) and len(got) == len(range(0, frames, 10)) and fps > 0
    idx, got, _ = read_frames(path, Sampling(frames_per_clip=8), frame_count=frames)
    assert len(got) == 8 and idx[0] == 0 and idx[-1] == frames - 1
    assert got[0].ndim == 3 and got[0].shape[2] == 3 and got[0].dtype == np.uint8


def test_clip_rows_become_frame_rows_with_one_clip_label(core) -> None:
    clips = pd.DataFrame({
        "record_id": ["bikes", "bunny-by-path", "junk", "gone"],
        "content": [CLIPS["bikes"].read_bytes(), None, b"\x00" * 512, None],
        "source_path": [f"file:{CLIPS['bikes']}", f"file://{CLIPS['bigbuckbunny']}", "x/junk.mp4", "/no/such/clip.mp4"],
        "frame_count": [250, None, None, None],
    })
    out = core.predict(clips)
    assert list(out.columns) == FRAME_COLUMNS
    frames = out[out["error"].isna()]
    assert frames.groupby("record_id").size().to_dict() == {"bikes": 4, "bunny-by-path": 4}
    for _, g in frames.groupby("record_id"):
        assert g["predicted"].nunique() == 1 and (g["frames_used"] == 4).all()
        assert sum(g["class_probs"].iloc[0]) == pytest.approx(1.0, abs=1e-5)
        assert all(len(f) == 1280 for f in g["features"]) and g["imagenet_label"].notna().all()
    assert list(frames[frames.record_id == "bikes"]["frame_index"]) == [0, 83, 166, 249]
    errors = out.set_index("record_id")["error"]
    assert errors["junk"].startswith("UNDECODABLE_VIDEO") and errors["gone"].startswith("MISSING_FILE")


def test_bytes_and_path_give_the_same_prediction(core) -> None:
    inline = core.predict(pd.DataFrame({"record_id": ["c"], "content": [CLIPS["carphone_pristine"].read_bytes()], "source_path": ["c.mp4"]}))
    by_path = core.predict(pd.DataFrame({"record_id": ["c"], "content": [None], "source_path": [str(CLIPS["carphone_pristine"])]}))
    np.testing.assert_allclose(np.array(list(inline["features"])), np.array(list(by_path["features"])), atol=1e-5)
    assert inline["predicted"].iloc[0] == by_path["predicted"].iloc[0]
