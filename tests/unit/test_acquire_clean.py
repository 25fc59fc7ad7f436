from __future__ import annotations

import cv2
import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from deepbatch.modality.image import check_images
from deepbatch.modality.text import check_text
from deepbatch.quality import valid_rows
from deepbatch.schemas.tables import BINARY_FILE, bronze_records
from deepbatch.sources.files import file_stem, with_file_lineage
from deepbatch.sources.records import with_record_lineage
from deepbatch.stages.clean import check_labels

pytestmark = pytest.mark.unit


def _png() -> bytes:
    return cv2.imencode(".png", np.full((3, 4), 200, np.uint8))[1].tobytes()


def test_file_stem_is_the_record_id(spark) -> None:
    df = spark.createDataFrame([("file:/a/b/fmnist-00001.png",), ("/x/clip.v2.mp4",), ("/x/noext",)], "path string")
    assert [r.id for r in df.select(file_stem("path").alias("id")).collect()] == ["fmnist-00001", "clip.v2", "noext"]


def test_file_lineage_columns(spark) -> None:
    from datetime import datetime

    raw = spark.createDataFrame([("file:/l/images/fm/x-1.png", datetime(2026, 1, 1), 3, b"abc")], BINARY_FILE)
    row = raw.transform(with_file_lineage("2026-11-27")).first()
    assert (row.record_id, row.collection, row.file_size, row.ingest_run_date) == ("x-1", "fm", 3, "2026-11-27")
    assert row.content_hash == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")


def test_every_jsonl_line_lands_numbered_with_its_raw_bytes_and_a_coded_error(spark, tmp_path) -> None:
    from deepbatch.sources.records import json_records, numbered_lines

    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"review_id": "r1", "text": "ok", "label": "fresh"}\n{"review_id": "r2", "text": oops\n'
                     b'{"review_id": "r3", "text": ["a", "list"]}\n{"review_id": "r4", "text": "caf\xe9"}\n\n')
    bronze = numbered_lines(spark, [str(path)]).transform(json_records("2026-11-27", "review_id", ["text", "label", "movie"]))
    assert [f.name for f in bronze.schema] == [f.name for f in bronze_records(True, ("movie",), raw_bytes=True)]
    rows = {r.source_line: r for r in bronze.collect()}
    assert sorted(rows) == [1, 2, 3, 4, 5]
    assert rows[1].parse_error is None and rows[1].record_id == "r1" and rows[1].text == "ok"
    assert rows[2].parse_error.startswith("MALFORMED_RECORD: ") and "oops" in rows[2].raw_record and rows[2].record_id == "r2"
    assert rows[3].parse_error.startswith("SCHEMA_MISMATCH: ") and "text" in rows[3].parse_error and rows[3].text is None
    assert rows[4].parse_error.startswith("INVALID_UTF8: ") and bytes(rows[4].raw_bytes).endswith(b'caf\xe9"}')
    assert rows[4].raw_record.encode("utf-8").endswith('caf\ufffd"}'.encode()) and rows[4].text is None
    assert rows[5].parse_error == "MALFORMED_RECORD: blank line"
    assert all(r.source_path.endswith("t.jsonl") for r in rows.values())


def test_csv_label_rows_keep_their_line_order(spark, tmp_path) -> None:
    from deepbatch.schemas.tables import BRONZE_LABELS, LANDING_LABELS

    path = tmp_path / "l.csv"
    path.write_text("id,label\ni1,Coat\ni2,Bag\n")
    parsed = spark.read.schema(LANDING_LABELS).option("header", "true").csv(str(path))
    bronze = parsed.transform(with_record_lineage("2026-11-27", "id", ["label"]))
    assert [f.name for f in bronze.schema] == [f.name for f in BRONZE_LABELS]
    assert [(r.record_id, r.source_line) for r in bronze.orderBy("source_line").collect()] == [("i1", 1), ("i2", 2)]


