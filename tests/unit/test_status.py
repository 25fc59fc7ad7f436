"""deepbatch status on a data root built with real commits and completion records (no Spark needed)."""

from __future__ import annotations

import json

import pytest

from deepbatch.commit import Commit, LockSettings
from deepbatch.pipeline import mark_done, upstream_commits
from deepbatch.status import render, run_date_status, run_dates
from deepbatch.storage import LocalStore
from tests.conftest import make_conf

pytestmark = pytest.mark.unit
D = "2026-11-27"


def _publish(conf, stage: str, table: str, rows: int) -> dict:
    store = LocalStore()
    inputs = upstream_commits(store, conf, D, stage)
    c = Commit(None, conf.data_root, stage, D, conf.hash(), locking=LockSettings(enabled=False))
    c.stage_files(table, conf.path(table, f"run_date={D}"), {"part-0.parquet": b"x" * rows})
    from deepbatch.manifests import TableCounts

    c.add_manifest(TableCounts(table, rows, rows - 1, {"EMPTY_FILE": 1}))
    summary = c.publish()
    mark_done(store, conf, D, stage, None, "hash", summary, inputs, 1.5)
    return summary


def test_status_follows_commits_inputs_and_interruptions(tmp_path) -> None:
    conf, store = make_conf(tmp_path), LocalStore()
    _publish(conf, "acquire", "bronze/x", 5)
    _publish(conf, "clean", "silver/x", 4)
    report = run_date_status(store, conf, D)
    st = {s["stage"]: s for s in report["stages"]}
    assert run_dates(store, conf) == [D] and not report["ok"]
    assert (st["acquire"]["status"], st["clean"]["status"], st["integrate"]["status"]) == ("ok", "ok", "not run")
    assert (st["clean"]["records_in"], st["clean"]["records_out"], st["clean"]["quarantined"]) == (4, 3, {"EMPTY_FILE": 1})
    _publish(conf, "acquire", "bronze/x", 6)  # a standalone acquire: clean's input changed
    st = {s["stage"]: s for s in run_date_status(store, conf, D)["stages"]}
    assert st["acquire"]["status"] == "ok" and st["clean"]["status"] == "outdated"
    assert "acquire published again" in st["clean"]["problems"][0]
    (tmp_path / "_commits").mkdir(exist_ok=True)
    (tmp_path / "_commits" / f"clean-{D}-0000abcd.json").write_text(json.dumps({"moves": []}))
    st = {s["stage"]: s for s in run_date_status(store, conf, D)["stages"]}
    assert st["clean"]["status"] == "interrupted" and "deepbatch recover" in st["clean"]["problems"][-1]
    text = render(run_date_status(store, conf, D))
    assert text.startswith(f"run date {D} ({tmp_path}): NOT OK") and "clean        interrupted" in text


def test_status_lists_each_inference_target_with_its_records_errors_and_test_accuracy(tmp_path) -> None:
    from deepbatch.manifests import TableCounts

    conf, store = make_conf(tmp_path), LocalStore()
    c = Commit(None, conf.data_root, "infer", D, conf.hash(), locking=LockSettings(enabled=False))
    for table, extra in (("predictions/pets", {"errors_by_reason": {"UNDECODABLE_IMAGE": 2}, "accuracy_by_split": {"test": {"n": 40, "accuracy": 0.875}}}),
                         ("predictions/photos", {"errors_by_reason": {}, "accuracy_by_split": {}}),
                         ("predictions/pets_frames", {})):
        c.stage_files(table, conf.path(table, f"run_date={D}"), {"part-0.parquet": b"x"})
        c.add_manifest(TableCounts(table, 100, 100, extra=extra))
    mark_done(store, conf, D, "infer", None, "hash", c.publish(), {}, 2.0)
    infer = next(s for s in run_date_status(store, conf, D)["stages"] if s["stage"] == "infer")
    assert infer["predictions"] == {"pets": {"records": 100, "errors": 2, "test": {"n": 40, "accuracy": 0.875}},
                                    "photos": {"records": 100, "errors": 0, "test": None}}
    text = render(run_date_status(store, conf, D))
    assert "predictions pets: 100 records, 2 record errors, test accuracy 0.8750 on 40 rows" in text
    assert "predictions photos: 100 records, 0 record errors, no labelled test rows" in text


