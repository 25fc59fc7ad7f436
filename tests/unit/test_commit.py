"""The commit protocol, locks, recovery and schema checks (deepbatch.commit, deepbatch.tables)."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from pyspark.sql.types import LongType, StringType, StructField, StructType

from deepbatch.commit import Commit, LockSettings, acquire_lock, recover, verify_outputs
from deepbatch.commit.lock import lock_path
from deepbatch.errors import LockHeldError, ReconciliationError, SchemaMismatchError
from deepbatch.manifests import TableCounts
from deepbatch.storage import LocalStore
from deepbatch.tables import read_partition
from tests.conftest import make_conf

pytestmark = pytest.mark.unit
SCHEMA = StructType([StructField("id", LongType(), True)])
D = "2026-11-27"


def test_reconcile_accepts_balanced_counts_and_rejects_others() -> None:
    TableCounts("t", 10, 7, {"EMPTY_TEXT": 2}, {"DUPLICATE_ID": 1}).reconcile()
    with pytest.raises(ReconciliationError, match="records_in=10 but records_out=7"):
        TableCounts("t", 10, 7, {"EMPTY_TEXT": 2}).reconcile()


def test_commit_replaces_a_partition_exactly_and_writes_manifests(spark, tmp_path) -> None:
    root = str(tmp_path)
    for n in (5, 3):  # a rerun with fewer rows must not leave old rows behind
        with Commit(spark, root, "demo", D, "abc") as c:
            rows = c.stage_table("silver/x", spark.range(n), SCHEMA)
            c.add_manifest(TableCounts("silver/x", n, rows))
    df = read_partition(spark, f"{root}/silver/x", D, SCHEMA)
    assert sorted(r.id for r in df.collect()) == [0, 1, 2]
    manifest = json.loads((tmp_path / f"silver/x/run_date={D}/_manifest.json").read_text())
    assert (manifest["records_in"], manifest["records_out"], manifest["conf_hash"]) == (3, 3, "abc")
    stage = json.loads((tmp_path / f"manifests/run_date={D}/demo.json").read_text())
    assert [t["table"] for t in stage["tables"]] == ["silver/x"]
    assert stage["commit_id"] == c.commit_id and stage["outputs"][0]["path"] == f"silver/x/run_date={D}"
    assert verify_outputs(LocalStore(), root, c.commit_id, stage["outputs"]) == []
    for leftover in ("_staging", "_trash", "_commits"):
        assert not (tmp_path / leftover).exists() or not any((tmp_path / leftover).iterdir()), leftover
    assert not (tmp_path / "_locks/demo" / f"run_date={D}.lock").exists()


def test_an_exception_inside_the_commit_publishes_nothing(spark, tmp_path) -> None:
    with pytest.raises(ReconciliationError), Commit(spark, str(tmp_path), "demo", D, "abc") as c:
        rows = c.stage_table("silver/y", spark.range(4), SCHEMA)
        c.add_manifest(TableCounts("silver/y", rows + 1, rows))
    assert not (tmp_path / "silver/y").exists()
    assert not any((tmp_path / "_staging").iterdir())
    assert not (tmp_path / "manifests").exists()


def test_read_partition_compares_the_files_on_disk_with_the_declared_schema(spark, tmp_path) -> None:
    spark.range(2).selectExpr("cast(id as string) as id").write.parquet(str(tmp_path / f"t/run_date={D}"))
    with pytest.raises(SchemaMismatchError, match=r"id \(string on disk, bigint declared\)"):
        read_partition(spark, str(tmp_path / "t"), D, SCHEMA)
    spark.range(2).withColumnRenamed("id", "other").write.parquet(str(tmp_path / f"u/run_date={D}"))
    with pytest.raises(SchemaMismatchError, match=r"missing columns \['id'\], unexpected columns \['other'\]"):
        read_partition(spark, str(tmp_path / "u"), D, SCHEMA)
    two = StructType([*SCHEMA.fields, StructField("name", StringType(), True)])
    with pytest.raises(SchemaMismatchError, match=r"missing columns \['name'\]"):
        read_partition(spark, str(tmp_path / "v").replace("v", "t"), D, StructType([StructField("id", StringType()), two.fields[1]]))


def test_staging_a_frame_without_a_declared_column_names_it(spark, tmp_path) -> None:
    with pytest.raises(SchemaMismatchError, match="missing"), Commit(spark, str(tmp_path), "demo", D, "abc") as c:
        c.stage_table("silver/z", spark.range(2).withColumnRenamed("id", "other"), SCHEMA)


def test_a_second_writer_fails_fast_naming_the_holder(tmp_path) -> None:
    store = LocalStore()
    with acquire_lock(store, str(tmp_path), "clean", D, "deepbatch clean"):
        with pytest.raises(LockHeldError, match=rf"pid {os.getpid()} on {socket.gethostname()}.*delete that file") as e:
            acquire_lock(store, str(tmp_path), "clean", D)
        assert e.value.exit_code == 6
        acquire_lock(store, str(tmp_path), "clean", "2026-11-28").release()  # another run date is free
    acquire_lock(store, str(tmp_path), "clean", D).release()  # released on exit


def test_a_lock_of_a_dead_process_a_reused_pid_or_an_old_heartbeat_is_taken_over(tmp_path) -> None:
    store, path = LocalStore(), lock_path(str(tmp_path), "clean", D)
    dead = {"token": "x", "host": socket.gethostname(), "pid": 2**22 + 7, "heartbeat": time.time(), "started_at": "t"}
    store.create_exclusive(path, json.dumps(dead))
    acquire_lock(store, str(tmp_path), "clean", D).release()
    silent = {**dead, "host": "elsewhere", "heartbeat": time.time() - 500}
    store.create_exclusive(path, json.dumps(silent))
    acquire_lock(store, str(tmp_path), "clean", D, stale_after_s=120).release()
    reused = {**dead, "pid": os.getpid(), "process_start": "1"}  # an earlier process that had our pid
    store.create_exclusive(path, json.dumps(reused))
    acquire_lock(store, str(tmp_path), "clean", D).release()
    live = {**silent, "heartbeat": time.time()}
    store.create_exclusive(path, json.dumps(live))
    with pytest.raises(LockHeldError, match="elsewhere"):
        acquire_lock(store, str(tmp_path), "clean", D, stale_after_s=120)


@pytest.mark.parametrize("left", ["", "   ", "{not json", "[]", "null"])
def test_a_lock_file_left_empty_or_unreadable_is_taken_over_after_a_grace_and_a_live_one_is_not(tmp_path, caplog, left) -> None:
    """A writer that dies between creating its lock file and writing it (or a full disk) leaves it empty: later runs wait
    out the grace, take it over and say so, instead of refusing forever."""
    import threading

    from deepbatch.commit.lock import UNREADABLE_GRACE_S

    store, path = LocalStore(), lock_path(str(tmp_path), "clean", D)
    store.create_exclusive(path, left)
    t0 = time.monotonic()
    with acquire_lock(store, str(tmp_path), "clean", D) as lock:
        assert json.loads(store.read_text(path))["token"] == lock.token
    assert time.monotonic() - t0 >= UNREADABLE_GRACE_S and "stayed empty or unreadable" in caplog.text
    assert not [p for p in os.listdir(os.path.dirname(path)) if ".stale-" in p]  # the old file is gone, not left aside
    store.create_exclusive(path, "")  # a writer that is still writing: its content lands within the grace
    live = {"token": "w", "host": "elsewhere", "pid": 1, "heartbeat": time.time(), "started_at": "t"}
    threading.Timer(0.3, lambda: store.write_text(path, json.dumps(live))).start()
    with pytest.raises(LockHeldError, match="elsewhere"):
        acquire_lock(store, str(tmp_path), "clean", D, stale_after_s=120)


def test_the_heartbeat_keeps_a_long_run_fresh(tmp_path) -> None:
    store = LocalStore()
    with acquire_lock(store, str(tmp_path), "train", D, heartbeat_s=0.05) as lock:
        first = json.loads(store.read_text(lock.path))["heartbeat"]
        time.sleep(0.3)
        assert json.loads(store.read_text(lock.path))["heartbeat"] > first


def _two_table_commit(root: str, version: str, commit_id: str = "") -> Commit:
    c = Commit(None, root, "demo", D, "abc", locking=LockSettings(enabled=False), commit_id=commit_id)
    for table in ("silver/a", "silver/b"):
        c.stage_files(table, f"{root}/{table}/run_date={D}", {"data.txt": version.encode()})
    return c


def test_recovery_rolls_a_journaled_commit_forward_and_an_unjournaled_one_back(tmp_path) -> None:
    root, store = str(tmp_path), LocalStore()
    _two_table_commit(root, "v1").publish()
    forward = _two_table_commit(root, "v2", "demo-2026-11-27-0000000f")
    journal = forward._journal()
    store.write_text(f"{root}/_commits/{forward.commit_id}.json", json.dumps(journal))
    back = _two_table_commit(root, "v3", "demo-2026-11-27-000000ba")
    report = recover(store, root)
    assert report.rolled_forward == [forward.commit_id] and report.rolled_back == [back.commit_id]
    for table in ("a", "b"):
        assert (tmp_path / f"silver/{table}/run_date={D}/data.txt").read_text() == "v2"
    assert verify_outputs(store, root, forward.commit_id, journal["outputs"]) == []
    assert sorted(os.listdir(tmp_path)) == ["_commits", "_locks", "_staging", "_trash", "manifests", "silver"]
    assert not any(any((tmp_path / d).iterdir()) for d in ("_commits", "_staging", "_trash"))


def test_recovery_restores_a_partition_the_older_rename_protocol_left_in_the_trash(tmp_path) -> None:
    lost = tmp_path / f"silver/images/run_date={D}"
    trashed = tmp_path / "_trash/clean-2026-11-27-1234abcd/0"
    trashed.mkdir(parents=True)
    (trashed / "part-0.parquet").write_bytes(b"old")
    (trashed / "_manifest.json").write_text(json.dumps({"output": str(lost)}))
    report = recover(LocalStore(), str(tmp_path))
    assert report.restored == [str(lost)] and (lost / "part-0.parquet").read_bytes() == b"old"


def test_recovery_leaves_the_commit_of_a_live_writer_alone(tmp_path) -> None:
    root, store = str(tmp_path), LocalStore()
    live = _two_table_commit(root, "v1", "demo-2026-11-27-0000beef")
    with acquire_lock(store, root, "demo", D):
        report = recover(store, root)
    assert report.in_progress == [live.commit_id] and (tmp_path / "_staging" / live.commit_id).is_dir()


def test_verify_outputs_names_missing_replaced_and_changed_outputs(tmp_path) -> None:
    root, store = str(tmp_path), LocalStore()
    c = _two_table_commit(root, "v1")
    summary = c.publish()
    outputs = summary["outputs"]
    (tmp_path / f"silver/a/run_date={D}/data.txt").write_text("tampered, longer")
    import shutil

    shutil.rmtree(tmp_path / f"silver/b/run_date={D}")
    problems = verify_outputs(store, root, c.commit_id, outputs)
    assert len(problems) == 2 and "changed since commit" in problems[0] and "is missing" in problems[1]
    assert verify_outputs(store, root, "other", outputs[:1])[0].endswith(f"holds commit {c.commit_id}, not other")


def test_source_files_claim_every_file_matching_globs_ignoring_case(tmp_path) -> None:
    from deepbatch.catalog import sources
    from deepbatch.sources.files import source_files
    from deepbatch.storage import expand_braces, matches

    assert expand_braces("*.{png,jpg}") == ["*.png", "*.jpg"]
    assert matches("file:/x/A.JPG", "*.{png,jpg}") and not matches("file:/x/a.txt", "*.{png,jpg}")
    labels = tmp_path / "labels"
    labels.mkdir()
    for name in ("image_labels.csv", "IMAGE_LABELS_2.CSV", "video_labels.csv", "notes.md", ".hidden"):
        (labels / name).write_text("x")
    sharing = tuple(s for s in sources(make_conf(tmp_path)) if s.landing == "labels")
    claimed = {s.name: [f.path.rsplit("/", 1)[-1] for f in source_files(s, str(labels), sharing)] for s in sharing}
    assert claimed == {"image_labels": [".hidden", "IMAGE_LABELS_2.CSV", "image_labels.csv", "notes.md"], "video_labels": ["video_labels.csv"]}


def test_exclusive_creation_has_one_winner_whose_file_is_whole_from_its_first_instant(tmp_path) -> None:
    """Lock files are written under a temporary name and linked into place: racing writers get one winner, a reader
    polling the name never sees it empty or partial, and no temporary file is left."""
    import threading

    store, path = LocalStore(), str(tmp_path / "locks" / "x.lock")
    texts = [json.dumps({"token": f"w{i}", "pad": "x" * 20000}) for i in range(8)]
    seen: list[str] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            if os.path.exists(path):
                seen.append(open(path, encoding="utf-8").read())

    reader = threading.Thread(target=poll)
    reader.start()
    results: list[bool] = []
    writers = [threading.Thread(target=lambda t=t: results.append(store.create_exclusive(path, t))) for t in texts]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    assert sorted(results) == [False] * 7 + [True]
    final = open(path, encoding="utf-8").read()
    assert final in texts and seen and all(s == final for s in seen)
    assert os.listdir(tmp_path / "locks") == ["x.lock"]
