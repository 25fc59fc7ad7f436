"""The whole chain through the `deepbatch` CLI, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepbatch.cli import main
from tests.conftest import REPO, RUN_DATE, TINY, assert_other_engines_read_every_table

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOCAL = str(REPO / "conf" / "local.yaml")


def _args(root: Path, *extra: str) -> list[str]:
    return ["--conf", LOCAL, "--run-date", RUN_DATE, f"data_root={root}", "spark.master=local[2]", *TINY, *extra]


def _manifest(root: Path, stage: str) -> dict:
    return json.loads((root / "manifests" / f"run_date={RUN_DATE}" / f"{stage}.json").read_text())


@pytest.fixture(scope="module")
def pipeline_root(spark, tmp_path_factory) -> Path:
    """One whole demo run, shared by the tests that read its outputs."""
    root = tmp_path_factory.mktemp("pipeline")
    assert main(["demo-data", *_args(root)]) == 0
    assert main(["pipeline", *_args(root)]) == 0
    return root


def test_demo_data_then_pipeline_reconciles_across_stages(pipeline_root: Path) -> None:
    tmp_path = pipeline_root
    tables = {t["table"]: t for stage in ("acquire", "clean", "integrate", "analyse") for t in _manifest(tmp_path, stage)["tables"]}
    for t in tables.values():  # every table balances on its own
        assert t["records_in"] == t["records_out"] + sum(t["quarantined"].values()) + sum(t["deduplicated"].values())
    for source in ("images", "image_labels", "text", "videos", "video_labels", "photos"):  # and stages hand over exactly
        assert tables[f"silver/{source}"]["records_in"] == tables[f"bronze/{source}"]["records_out"]
    for task, source in (("image_cls", "images"), ("text_cls", "text"), ("video_cls", "videos")):
        assert tables[f"gold/{task}"]["records_in"] == tables[f"silver/{source}"]["records_out"]
    rows = sum(tables[f"gold/{t}"]["records_out"] for t in ("image_cls", "text_cls", "video_cls"))
    assert tables["reports/_parts/data"]["records_in"] == rows
    assert (tmp_path / "reports" / RUN_DATE / "report.html").is_file()
    assert not any((tmp_path / "_staging").iterdir())
    # ... and ends with predictions for the three tasks and ImageNet top-5 for the photo set.
    infer = {t["table"]: t for t in _manifest(tmp_path, "infer")["tables"]}
    for task in ("image_cls", "text_cls", "video_cls"):
        assert infer[f"predictions/{task}"]["records_in"] == tables[f"gold/{task}"]["records_out"]
        assert infer[f"predictions/{task}"]["records_out"] == tables[f"gold/{task}"]["records_out"]
    assert infer["predictions/imagenet"]["records_out"] == tables["silver/photos"]["records_out"]
    assert (tmp_path / "predictions" / "imagenet" / f"run_date={RUN_DATE}" / "_manifest.json").is_file()
    # Every table of every stage, Petastorm datasets included, is plain Parquet that other engines read.
    assert assert_other_engines_read_every_table(tmp_path) > 30


def test_run_report_shows_data_models_and_predictions_in_headless_chromium(pipeline_root: Path) -> None:
    from tests.browser import check_page

    folder = pipeline_root / "reports" / RUN_DATE
    parts = {p.name for p in (pipeline_root / "reports" / "_parts").iterdir()}
    assert parts == {"data", "model_image_cls", "model_text_cls", "model_video_cls", "predictions_image_cls", "predictions_text_cls",
                     "predictions_video_cls", "predictions_imagenet"}
    check = check_page(folder / "report.html", REPO / "build" / "test-output" / "run_report.png")
    assert [i["src"] for i in check.images if i["naturalWidth"] == 0] == []
    assert check.console_errors == []
    assert {f"part-{p}" for p in parts} | {"data", "model", "predictions"} <= check.ids
    srcs = {i["src"] for i in check.images}
    assert {"data/samples_image_cls.png", "data/samples_video_cls.png", "data/quarantined_0.png", "model_image_cls/confusion_image_cls.png",
            "model_text_cls/curves_text_cls.png", "predictions_image_cls/error_0.png", "predictions_imagenet/sample_0.png"} <= srcs
    assert check.phone_overflow_px <= 0
    page = (folder / "report.html").read_text()
    assert "Most confident errors" in page and "mlflow_run_id" in page
    shown = json.loads((pipeline_root / "reports" / "_parts" / "predictions_imagenet" / f"run_date={RUN_DATE}" / "part.json").read_text())
    gallery = next(b for b in shown["blocks"] if b["type"] == "gallery")
    assert gallery["items"] and all(len(item["caption"]) == 1 + 5 for item in gallery["items"])  # record id, then the top 5


def _status(root: Path, capsys, *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["status", "--json", "--conf", LOCAL, f"data_root={root}", *extra])
    return rc, json.loads(capsys.readouterr().out)


def test_status_reports_every_stage_and_fails_on_a_broken_run_date(spark, tmp_path, capsys) -> None:
    assert main(["demo-data", *_args(tmp_path)]) == 0
    assert main(["pipeline", "--to", "materialize", *_args(tmp_path)]) == 0
    rc, report = _status(tmp_path, capsys, "--run-date", RUN_DATE)
    by_stage = {s["stage"]: s for s in report["stages"]}
    assert [s for s in by_stage if by_stage[s]["status"] == "ok"] == ["acquire", "clean", "integrate", "analyse", "materialize"]
    assert by_stage["train"]["status"] == "not run" and rc == 1  # a run date is only ok once every stage is
    assert by_stage["clean"]["quarantined"]["EMPTY_FILE"] >= 1 and by_stage["clean"]["records_in"] > 0
    assert set(by_stage["materialize"]["datasets"]) == {"image_cls", "text_cls", "video_cls"}
    table = main(["status", "--conf", LOCAL, f"data_root={tmp_path}"])  # the latest run date, as a table
    out = capsys.readouterr().out
    assert table == 1 and f"run date {RUN_DATE}" in out and "integrate    ok" in out
    part = next((tmp_path / "gold" / "text_cls" / f"run_date={RUN_DATE}").glob("*.parquet"))
    part.unlink()  # a lost file: integrate no longer matches its commit
    rc, report = _status(tmp_path, capsys, "--run-date", RUN_DATE)
    integrate = next(s for s in report["stages"] if s["stage"] == "integrate")
    assert rc == 1 and integrate["status"] == "inconsistent" and "changed since commit" in integrate["problems"][0]


def test_quarantine_threshold_breach_exits_3_and_publishes_nothing(spark, fresh_conf) -> None:
    root = Path(fresh_conf.data_root)
    assert main(["acquire", *_args(root)]) == 0
    # The tiny zone's planted bad records are far above a 1% limit.
    assert main(["clean", *_args(root, "quality.max_quarantine_fraction=0.01")]) == 3
    assert not (root / "silver").exists()
    assert not (root / "manifests" / f"run_date={RUN_DATE}" / "clean.json").exists()


def test_missing_input_and_bad_conf_exit_non_zero(spark, tmp_path) -> None:
    assert main(["integrate", *_args(tmp_path)]) == 1  # nothing upstream yet
    assert main(["clean", *_args(tmp_path, "demo.nope=1")]) == 2


def _gold_rows(spark, root: Path) -> list[tuple]:
    df = spark.read.parquet(str(root / "gold" / "image_cls" / f"run_date={RUN_DATE}"))
    return sorted(tuple(r) for r in df.select("record_id", "split", "label", "content_hash").collect())


def _ran(caplog, stage: str) -> bool:
    return any(r.getMessage().startswith(f"stage {stage}: done") for r in caplog.records)


def _skipped(caplog, stage: str) -> bool:
    return any(r.getMessage().startswith(f"stage {stage}: skipped") for r in caplog.records)


def test_pipeline_skips_published_stages_reruns_on_change_and_force_gives_the_same_rows(spark, fresh_conf, caplog) -> None:
    root = Path(fresh_conf.data_root)
    upto = ["--to", "integrate"]
    caplog.set_level("INFO")
    assert main(["pipeline", *upto, *_args(root)]) == 0
    first = _gold_rows(spark, root)
    published = (root / "gold" / "image_cls" / f"run_date={RUN_DATE}" / "_manifest.json").stat().st_mtime_ns
    caplog.clear()
    assert main(["pipeline", *upto, *_args(root)]) == 0  # same settings, same landing zone: nothing to do
    assert all(_skipped(caplog, s) for s in ("acquire", "clean", "integrate"))
    assert (root / "gold" / "image_cls" / f"run_date={RUN_DATE}" / "_manifest.json").stat().st_mtime_ns == published
    caplog.clear()
    assert main(["pipeline", *upto, *_args(root, "split.seed=99")]) == 0  # only integrate reads split.*
    assert _skipped(caplog, "acquire") and _skipped(caplog, "clean") and _ran(caplog, "integrate")
    assert main(["acquire", *_args(root)]) == 0  # a standalone acquire republishes clean's input
    caplog.clear()
    assert main(["pipeline", *upto, *_args(root)]) == 0
    assert _skipped(caplog, "acquire") and _ran(caplog, "clean") and _ran(caplog, "integrate")
    assert any(r.getMessage().startswith("stage clean: runs: its inputs were republished (acquire") for r in caplog.records)
    caplog.clear()
    assert main(["pipeline", "--force", *upto, *_args(root)]) == 0
    assert all(_ran(caplog, s) for s in ("acquire", "clean", "integrate"))
    assert _gold_rows(spark, root) == first  # a rerun of the same run date gives the same row set
    caplog.clear()
    assert main(["pipeline", "--force", "--from", "integrate", "--to", "integrate", *_args(root)]) == 0
    assert _ran(caplog, "integrate") and not _ran(caplog, "acquire") and not _ran(caplog, "clean")
    caplog.clear()
    (root / "landing" / "text" / "late-arrival.jsonl").write_text('{"review_id": "late-1", "text": "A late, fine film.", "label": "fresh"}\n')
    assert main(["pipeline", *upto, *_args(root)]) == 0  # new landing files: acquire and everything after it rerun
    assert all(_ran(caplog, s) for s in ("acquire", "clean", "integrate"))


def test_pipeline_range_options_are_checked(spark, tmp_path) -> None:
    assert main(["pipeline", "--from", "train", "--to", "clean", *_args(tmp_path)]) == 2
    with pytest.raises(SystemExit) as e:
        main(["clean", "--force", *_args(tmp_path)])
    assert e.value.code == 2
