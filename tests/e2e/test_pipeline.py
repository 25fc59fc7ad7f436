"""The whole chain through the `deepbatch` CLI, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepbatch.cli import main
from tests.conftest import REPO, RUN_DATE, TINY

pytestmark = pytest.mark.e2e

LOCAL = str(REPO / "conf" / "local.yaml")


def _args(root: Path, *extra: str) -> list[str]:
    return ["--conf", LOCAL, "--run-date", RUN_DATE, f"data_root={root}", "spark.master=local[2]", *TINY, *extra]


def _manifest(root: Path, stage: str) -> dict:
    return json.loads((root / "manifests" / f"run_date={RUN_DATE}" / f"{stage}.json").read_text())


def test_demo_data_then_pipeline_reconciles_across_stages(spark, tmp_path) -> None:
    assert main(["demo-data", *_args(tmp_path)]) == 0
    assert main(["pipeline", *_args(tmp_path)]) == 0
    tables = {t["table"]: t for stage in ("acquire", "clean", "integrate", "analyse") for t in _manifest(tmp_path, stage)["tables"]}
    for t in tables.values():  # every table balances on its own
        assert t["records_in"] == t["records_out"] + sum(t["quarantined"].values()) + sum(t["deduplicated"].values())
    for source in ("images", "image_labels", "text", "videos", "video_labels", "photos"):  # and stages hand over exactly
        assert tables[f"silver/{source}"]["records_in"] == tables[f"bronze/{source}"]["records_out"]
    for task, source in (("image_cls", "images"), ("text_cls", "text"), ("video_cls", "videos")):
        assert tables[f"gold/{task}"]["records_in"] == tables[f"silver/{source}"]["records_out"]
    rows = sum(tables[f"gold/{t}"]["records_out"] for t in ("image_cls", "text_cls", "video_cls"))
    assert tables["reports"]["records_in"] == rows
    assert (tmp_path / "reports" / RUN_DATE / "report.html").is_file()
    assert not any((tmp_path / "_staging").iterdir())


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
