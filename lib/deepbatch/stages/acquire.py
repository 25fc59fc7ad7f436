"""acquire: land raw files and records as bronze Parquet, nothing dropped.

Files (images, videos) come through Spark's ``binaryFile`` source; records
(JSONL text, CSV label tables) through the JSON/CSV readers with explicit
schemas in PERMISSIVE mode, so a malformed line becomes a bronze row with a
``parse_error`` for the clean stage to quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from deepbatch.schemas.tables import (
    BINARY_FILE,
    BRONZE_FILES,
    BRONZE_LABELS,
    BRONZE_TEXT,
    CORRUPT,
    LANDING_LABELS,
    LANDING_TEXT,
)
from deepbatch.stages.quality import Transform
from deepbatch.storage import Storage


@dataclass(frozen=True)
class Source:
    """One landing source and the bronze table it lands in."""

    name: str  # bronze table name, e.g. "images" -> bronze/images
    kind: str  # "files" | "jsonl" | "csv"
    landing: str  # path under <data_root>/landing
    glob: str  # file name pattern
    bronze_schema: StructType


SOURCES: tuple[Source, ...] = (
    Source("images", "files", "images", "*.{png,jpg,jpeg}", BRONZE_FILES),
    Source("image_labels", "csv", "labels", "image_labels*.csv", BRONZE_LABELS),
    Source("text", "jsonl", "text", "*.jsonl", BRONZE_TEXT),
    Source("videos", "files", "videos", "*.{mp4,avi,mov,mkv}", BRONZE_FILES),
    Source("video_labels", "csv", "labels", "video_labels*.csv", BRONZE_LABELS),
    Source("photos", "files", "photos", "*.{png,jpg,jpeg}", BRONZE_FILES),  # unlabelled: ImageNet inference input
)


def file_stem(path_col: str) -> F.Column:
    """File name without directory and extension: the record id of a landed file."""
    return F.regexp_extract(F.col(path_col), r"([^/]+?)(\.[^./]*)?$", 1)


def parent_dir(path_col: str) -> F.Column:
    return F.regexp_extract(F.col(path_col), r"([^/]+)/[^/]+$", 1)


def with_file_lineage(run_date: str) -> Transform:
    """binaryFile rows -> bronze file rows with record id, collection and lineage columns."""

    def _(df: DataFrame) -> DataFrame:
        return df.select(
            file_stem("path").alias("record_id"),
            parent_dir("path").alias("collection"),
            F.col("content"),
            F.col("path").alias("source_path"),
            F.col("length").alias("file_size"),
            F.col("modificationTime").alias("modification_time"),
            F.lit(run_date).alias("ingest_run_date"),
            F.sha2(F.col("content"), 256).alias("content_hash"),
        )

    return _


def with_record_lineage(run_date: str, id_col: str, fields: list[str]) -> Transform:
    """Parsed JSON/CSV rows -> bronze record rows, keeping the raw line of malformed ones."""

    def _(df: DataFrame) -> DataFrame:
        raw = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(f) for f in [id_col, *fields]])))
        # A malformed line keeps whatever id can be recovered from its raw text, so its
        # quarantine record can be traced back.
        salvaged = F.regexp_extract(F.col(CORRUPT), '"' + id_col + r'"\s*:\s*"([^"]*)"', 1)
        record_id = F.coalesce(F.col(id_col), F.when(salvaged != "", salvaged))
        return df.select(
            record_id.alias("record_id"),
            *[F.col(f) for f in fields],
            raw.alias("raw_record"),
            F.when(F.col(CORRUPT).isNotNull(), F.lit("record does not parse against the landing schema")).alias(
                "parse_error"
            ),
            F.col("_metadata.file_path").alias("source_path"),
            F.col("_metadata.file_size").alias("file_size"),
            F.col("_metadata.file_modification_time").alias("modification_time"),
            F.lit(run_date).alias("ingest_run_date"),
            F.sha2(raw, 256).alias("content_hash"),
        )

    return _


def empty_files(spark: SparkSession, root: str, glob: str, only: set[str] | None = None) -> DataFrame:
    """Zero-length files as binaryFile rows (Spark's scan skips them; we must not)."""
    rows = [
        (path, datetime.fromtimestamp(mtime / 1000, tz=timezone.utc), 0, b"")
        for path, mtime in Storage(spark).zero_length_files(root, glob)
        if only is None or path in only
    ]
    return spark.createDataFrame(rows, BINARY_FILE)


def read_source(spark: SparkSession, source: Source, landing_root: str, run_date: str, only: list[str] | None = None) -> DataFrame:
    """Read one landing source into its bronze shape: every file under it, or only the files in ``only``."""
    path = f"{landing_root.rstrip('/')}/{source.landing}"
    if only is not None and not only:
        return spark.createDataFrame([], source.bronze_schema)
    target: str | list[str] = path if only is None else only
    if source.kind == "files":
        raw = (
            spark.read.format("binaryFile")
            .option("pathGlobFilter", source.glob)
            .option("recursiveFileLookup", "true")
            .load(target)
        )
        if [f.name for f in raw.schema.fields] != [f.name for f in BINARY_FILE.fields]:
            raise RuntimeError(f"binaryFile source returned unexpected columns {raw.columns}")
        empties = empty_files(spark, path, source.glob, None if only is None else set(only))
        return raw.unionByName(empties).transform(with_file_lineage(run_date))
    reader = (
        spark.read.option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .option("pathGlobFilter", source.glob)
        .option("recursiveFileLookup", "true")
    )
    if source.kind == "jsonl":
        parsed = reader.schema(LANDING_TEXT).json(target)
        return parsed.transform(with_record_lineage(run_date, "review_id", ["text", "label", "movie"]))
    if source.kind == "csv":
        parsed = reader.schema(LANDING_LABELS).option("header", "true").option("encoding", "UTF-8").csv(target)
        return parsed.transform(with_record_lineage(run_date, "id", ["label"]))
    raise ValueError(f"unknown source kind {source.kind!r}")
