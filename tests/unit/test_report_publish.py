"""Publishing the run report: parts from separate stage commits, one page that shows them all."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from deepbatch.commit import Commit
from deepbatch.commit.lock import acquire
from deepbatch.errors import LockHeldError
from deepbatch.report.page import Part
from deepbatch.report.publish import part_path, publish_run_report, read_parts, stage_part
from deepbatch.storage import LocalStore
from tests.conftest import make_conf

pytestmark = pytest.mark.unit

RUN_DATE = "2026-11-27"


def _publish_part(conf, stage: str, part: Part) -> None:
    with Commit.for_stage(None, conf, stage, RUN_DATE) as commit:
        stage_part(commit, conf, RUN_DATE, part)


def test_each_stage_publishes_its_part_and_the_page_shows_every_part(tmp_path: Path) -> None:
    conf = make_conf(tmp_path)
    _publish_part(conf, "analyse", Part("data", "data", "D", [{"type": "p", "text": "profiled"}], {}, {"run_date": RUN_DATE, "rows": 3}))
    publish_run_report(None, conf, RUN_DATE)
    _publish_part(conf, "train", Part("model_t", "model", "M", [{"type": "img", "src": "c.png", "alt": "c"}], {"c.png": b"png"}))
    page_path = Path(publish_run_report(None, conf, RUN_DATE))
    page = page_path.read_text()
    assert "profiled" in page and 'src="model_t/c.png"' in page
    assert (page_path.parent / "model_t" / "c.png").read_bytes() == b"png"
    assert json.loads((page_path.parent / "report.json").read_text()) == {"run_date": RUN_DATE, "rows": 3}
    # A stage that runs again replaces its own part only; the page is rendered from what is published.
    _publish_part(conf, "analyse", Part("data", "data", "D", [{"type": "p", "text": "profiled again"}], {}, {}))
    page = Path(publish_run_report(None, conf, RUN_DATE)).read_text()
    assert "profiled again" in page and 'src="model_t/c.png"' in page
    assert sorted(p.key for p in read_parts(LocalStore(), conf, RUN_DATE)) == ["data", "model_t"]
    assert (Path(part_path(conf, "model_t", RUN_DATE)) / "_commit.json").is_file()  # each part is a committed output


def test_a_stage_that_fails_publishes_no_part_and_leaves_the_page(tmp_path: Path) -> None:
    conf = make_conf(tmp_path)
    _publish_part(conf, "analyse", Part("data", "data", "D", [{"type": "p", "text": "v1"}]))
    publish_run_report(None, conf, RUN_DATE)
    with pytest.raises(RuntimeError), Commit.for_stage(None, conf, "train", RUN_DATE) as commit:
        stage_part(commit, conf, RUN_DATE, Part("model_t", "model", "M"))
        raise RuntimeError("training died")
    assert [p.key for p in read_parts(LocalStore(), conf, RUN_DATE)] == ["data"]
    assert "v1" in Path(conf.path("reports", RUN_DATE, "report.html")).read_text()


def test_rendering_waits_for_another_render_of_the_same_run_date_and_gives_up_after_the_wait(tmp_path: Path) -> None:
    conf = make_conf(tmp_path)
    _publish_part(conf, "analyse", Part("data", "data", "D", [{"type": "p", "text": "v1"}]))
    held = acquire(LocalStore(), conf.data_root, "report", RUN_DATE, "another render", heartbeat=False)
    with pytest.raises(LockHeldError, match="another render"):
        publish_run_report(None, conf, RUN_DATE, wait_s=0.5)
    threading.Timer(1.5, held.release).start()
    t0 = time.monotonic()
    publish_run_report(None, conf, RUN_DATE, wait_s=30)
    assert time.monotonic() - t0 >= 1.0
    assert "v1" in Path(conf.path("reports", RUN_DATE, "report.html")).read_text()