def test_a_republished_earlier_day_in_the_training_window_reruns_materialize(tmp_path) -> None:
    from deepbatch.pipeline import why_run

    conf, store = make_conf(tmp_path, "datasets.window=all"), LocalStore()
    day1, day2 = "2026-11-25", D
    for day, commit in ((day1, "integrate-a"), (day2, "integrate-b")):
        (tmp_path / "gold" / "image_cls" / f"run_date={day}").mkdir(parents=True)
        (tmp_path / "gold" / "image_cls" / f"run_date={day}" / "_commit.json").write_text(json.dumps({"commit_id": commit}))
    inputs = upstream_commits(store, conf, day2, "materialize")
    assert inputs["gold/image_cls@2026-11-25"] == "integrate-a" and "gold/image_cls@2026-11-27" not in inputs  # same day: integrate's record
    mark_done(store, conf, day2, "materialize", None, "h", {"commit_id": "materialize-x", "outputs": []}, inputs, 1.0)
    reason, record = why_run(store, conf, day2, "materialize", "h")
    assert reason is None and record is not None and record["commit_id"] == "materialize-x"  # nothing changed: it may skip
    (tmp_path / "gold" / "image_cls" / f"run_date={day1}" / "_commit.json").write_text(json.dumps({"commit_id": "integrate-a2"}))
    reason, record = why_run(store, conf, day2, "materialize", "h")
    assert record is None and reason == "its inputs were republished (gold/image_cls@2026-11-25 integrate-a -> integrate-a2)"
    assert "gold/image_cls@2026-11-25" not in upstream_commits(store, make_conf(tmp_path), day2, "materialize")  # window: this


def test_status_verify_finds_flipped_bytes_that_keep_the_size_and_names_the_file(tmp_path, capsys) -> None:
    from deepbatch.cli import main

    conf, store = make_conf(tmp_path), LocalStore()
    _publish(conf, "acquire", "bronze/x", 64)
    part = tmp_path / "bronze" / "x" / f"run_date={D}" / "part-0.parquet"
    recorded = json.loads((part.parent / "_checksums.json").read_text())
    assert set(recorded) == {"part-0.parquet", "_manifest.json"} and recorded["part-0.parquet"].startswith("blake2b:")
    assert run_date_status(store, conf, D, content=True)["stages"][0]["status"] == "ok"
    data = bytearray(part.read_bytes())
    data[10:20] = b"y" * 10  # same size: the file count and bytes still match
    part.write_bytes(bytes(data))
    assert run_date_status(store, conf, D)["stages"][0]["status"] == "ok"  # without --verify only sizes are compared
    deep = run_date_status(store, conf, D, content=True)["stages"][0]
    assert deep["status"] == "inconsistent" and deep["problems"] == [
        f"{part} does not match its checksum (recorded {recorded['part-0.parquet']}, now "
        f"{deep['problems'][0].rsplit('now ', 1)[1]}"]
    overrides = [f"data_root={tmp_path}"]
    assert main(["status", "--conf", "conf/local.yaml", "--run-date", D, "--verify", *overrides]) == 1
    assert "part-0.parquet does not match its checksum" in capsys.readouterr().out
    sums = part.parent / "_checksums.json"
    text = sums.read_text()
    at = text.index("blake2b:") + len("blake2b:")
    sums.write_text(text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1 :])  # one digit changed, same size
    assert "does not match the digest its commit recorded" in run_date_status(store, conf, D, content=True)["stages"][0]["problems"][0]


def test_a_corrupt_model_folder_is_refused_before_it_scores_and_an_intact_one_loads(tmp_path) -> None:
    from deepbatch.cores.common import ModelFolder
    from deepbatch.errors import CorruptModelError
    from deepbatch.train.scaffold import write_untrained_model

    conf = make_conf(tmp_path)
    c = Commit(None, conf.data_root, "train", D, conf.hash(), locking=LockSettings(enabled=False))
    staging = tmp_path / "_staging_model"
    write_untrained_model(conf, "image_cls", staging)
    target = conf.path("models", "image_cls", D)
    c.register_folder("models/image_cls", str(staging), target, 1)
    c.publish()
    assert ModelFolder.open(target).classes
    weights = tmp_path / "models" / "image_cls" / D / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-300:-44] = bytes(b ^ 0xFF for b in data[-300:-44])  # 256 bytes flipped, size kept
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match=r"model\.safetensors does not match its checksum"):
        ModelFolder.open(target)
