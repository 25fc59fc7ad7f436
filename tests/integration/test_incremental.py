"""Incremental acquire: each landing file is ingested exactly once across run dates."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from deepbatch.stages.run import run_acquire
from tests.conftest import make_conf

pytestmark = pytest.mark.integration


def _landed(manifest: dict) -> dict[str, int]:
    return {t["table"].split("/", 1)[1]: t["records_out"] for t in manifest["tables"]}


@pytest.mark.slow
def test_incremental_acquire_ingests_each_file_exactly_once(spark, landing_conf, tmp_path) -> None:
    for root in ("full", "inc"):
        shutil.copytree(Path(landing_conf.data_root) / "landing", tmp_path / root / "landing", copy_function=shutil.copy2)
    full = run_acquire(spark, make_conf(tmp_path / "full"), "2026-11-02")  # a full snapshot, for the counts
    conf = make_conf(tmp_path / "inc", "acquire.mode=incremental")
    landing = tmp_path / "inc" / "landing"
    first = _landed(run_acquire(spark, conf, "2026-11-02"))
    assert first == _landed(full) and first["images"] > 100  # nothing ingested before: everything

    second = _landed(run_acquire(spark, conf, "2026-11-03"))
    assert all(n == 0 for n in second.values()), second
    # New arrivals: exactly those are ingested.
    imgs = sorted((landing / "images" / "fashion_mnist").glob("fmnist-*.png"))
    shutil.copyfile(imgs[0], landing / "images" / "fashion_mnist" / "new-1.png")  # same pixels, new file
    (landing / "images" / "fashion_mnist" / "new-2.png").write_bytes(imgs[1].read_bytes() + b"\0")
    (landing / "text" / "late.jsonl").write_text(
        "\n".join(json.dumps({"review_id": f"late-{i}", "text": f"Late review {i}.", "label": "fresh"}) for i in range(3)) + "\n"
    )
    third = _landed(run_acquire(spark, conf, "2026-11-04"))
    assert third["images"] == 2 and third["text"] == 3 and third["_files"] == 3
    assert sum(third.values()) == 2 + 3 + 3
    rows = spark.read.parquet(str(tmp_path / "inc" / "bronze" / "images" / "run_date=2026-11-04")).select("record_id").collect()
    assert sorted(r.record_id for r in rows) == ["new-1", "new-2"]
    # A rerun of the same run date lands the same files again (idempotent), not nothing.
    assert _landed(run_acquire(spark, conf, "2026-11-04")) == third
    # A file touched but unchanged is not new.
    stamp = imgs[5].stat().st_mtime + 3600
    os.utime(imgs[5], (stamp, stamp))
    os.utime(landing / "text" / "late.jsonl", (stamp, stamp))
    fifth = _landed(run_acquire(spark, conf, "2026-11-05"))
    assert all(n == 0 for n in fifth.values()), fifth
