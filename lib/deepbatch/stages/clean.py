"""clean: validate, deduplicate and normalise bronze tables into silver.

Each ``check_*`` function returns the bronze rows with ``_reason``/``_detail``
set on every rejected row; :func:`deepbatch.stages.quality.valid_rows` and
:func:`quarantine_rows` split them. Decoding happens in pandas UDFs that call
the pure functions in :mod:`deepbatch.media`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

from deepbatch.media.image import DEFAULT_MAX_PIXELS, probe_image
from deepbatch.media.text import normalise_text
from deepbatch.media.video import probe_video
from deepbatch.stages.quality import (
    DETAIL,
    REASON,
    Transform,
    checked_labels,
    flag_duplicates,
    flag_missing_id,
    flag_when,
    start_checks,
)

IMAGE_PROBE = StructType(
    [
        StructField("width", IntegerType()),
        StructField("height", IntegerType()),
        StructField("channels", IntegerType()),
        StructField("image_format", StringType()),
        StructField("reason", StringType()),
        StructField("detail", StringType()),
    ]
)

VIDEO_PROBE = StructType(
    [
        StructField("width", IntegerType()),
        StructField("height", IntegerType()),
        StructField("channels", IntegerType()),
        StructField("fps", DoubleType()),
        StructField("frame_count", IntegerType()),
        StructField("reason", StringType()),
        StructField("detail", StringType()),
    ]
)


def probe_images_udf(max_pixels: int) -> object:
    @pandas_udf(IMAGE_PROBE)  # type: ignore[call-overload]
    def _probe(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from deepbatch.commit.failpoints import task_failpoint

        task_failpoint("clean.probe_images")
        for content in batches:
            yield pd.DataFrame([probe_image(b, max_pixels).__dict__ for b in content], columns=IMAGE_PROBE.names)

    return _probe


def probe_videos_udf(max_frames: int) -> object:
    @pandas_udf(VIDEO_PROBE)  # type: ignore[call-overload]
    def _probe(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for content in batches:
            yield pd.DataFrame([probe_video(b, max_frames).__dict__ for b in content], columns=VIDEO_PROBE.names)

    return _probe


@pandas_udf(StringType())  # type: ignore[call-overload]
def nfc_udf(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
    for texts in batches:
        yield texts.map(normalise_text, na_action="ignore")


@pandas_udf(StringType())  # type: ignore[call-overload]
def utf8_udf(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
    """Bytes as UTF-8 text (a byte-order mark dropped); None where they are not valid UTF-8."""

    def text(b: bytes | None) -> str | None:
        try:
            return None if b is None else bytes(b).decode("utf-8-sig")
        except UnicodeDecodeError:
            return None

    for contents in batches:
        yield contents.map(text)


def _apply_probe(probe_col: str) -> Transform:
    """Turn a probe struct's reason into the row's reason code (first failure wins)."""

    def _(df: DataFrame) -> DataFrame:
        p = F.col(probe_col)
        hit = F.col("_reason").isNull() & p["reason"].isNotNull()
        return df.withColumn("_detail", F.when(hit, p["detail"]).otherwise(F.col("_detail"))).withColumn(
            "_reason", F.when(hit, p["reason"]).otherwise(F.col("_reason"))
        )

    return _


def check_images(bronze: DataFrame, max_pixels: int = DEFAULT_MAX_PIXELS) -> DataFrame:
    """Decode-validate images (refusing more than max_pixels), record geometry, and deduplicate by id and by content."""
    probe = probe_images_udf(max_pixels)
    return (
        bronze.transform(start_checks())
        .withColumn("_probe", probe(F.col("content")))  # type: ignore[operator]
        .transform(flag_missing_id())
        .transform(_apply_probe("_probe"))
        .select("*", *[F.col("_probe")[c].alias(c) for c in ("width", "height", "channels", "image_format")])
        .drop("_probe")
        .transform(flag_duplicates("record_id", "DUPLICATE_ID"))
        .transform(flag_duplicates("content_hash", "DUPLICATE_CONTENT"))
    )


def check_videos(bronze: DataFrame, max_frames: int) -> DataFrame:
    """Open each clip, read its first frame, count frames, and deduplicate."""
    probe = probe_videos_udf(max_frames)
    return (
        bronze.transform(start_checks())
        .withColumn("_probe", probe(F.col("content")))  # type: ignore[operator]
        .transform(flag_missing_id())
        .transform(_apply_probe("_probe"))
        .select("*", *[F.col("_probe")[c].alias(c) for c in ("width", "height", "channels", "fps", "frame_count")])
        .drop("_probe")
        .transform(flag_when(F.col("frame_count") <= 0, "UNDECODABLE_VIDEO", "no decodable frames"))
        .transform(flag_duplicates("record_id", "DUPLICATE_ID"))
        .transform(flag_duplicates("content_hash", "DUPLICATE_CONTENT"))
    )


def normalise_whitespace(col: str) -> Transform:
    """NFC, collapse whitespace runs, trim (Spark side of media.text.normalise_text)."""

    def _(df: DataFrame) -> DataFrame:
        return df.withColumn(col, nfc_udf(F.col(col)))

    return _


def flag_parse_errors() -> Transform:
    """acquire's ``"<REASON>: detail"`` parse errors become that reason (MALFORMED_RECORD when uncoded)."""

    def _(df: DataFrame) -> DataFrame:
        err = F.col("parse_error")
        code = F.regexp_extract(err, r"^([A-Z][A-Z0-9_]+): ", 1)
        detail = F.when(code != "", F.regexp_replace(err, r"^[A-Z][A-Z0-9_]+: ", "")).otherwise(err)
        tagged = df.withColumn("_code", F.when(code != "", code).otherwise(F.lit("MALFORMED_RECORD")))
        hit = F.col(REASON).isNull() & err.isNotNull()
        return (tagged.withColumn(DETAIL, F.when(hit, detail).otherwise(F.col(DETAIL)))
                .withColumn(REASON, F.when(hit, F.col("_code")).otherwise(F.col(REASON))).drop("_code"))  # fmt: skip

    return _


