"""The media checks as pandas UDFs: clean probes images and clips, and decodes and normalises text, on the executors.

Each wraps a pure function of :mod:`deepbatch.media` (numpy and bytes in, plain values out); the modalities
(:mod:`deepbatch.modality`) chain them into their checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import StringType, StructField, StructType

from deepbatch.media.image import probe_image
from deepbatch.media.text import normalise_text
from deepbatch.media.video import probe_video
from deepbatch.quality import nfc_series
from deepbatch.schemas.tables import IMAGE_PROBE, VIDEO_PROBE


def probe_images_udf(max_pixels: int) -> Any:
    """Each image's header and decode probe: geometry and format, or why it is unusable; and its id in NFC (one UDF,
    so one Python worker per task: see :func:`deepbatch.quality.nfc_ids`). Columns: content, record_id."""

    @pandas_udf(IMAGE_PROBE)  # type: ignore[call-overload]
    def _probe(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        from deepbatch.commit.failpoints import task_failpoint

        task_failpoint("clean.probe_images")
        for content, ids in batches:
            out = pd.DataFrame([probe_image(b, max_pixels).__dict__ for b in content], columns=IMAGE_PROBE.names)
            out["record_id"] = nfc_series(ids).values
            yield out

    return _probe


def probe_videos_udf(max_frames: int) -> Any:
    """Each clip opened, its first frame read and its frames counted, or why it is unusable; and its id in NFC.
    Columns: content, record_id."""

    @pandas_udf(VIDEO_PROBE)  # type: ignore[call-overload]
    def _probe(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        for content, ids in batches:
            out = pd.DataFrame([probe_video(b, max_frames).__dict__ for b in content], columns=VIDEO_PROBE.names)
            out["record_id"] = nfc_series(ids).values
            yield out

    return _probe


# A StructType, not a DDL string: parsing one needs a SparkContext, which the Python workers that import this have not.
NORMALISED_TEXT = StructType([StructField("text", StringType()), StructField("record_id", StringType())])


@pandas_udf(NORMALISED_TEXT)  # type: ignore[call-overload]
def normalised_text_udf(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
    """Text normalised (NFC, whitespace collapsed, trimmed) and the record's id in NFC, in one UDF. Columns: text, record_id."""
    for texts, ids in batches:
        yield pd.DataFrame({"text": texts.map(normalise_text, na_action="ignore").values, "record_id": nfc_series(ids).values})


def _utf8(b: bytes | None) -> str | None:
    try:
        return None if b is None else bytes(b).decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


@pandas_udf(StringType())  # type: ignore[call-overload]
def utf8_udf(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
    """Bytes as UTF-8 text (a byte-order mark dropped); None where they are not valid UTF-8."""
    for contents in batches:
        yield contents.map(_utf8)
