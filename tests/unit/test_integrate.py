from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from deepbatch.stages.integrate import assign_split, build_task_table, class_map, orphan_labels, with_label_index

pytestmark = pytest.mark.unit


def _ids(spark, n: int):
    return spark.range(n).select(F.format_string("id-%05d", "id").alias("record_id"), F.lit("x").alias("label"))


def test_split_depends_on_the_id_only(spark) -> None:
    base = {r.record_id: r.split for r in _ids(spark, 2000).coalesce(1).transform(assign_split(0.8, 0.1, 17)).collect()}
    for parts in (3, 11):
        again = {r.record_id: r.split for r in _ids(spark, 2000).repartition(parts).transform(assign_split(0.8, 0.1, 17)).collect()}
        assert again == base
    other_seed = {r.record_id: r.split for r in _ids(spark, 2000).transform(assign_split(0.8, 0.1, 18)).collect()}
    assert other_seed != base


def test_split_fractions_are_close_to_the_configured_ones(spark) -> None:
    counts = {r.split: r["count"] for r in _ids(spark, 20000).transform(assign_split(0.8, 0.1, 17)).groupBy("split").count().collect()}
    assert set(counts) == {"train", "val", "test"}
    assert counts["train"] / 20000 == pytest.approx(0.8, abs=0.015)
    assert counts["val"] / 20000 == pytest.approx(0.1, abs=0.01)


def test_label_index_follows_configured_class_order(spark) -> None:
    assert class_map(["b", "a"]) == {"b": 0, "a": 1}
    df = spark.createDataFrame([("1", "a"), ("2", "b"), ("3", None)], "record_id string, label string")
    got = df.transform(with_label_index(["b", "a"]))
    expected = spark.createDataFrame([("1", "a", 1), ("2", "b", 0), ("3", None, None)], "record_id string, label string, label_index int")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_unlabelled_content_is_kept_and_orphan_labels_are_quarantined(spark) -> None:
    content = spark.createDataFrame([("i1", b"x"), ("i2", b"y")], "record_id string, content binary")
    labels = spark.createDataFrame([("i1", "a", "/l.csv"), ("i9", "b", "/l.csv")], "record_id string, label string, source_path string")
    gold = build_task_table(content, labels, ["a", "b"], 0.8, 0.1, 17)
    rows = {r.record_id: (r.label, r.label_index, r.split) for r in gold.collect()}
    assert rows["i2"] == (None, None, "unlabelled")
    assert rows["i1"][:2] == ("a", 0) and rows["i1"][2] in ("train", "val", "test")
    orphans = orphan_labels(labels, content, "image_labels").collect()
    assert [(o.record_id, o.reason, o.stage) for o in orphans] == [("i9", "ORPHAN_LABEL", "integrate")]
