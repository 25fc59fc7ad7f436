from __future__ import annotations

import json
import logging

import pytest

from deepbatch.errors import ConfigError
from deepbatch.logs import JsonFormatter, setup_logging, stage_context
from deepbatch.pipeline import STAGES, select, stage_hash
from deepbatch.progress import format_eta, progress_line
from tests.conftest import make_conf

pytestmark = pytest.mark.unit


def test_select_gives_inclusive_ranges_in_dependency_order() -> None:
    assert select() == list(STAGES)
    assert select("clean", "analyse") == ["clean", "integrate", "analyse"]
    assert select(None, "acquire") == ["acquire"] and select("infer") == ["infer"]
    with pytest.raises(ConfigError, match="comes after"):
        select("train", "clean")
    with pytest.raises(ConfigError, match="unknown stage"):
        select("cleaning")


def test_stage_hash_follows_only_the_settings_a_stage_reads(tmp_path) -> None:
    base = make_conf(tmp_path)
    changed = make_conf(tmp_path, "infer.batch_size=7")
    for stage in ("clean", "integrate", "analyse", "materialize", "train"):
        assert stage_hash(base, stage, None) == stage_hash(changed, stage, None)
    assert stage_hash(base, "infer", None) != stage_hash(changed, "infer", None)
    assert stage_hash(base, "integrate", None) != stage_hash(make_conf(tmp_path, "split.seed=3"), "integrate", None)
    assert stage_hash(base, "train", ("image_cls",)) != stage_hash(base, "train", None)  # the tasks run count too


def test_acquire_hash_follows_the_landing_zone(tmp_path) -> None:
    conf = make_conf(tmp_path)
    (tmp_path / "landing" / "text").mkdir(parents=True)
    before = stage_hash(conf, "acquire", None)
    assert stage_hash(conf, "acquire", None) == before
    (tmp_path / "landing" / "text" / "new.jsonl").write_text("{}\n")
    assert stage_hash(conf, "acquire", None) != before


def test_json_lines_carry_the_stage_run_date_and_event_fields() -> None:
    logger = logging.getLogger("deepbatch.test")
    with stage_context("clean", "2026-11-27"):
        record = logger.makeRecord("deepbatch.test", logging.INFO, __file__, 1, "stage %s: done in %.1f s", ("clean", 1.25), None,
                                   extra={"event": "stage_done", "duration_s": 1.2, "tables": [{"table": "silver/text", "records_in": 3}]})
        line = JsonFormatter().format(record)
    out = json.loads(line)
    assert out["message"] == "stage clean: done in 1.2 s" and out["level"] == "INFO"
    assert out["stage"] == "clean" and out["run_date"] == "2026-11-27" and out["event"] == "stage_done"
    assert out["tables"][0]["records_in"] == 3 and out["ts"].endswith("+00:00")
    outside = json.loads(JsonFormatter().format(logger.makeRecord("x", logging.WARNING, __file__, 1, "m", (), None)))
    assert "stage" not in outside and outside["level"] == "WARNING"


def test_setup_logging_installs_one_handler_of_the_chosen_format() -> None:
    root = logging.getLogger()
    try:
        setup_logging(fmt="json")
        setup_logging(fmt="json")
        ours = [h for h in root.handlers if getattr(h, "_deepbatch", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        with pytest.raises(ValueError, match="log format"):
            setup_logging(fmt="xml")
    finally:
        for h in [h for h in root.handlers if getattr(h, "_deepbatch", False)]:
            root.removeHandler(h)


def test_progress_lines_give_done_rate_and_eta() -> None:
    assert progress_line("infer x", 1200, 3000, 10.0) == "infer x: 1,200/3,000 records (40%), 120.0 records/s, ETA 15 s"
    assert progress_line("s", 0, 10, 5.0).endswith("ETA ?")
    assert format_eta(3725) == "1 h 02 min" and format_eta(61) == "1 min 01 s"


def test_task_progress_lines_estimate_eta_from_finished_tasks() -> None:
    from deepbatch.progress import task_line

    assert task_line("clean silver/images", 2, 8, 10.0) == "clean silver/images: 2/8 tasks (25%), ETA 30 s"
    assert task_line("x", 0, 4, 3.0).endswith("ETA ?")


def test_run_date_accepts_only_yyyy_mm_dd() -> None:
    from deepbatch.cli import main, valid_run_date

    assert valid_run_date("2026-11-27")
    for bad in ("20261127", "2026-11-31", "2026-1-27", "2026-11-27T00:00", " 2026-11-27", "2026W481"):
        assert not valid_run_date(bad), bad
    with pytest.raises(SystemExit) as e:
        main(["clean", "--run-date", "20261127"])
    assert e.value.code == 2


def test_console_shows_deepbatch_info_but_library_info_only_when_verbose() -> None:
    root = logging.getLogger()
    try:
        setup_logging()
        assert logging.getLogger("deepbatch.stages.run").isEnabledFor(logging.INFO)
        for library in ("root", "horovod", "mlflow.tracking"):  # py4j's retry note comes through "root"
            logger = root if library == "root" else logging.getLogger(library)
            assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING), library
        setup_logging(verbose=True)
        assert root.isEnabledFor(logging.DEBUG)
    finally:
        for h in [h for h in root.handlers if getattr(h, "_deepbatch", False)]:
            root.removeHandler(h)
        root.setLevel(logging.WARNING)


def test_a_copied_data_root_keeps_its_stage_hashes(tmp_path) -> None:
    import shutil

    (tmp_path / "a" / "landing" / "text").mkdir(parents=True)
    (tmp_path / "a" / "landing" / "text" / "r.jsonl").write_text("{}\n")
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copy2)
    a, b = make_conf(tmp_path / "a"), make_conf(tmp_path / "b")
    for stage in STAGES:
        assert stage_hash(a, stage, None) == stage_hash(b, stage, None), stage
    (tmp_path / "b" / "landing" / "text" / "r.jsonl").write_text("{}\n{}\n")
    assert stage_hash(a, "acquire", None) != stage_hash(b, "acquire", None)
