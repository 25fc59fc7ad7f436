from __future__ import annotations

import json

import pytest
from pyspark.sql.types import LongType, StructField, StructType

from deepbatch.errors import ReconciliationError, SchemaMismatchError
from deepbatch.io import Publisher, TableCounts, read_partition

pytestmark = pytest.mark.unit
SCHEMA = StructType([StructField("id", LongType(), True)])


def test_reconcile_accepts_balanced_counts_and_rejects_others() -> None:
    TableCounts("t", 10, 7, {"EMPTY_TEXT": 2}, {"DUPLICATE_ID": 1}).reconcile()
    with pytest.raises(ReconciliationError, match="records_in=10 but records_out=7"):
        TableCounts("t", 10, 7, {"EMPTY_TEXT": 2}).reconcile()


def test_publish_replaces_a_partition_exactly_and_writes_manifests(spark, tmp_path) -> None:
    root = str(tmp_path)
    for n in (5, 3):  # a rerun with fewer rows must not leave old rows behind
        pub = Publisher(spark, root, "demo", "2026-11-27", "abc")
        rows = pub.stage_table("silver/x", spark.range(n), SCHEMA)
        pub.add_manifest(TableCounts("silver/x", n, rows))
        pub.publish()
    df = read_partition(spark, f"{root}/silver/x", "2026-11-27", SCHEMA)
    assert sorted(r.id for r in df.collect()) == [0, 1, 2]
    manifest = json.loads((tmp_path / "silver/x/run_date=2026-11-27/_manifest.json").read_text())
    assert (manifest["records_in"], manifest["records_out"], manifest["conf_hash"]) == (3, 3, "abc")
    stage = json.loads((tmp_path / "manifests/run_date=2026-11-27/demo.json").read_text())
    assert [t["table"] for t in stage["tables"]] == ["silver/x"]
    assert not (tmp_path / "_staging").exists() or not any((tmp_path / "_staging").iterdir())


def test_failed_reconciliation_publishes_nothing(spark, tmp_path) -> None:
    pub = Publisher(spark, str(tmp_path), "demo", "2026-11-27", "abc")
    rows = pub.stage_table("silver/y", spark.range(4), SCHEMA)
    with pytest.raises(ReconciliationError):
        pub.add_manifest(TableCounts("silver/y", rows + 1, rows))
    pub.abort()
    assert not (tmp_path / "silver/y").exists()


def test_schema_mismatch_names_the_columns(spark, tmp_path) -> None:
    spark.range(2).withColumnRenamed("id", "other").write.parquet(str(tmp_path / "t/run_date=2026-11-27"))
    with pytest.raises(SchemaMismatchError, match="missing"):
        pub = Publisher(spark, str(tmp_path), "demo", "2026-11-27", "abc")
        pub.stage_table("silver/z", spark.range(2).withColumnRenamed("id", "other"), SCHEMA)


def test_zero_length_listing_matches_hadoop_globs(tmp_path) -> None:
    from deepbatch.io import expand_braces, list_zero_length_files

    assert expand_braces("*.{png,jpg}") == ["*.png", "*.jpg"]
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    (tmp_path / "a" / "b" / "empty.jpg").write_bytes(b"")
    (tmp_path / "a" / "empty.txt").write_bytes(b"")
    (tmp_path / "a" / "full.png").write_bytes(b"x")
    for root in (str(tmp_path), f"file://{tmp_path}"):
        got = [p for p, _ in list_zero_length_files(root, "*.{png,jpg}")]
        assert got == [f"file:{tmp_path}/a/b/empty.jpg", f"file:{tmp_path}/a/empty.png"]
    assert list_zero_length_files(str(tmp_path / "missing"), "*") == []