def _bronze_text(spark, rows):
    from datetime import datetime

    data = [(rid, text, label, None, "{}", b"{}", err, "/l/t.jsonl", 1, datetime(2026, 1, 1), "2026-11-27", "h", i + 1)
            for i, (rid, text, label, err) in enumerate(rows)]
    return spark.createDataFrame(data, bronze_records(True, ("movie",), raw_bytes=True))


def test_check_text_normalises_and_rejects(spark) -> None:
    bronze = _bronze_text(
        spark,
        [
            ("r1", "  Gre\u0301at\n film ", "FRESH", None),
            ("r2", " \t ", "fresh", None),
            ("r3", None, None, "record does not parse"),
            ("r6", None, None, "SCHEMA_MISMATCH: an array where a string belongs"),
            ("r4", "Gre\u0301at film", "rotten", None),  # same text after normalisation as r1
            ("r5", "Dull.", "meh", None),
        ],
    )
    checked = check_text(bronze, ["fresh", "rotten"], min_chars=1, metadata=("movie",))
    got = checked.select("record_id", "text", "label", "_reason")
    expected = spark.createDataFrame(
        [
            ("r1", "Gr\u00e9at film", "fresh", None),
            ("r2", "", "fresh", "EMPTY_TEXT"),
            ("r3", None, None, "MALFORMED_RECORD"),
            ("r6", None, None, "SCHEMA_MISMATCH"),
            ("r4", "Gr\u00e9at film", "rotten", "DUPLICATE_CONTENT"),
            ("r5", "Dull.", "meh", "UNKNOWN_LABEL"),
        ],
        "record_id string, text string, label string, _reason string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_check_labels_canonicalises_class_names(spark) -> None:
    from datetime import datetime

    from deepbatch.schemas.tables import BRONZE_LABELS

    rows = [(" i1 ", "t-shirt/TOP", "{}", None, "/l/l.csv", 1, datetime(2026, 1, 1), "d", "h1", 1),
            ("i2", "Unicorn", "{}", None, "/l/l.csv", 1, datetime(2026, 1, 1), "d", "h2", 2)]
    checked = check_labels(spark.createDataFrame(rows, BRONZE_LABELS), ["T-shirt/top", "Trouser"])
    assert [(r.record_id, r.label) for r in checked.transform(valid_rows()).collect()] == [("i1", "T-shirt/top")]


def test_check_images_decodes_in_the_udf(spark) -> None:
    from datetime import datetime

    from deepbatch.schemas.tables import BRONZE_FILES

    good = _png()
    rows = [
        ("ok", "c", good, None, "/l/ok.png", len(good), datetime(2026, 1, 1), "d", "h1"),
        ("cut", "c", good[:30], None, "/l/cut.png", 30, datetime(2026, 1, 1), "d", "h2"),
        ("empty", "c", b"", None, "/l/empty.png", 0, datetime(2026, 1, 1), "d", "h3"),
    ]
    checked = check_images(spark.createDataFrame(rows, BRONZE_FILES))
    got = {r.record_id: (r._reason, r.width, r.height, r.channels) for r in checked.collect()}
    assert got == {"ok": (None, 4, 3, 1), "cut": ("UNDECODABLE_IMAGE", None, None, None), "empty": ("EMPTY_FILE", None, None, None)}
    assert checked.filter(F.col("_reason").isNull()).count() == 1


def test_the_first_line_of_a_file_wins_a_content_tie_whatever_the_arrival_order(spark) -> None:
    from datetime import datetime

    lines = [(f"r{n}", "Same words.", "fresh", None, "{}", b"{}", None, "/l/t.jsonl", 1, datetime(2026, 1, 1), "d", "h", n)
             for n in (1, 2, 3)]
    for order in (lines, lines[::-1]):
        bronze = spark.createDataFrame(order, bronze_records(True, ("movie",), raw_bytes=True)).repartition(3)
        kept = check_text(bronze, ["fresh", "rotten"], min_chars=1, metadata=("movie",)).transform(valid_rows())
        assert [r.record_id for r in kept.collect()] == ["r1"]
