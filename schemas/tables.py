"""Spark schemas for every table deepbatch reads or writes.

Installed as ``deepbatch.schemas.tables``. No reader ever infers a schema: a
landing file that does not fit these is kept as a corrupt record and
quarantined by the clean stage.
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

CORRUPT = "_corrupt_record"

# Spark's binaryFile source has this fixed schema.
BINARY_FILE = StructType(
    [
        StructField("path", StringType(), False),
        StructField("modificationTime", TimestampType(), False),
        StructField("length", LongType(), False),
        StructField("content", BinaryType(), True),
    ]
)

# --- landing zone (raw) --------------------------------------------------------------

def landing_records(fields: list[str]) -> StructType:
    """A record source's fields as read from its files: every mapped field as a string, plus the corrupt-record column."""
    return StructType([*[StructField(f, StringType(), True) for f in dict.fromkeys(fields)], StructField(CORRUPT, StringType(), True)])


LANDING_LABELS = landing_records(["id", "label"])  # the demo's label tables

# --- lineage columns, appended by acquire to every bronze table -----------------------

LINEAGE_FIELDS = [
    StructField("source_path", StringType(), False),
    StructField("file_size", LongType(), True),
    StructField("modification_time", TimestampType(), True),
    StructField("ingest_run_date", StringType(), False),
    StructField("content_hash", StringType(), True),
]

# --- bronze ------------------------------------------------------------------------

BRONZE_FILES = StructType(
    [
        StructField("record_id", StringType(), True),
        StructField("collection", StringType(), True),
        StructField("content", BinaryType(), True),
        # "<REASON>: detail" when acquire could not or would not read the file (content null): a link out of the
        # landing zone, a file Spark's reader failed on
        StructField("parse_error", StringType(), True),
        *LINEAGE_FIELDS,
    ]
)

def _strings(names: tuple[str, ...]) -> list[StructField]:
    return [StructField(n, StringType(), True) for n in names]


def bronze_records(text: bool, metadata: tuple[str, ...] = (), raw_bytes: bool = False) -> StructType:
    """A record source's bronze table: the mapped fields (text sources: text, label, metadata; label tables: label),
    the raw record, acquire's parse error and the lineage; line-based kinds (jsonl) also keep the line's bytes."""
    return StructType(
        [
            StructField("record_id", StringType(), True),
            *_strings(("text",) if text else ()),
            StructField("label", StringType(), True),
            *_strings(metadata if text else ()),
            StructField("raw_record", StringType(), True),  # the record as valid UTF-8 (invalid bytes as U+FFFD)
            *([StructField("raw_bytes", BinaryType(), True)] if raw_bytes else []),  # the line's bytes exactly as they landed
            StructField("parse_error", StringType(), True),  # "<REASON>: detail" when the record is unusable
            *LINEAGE_FIELDS,
            StructField("source_line", LongType(), True),  # 1-based line (or row) in its file (0: a row for a whole file)
        ]
    )


BRONZE_LABELS = bronze_records(False)

# The file manifest kept with the bronze tables: every landing file each run date ingested.
# Incremental acquire skips a file whose (path, size, mtime) or (path, content hash) an
# earlier run date already ingested.
BRONZE_FILE_MANIFEST = StructType(
    [
        StructField("source", StringType(), False),
        StructField("path", StringType(), False),
        StructField("size", LongType(), False),
        StructField("mtime_ms", LongType(), False),
        StructField("content_hash", StringType(), False),
        StructField("ingest_run_date", StringType(), False),
    ]
)

# --- silver ------------------------------------------------------------------------

SILVER_IMAGES = StructType(
    [
        StructField("record_id", StringType(), False),
        StructField("collection", StringType(), True),
        StructField("content", BinaryType(), False),
        StructField("width", IntegerType(), False),
        StructField("height", IntegerType(), False),
        StructField("channels", IntegerType(), False),
        StructField("image_format", StringType(), True),
        StructField("orientation", IntegerType(), True),  # EXIF orientation applied on decode (1: as stored)
        StructField("content_hash", StringType(), False),
        StructField("source_path", StringType(), False),
        StructField("file_size", LongType(), True),
    ]
)