RECORD_ORDER = ("modification_time", "source_path", "source_line")


def documents() -> Transform:
    """Bronze files of a text source (a document per file) in the shape of text records: the file's text (its bytes
    as UTF-8, else INVALID_UTF8), no label of its own (it comes from the folder or a label table), line 0."""

    def _(df: DataFrame) -> DataFrame:
        text = utf8_udf(F.col("content"))
        error = F.when(F.col("content").isNotNull() & text.isNull(), F.lit("INVALID_UTF8: the file is not valid UTF-8 text"))
        return df.select("*", text.alias("text"), F.lit(None).cast("string").alias("label"), F.col("content").alias("raw_bytes"),
                         text.alias("raw_record"), error.alias("parse_error"), F.lit(0).cast("long").alias("source_line"))  # fmt: skip

    return _


def check_text(bronze: DataFrame, classes: list[str] | None, min_chars: int, metadata: tuple[str, ...] = ("movie",),
               labelled: bool = True) -> DataFrame:  # fmt: skip
    """Parse errors, ids, empty text and unknown labels; normalise text and labels; dedup."""
    return (
        bronze.transform(start_checks())
        .transform(flag_parse_errors())
        .transform(flag_missing_id())
        .transform(normalise_whitespace("text"))
        .withColumn("text_chars", F.coalesce(F.length("text"), F.lit(0)).cast("int"))
        .transform(
            flag_when(F.col("text_chars") < min_chars, "EMPTY_TEXT", f"text is empty or shorter than {min_chars} chars after normalisation")
        )
        .transform(checked_labels("label", classes) if labelled else (lambda df: df))
        .transform(trimmed(metadata))
        # Duplicates are judged on the normalised text, so whitespace variants collapse.
        .withColumn("content_hash", F.sha2(F.coalesce(F.col("text"), F.lit("")), 256))
        .transform(flag_duplicates("record_id", "DUPLICATE_ID", RECORD_ORDER))
        .transform(flag_duplicates("content_hash", "DUPLICATE_CONTENT", RECORD_ORDER))
    )


def trimmed(columns: tuple[str, ...]) -> Transform:
    """Metadata fields, trimmed."""

    def _(df: DataFrame) -> DataFrame:
        return df.withColumns({c: F.trim(F.col(c)) for c in columns}) if columns else df

    return _


def check_labels(bronze: DataFrame, classes: list[str] | None) -> DataFrame:
    """Label table rows: parse errors, ids, unknown labels (canonicalised), one row per id."""
    return (
        bronze.transform(start_checks())
        .transform(flag_parse_errors())
        .withColumn("record_id", F.trim(F.col("record_id")))
        .transform(flag_missing_id())
        .transform(checked_labels("label", classes))
        .transform(flag_duplicates("record_id", "DUPLICATE_ID", RECORD_ORDER))
    )
