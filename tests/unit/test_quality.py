from __future__ import annotations

from datetime import datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from deepbatch.quality import (
    flag_duplicates,
    flag_missing_id,
    flag_unknown_label,
    quarantine_rows,
    reason_counts,
    start_checks,
    valid_rows,
)

pytestmark = pytest.mark.unit

SCHEMA = StructType(
    [
        StructField("record_id", StringType()),
        StructField("label", StringType()),
        StructField("source_path", StringType()),
        StructField("modification_time", TimestampType()),
        StructField("content_hash", StringType()),
    ]
)
T0, T1 = datetime(2026, 1, 1), datetime(2026, 1, 2)


def _rows(spark):
    return spark.createDataFrame(
        [
            ("a", "fresh", "/l/2.json", T0, "h1"),
            ("a", "rotten", "/l/1.json", T1, "h2"),  # later arrival with the same id
            ("b", " Rotten ", "/l/1.json", T1, "h1"),  # same content as the first row, arrived later
            ("c", "splat", "/l/1.json", T0, "h3"),
            (None, "fresh", "/l/1.json", T0, "h4"),
            ("  ", "fresh", "/l/1.json", T0, "h5"),
        ],
        SCHEMA,
    )


def _checked(spark):
    return (
        _rows(spark)
        .transform(start_checks())
        .transform(flag_missing_id())
        .transform(flag_unknown_label("label", ["fresh", "rotten"]))
        .transform(flag_duplicates("record_id", "DUPLICATE_ID"))
        .transform(flag_duplicates("content_hash", "DUPLICATE_CONTENT"))
    )


def test_each_rejected_row_gets_exactly_the_first_failing_reason(spark) -> None:
    got = _checked(spark).select("record_id", "content_hash", "_reason")
    expected = spark.createDataFrame(
        [
            ("a", "h1", None),
            ("a", "h2", "DUPLICATE_ID"),
            ("b", "h1", "DUPLICATE_CONTENT"),
            ("c", "h3", "UNKNOWN_LABEL"),
            (None, "h4", "MISSING_ID"),
            ("  ", "h5", "MISSING_ID"),
        ],
        "record_id string, content_hash string, _reason string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_earliest_arrival_survives_dedup_whatever_the_partitioning(spark) -> None:
    for n in (1, 3, 6):
        survivors = (
            _rows(spark).repartition(n)
            .transform(start_checks())
            .transform(flag_duplicates("record_id", "DUPLICATE_ID"))
            .transform(valid_rows())
            .filter(F.col("record_id") == "a")
            .collect()
        )
        assert [(r.label, r.source_path) for r in survivors] == [("fresh", "/l/2.json")]


def test_duplicate_detail_names_the_kept_record(spark) -> None:
    row = _checked(spark).filter(F.col("_reason") == "DUPLICATE_CONTENT").first()
    assert row._detail == "same content_hash as /l/2.json"


def test_reason_counts_and_quarantine_shape(spark) -> None:
    checked = _checked(spark)
    valid, quarantined, deduplicated = reason_counts(checked)
    assert valid == 1
    assert quarantined == {"MISSING_ID": 2, "UNKNOWN_LABEL": 1}
    assert deduplicated == {"DUPLICATE_ID": 1, "DUPLICATE_CONTENT": 1}
    q = checked.transform(quarantine_rows("clean", "text", binary_col=None))
    assert q.columns == ["stage", "source", "record_id", "source_path", "reason", "detail", "payload", "content"]
    unknown = q.filter(F.col("reason") == "UNKNOWN_LABEL").first()
    assert unknown.stage == "clean" and '"label":"splat"' in unknown.payload
    assert "not one of" in unknown.detail