SILVER_VIDEOS = StructType(
    [
        StructField("record_id", StringType(), False),
        StructField("collection", StringType(), True),
        StructField("content", BinaryType(), False),
        StructField("width", IntegerType(), False),
        StructField("height", IntegerType(), False),
        StructField("channels", IntegerType(), False),
        StructField("fps", DoubleType(), False),
        StructField("frame_count", IntegerType(), False),
        # true: the probe stopped counting at clean.max_video_probe_frames, so frame_count is a lower bound
        StructField("frame_count_capped", BooleanType(), True),
        StructField("content_hash", StringType(), False),
        StructField("source_path", StringType(), False),
        StructField("file_size", LongType(), True),
    ]
)

def silver_text(metadata: tuple[str, ...] = ()) -> StructType:
    """A text source's silver table: normalised text, its label (null when the source maps none) and its metadata fields."""
    return StructType(
        [
            StructField("record_id", StringType(), False),
            StructField("text", StringType(), False),
            StructField("label", StringType(), True),
            *_strings(metadata),
            StructField("text_chars", IntegerType(), False),
            StructField("content_hash", StringType(), False),
            StructField("source_path", StringType(), False),
        ]
    )


SILVER_LABELS = StructType(
    [
        StructField("record_id", StringType(), False),
        StructField("label", StringType(), False),
        StructField("source_path", StringType(), False),
    ]
)

# --- quarantine: one schema for every rejected record of every stage ----------------

QUARANTINE = StructType(
    [
        StructField("stage", StringType(), False),
        StructField("source", StringType(), False),
        StructField("record_id", StringType(), True),
        StructField("source_path", StringType(), True),
        StructField("reason", StringType(), False),
        StructField("detail", StringType(), True),
        StructField("payload", StringType(), True),  # JSON of the record's non-binary fields
        StructField("content", BinaryType(), True),  # raw bytes of a rejected file, kept for replay
    ]
)

# --- gold: one table per task --------------------------------------------------------

_SPLIT_FIELDS = [
    StructField("label", StringType(), True),
    StructField("label_index", IntegerType(), True),
    StructField("split", StringType(), False),
]

GOLD_IMAGE_CLS = StructType(
    [
        StructField("record_id", StringType(), False),
        StructField("content", BinaryType(), False),
        StructField("width", IntegerType(), False),
        StructField("height", IntegerType(), False),
        StructField("channels", IntegerType(), False),
        StructField("content_hash", StringType(), False),
        StructField("source_path", StringType(), False),
        *_SPLIT_FIELDS,
    ]
)

def gold_text(metadata: tuple[str, ...] = ()) -> StructType:
    """A text task's gold table, with its source's metadata fields."""
    return StructType(
        [
            StructField("record_id", StringType(), False),
            StructField("text", StringType(), False),
            *_strings(metadata),
            StructField("text_chars", IntegerType(), False),
            StructField("content_hash", StringType(), False),
            StructField("source_path", StringType(), False),
            *_SPLIT_FIELDS,
        ]
    )


GOLD_VIDEO_CLS = StructType(
    [
        StructField("record_id", StringType(), False),
        StructField("collection", StringType(), True),
        StructField("content", BinaryType(), False),
        StructField("width", IntegerType(), False),
        StructField("height", IntegerType(), False),
        StructField("fps", DoubleType(), False),
        StructField("frame_count", IntegerType(), False),
        StructField("frame_count_capped", BooleanType(), True),
        StructField("content_hash", StringType(), False),
        StructField("source_path", StringType(), False),
        *_SPLIT_FIELDS,
    ]
)

# --- predictions: one table per inference target (deepbatch infer) -----------------------
# Every row carries the input's id, why it could not be scored (``error``, null when it
# was), the model version, when it was scored and its share of its batch's model time.
# ``split``/``label`` are passed through from gold where the input has them.

