"""The worked examples under conf/examples/ through the CLI: another real data set, landed as it ships, with a conf only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepbatch.cli import main
from tests.conftest import REPO, RUN_DATE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEBATES = str(REPO / "conf" / "examples" / "debates.yaml")


def _args(root: Path, *extra: str) -> list[str]:
    return ["--conf", DEBATES, "--run-date", RUN_DATE, f"data_root={root}", "spark.master=local[2]",
            "tasks.party.train.epochs=4", *extra]


def _tables(root: Path, stage: str) -> dict[str, dict]:
    manifest = json.loads((root / "manifests" / f"run_date={RUN_DATE}" / f"{stage}.json").read_text())
    return {t["table"]: t for t in manifest["tables"]}


def test_the_debates_example_runs_from_the_landing_zone_to_predictions(spark, tmp_path, capsys) -> None:
    assert main(["demo-data", *_args(tmp_path)]) == 0
    assert [p.name for p in (tmp_path / "landing" / "debates").iterdir()] == ["presidential_debates_2016.csv.gz"]
    assert main(["check", *_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1,122 record(s)" in out and "labels: Democratic 348, Moderator 320, Republican 454" in out
    assert main(["pipeline", *_args(tmp_path)]) == 0
    bronze, silver = _tables(tmp_path, "acquire")["bronze/debates"], _tables(tmp_path, "clean")["silver/debates"]
    assert bronze["records_out"] == 1122 and silver["records_in"] == 1122  # every row of the CSV, multi-line statements too
    assert silver["records_out"] + sum(silver["deduplicated"].values()) + sum(silver["quarantined"].values()) == 1122
    gold = _tables(tmp_path, "integrate")["gold/party"]
    assert gold["extra"]["classes"] == ["Democratic", "Moderator", "Republican"] and gold["extra"]["classes_from"] == "auto"
    predictions = _tables(tmp_path, "infer")["predictions/party"]
    assert predictions["records_out"] == gold["records_out"] and predictions["extra"]["errors_by_reason"] == {}
    assert predictions["extra"]["accuracy_by_split"]["test"]["accuracy"] > 0.45  # three classes; the largest is 40% of the rows
    label_map = json.loads((tmp_path / "models" / "party" / RUN_DATE / "label_map.json").read_text())
    assert label_map == {"Democratic": 0, "Moderator": 1, "Republican": 2}
    assert not (tmp_path / "bronze" / "images").exists() and not (tmp_path / "landing" / "images").exists()