PREDICTION_META = [
    StructField("error", StringType(), True),
    StructField("model_version", StringType(), False),
    StructField("inferred_at", TimestampType(), False),
    StructField("infer_ms", DoubleType(), True),
]

_GOLD_PASSTHROUGH = [
    StructField("split", StringType(), True),
    StructField("label", StringType(), True),
]

# What the predictor cores return (the pandas UDFs' struct fields, before PREDICTION_META).
TOPK_FIELDS = [  # image_cls and imagenet: top-k labels and probabilities, best first
    StructField("top_labels", ArrayType(StringType()), True),
    StructField("top_probs", ArrayType(FloatType()), True),
]
CLASS_FIELDS = [  # text_cls and video_cls clips: every class's probability in the model's class order
    StructField("predicted", StringType(), True),
    StructField("predicted_prob", FloatType(), True),
    StructField("class_probs", ArrayType(FloatType()), True),
]
FRAME_FIELDS = [  # video_cls: one row per sampled frame
    StructField("frame_index", IntegerType(), False),
    StructField("timestamp_s", DoubleType(), True),
    StructField("features", ArrayType(FloatType()), False),
    StructField("imagenet_label", StringType(), True),
    StructField("imagenet_prob", FloatType(), True),
]


def nullable(fields: list[StructField]) -> list[StructField]:
    """The same fields, all nullable: what a pandas UDF or mapInPandas may return."""
    return [StructField(f.name, f.dataType, True) for f in fields]


_RECORD_ID = StructField("record_id", StringType(), False)

# image_cls and imagenet predictions.
PREDICTIONS_TOPK = StructType([_RECORD_ID, *_GOLD_PASSTHROUGH, *TOPK_FIELDS, *PREDICTION_META])

# text_cls predictions; the class order is recorded in the table's _classes.json.
PREDICTIONS_CLASS = StructType([_RECORD_ID, *_GOLD_PASSTHROUGH, *CLASS_FIELDS, *PREDICTION_META])

# video_cls: one row per clip, and one row per sampled frame of each clip that decoded.
_FRAMES_USED = StructField("frames_used", IntegerType(), True)
PREDICTIONS_VIDEO_CLIPS = StructType([_RECORD_ID, *_GOLD_PASSTHROUGH, *CLASS_FIELDS, _FRAMES_USED, *PREDICTION_META])
PREDICTIONS_VIDEO_FRAMES = StructType([_RECORD_ID, *FRAME_FIELDS, *PREDICTION_META[1:3]])

# The video mapInPandas output both video tables are cut from: frame rows carrying their clip's
# prediction (a clip that could not be used is one row with its error), plus gold split/label.
VIDEO_INFER_ROWS = StructType(nullable([_RECORD_ID, *FRAME_FIELDS, *CLASS_FIELDS, _FRAMES_USED, *PREDICTION_META, *_GOLD_PASSTHROUGH]))

# clean's probes of each image and clip (deepbatch.media), as pandas UDF results.
IMAGE_PROBE = StructType(
    [
        StructField("width", IntegerType()),
        StructField("height", IntegerType()),
        StructField("channels", IntegerType()),
        StructField("image_format", StringType()),
        StructField("reason", StringType()),
        StructField("detail", StringType()),
        StructField("orientation", IntegerType()),
        StructField("record_id", StringType()),  # the record's id in Unicode NFC
    ]
)

VIDEO_PROBE = StructType(
    [
        StructField("width", IntegerType()),
        StructField("height", IntegerType()),
        StructField("channels", IntegerType()),
        StructField("fps", DoubleType()),
        StructField("frame_count", IntegerType()),
        StructField("frame_count_capped", BooleanType()),
        StructField("reason", StringType()),
        StructField("detail", StringType()),
        StructField("record_id", StringType()),  # the record's id in Unicode NFC
    ]
)
