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
from deepbatch.storage import FileEntry, list_files, listing_base, matches, relative_path


@dataclass(frozen=True)
class Source:
    """One landing source and the bronze table it lands in."""

    name: str  # bronze table name, e.g. "images" -> bronze/images
    kind: str  # "files" | "jsonl" | "csv"
    landing: str  # path under <data_root>/landing
    glob: str  # record sources: the files read as records (case-insensitive); file sources land every file
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
    """Parsed CSV rows -> bronze record rows, keeping the raw line of malformed ones and each row's place in its file."""
    from pyspark.sql import Window

    def _(df: DataFrame) -> DataFrame:
        raw = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(f) for f in [id_col, *fields]])))
        # A malformed line keeps whatever id can be recovered from its raw text, so its
        # quarantine record can be traced back.
        salvaged = F.regexp_extract(F.col(CORRUPT), '"' + id_col + r'"\s*:\s*"([^"]*)"', 1)
        record_id = F.coalesce(F.col(id_col), F.when(salvaged != "", salvaged))
        placed = df.select("*", F.col("_metadata.file_path").alias("source_path"), F.col("_metadata.file_block_start").alias("_block"),
                           F.monotonically_increasing_id().alias("_seq"))  # fmt: skip
        line = F.row_number().over(Window.partitionBy("source_path").orderBy("_block", "_seq")).cast("long")
        return placed.select(
            record_id.alias("record_id"),
            *[F.col(f) for f in fields],
            raw.alias("raw_record"),
            F.when(F.col(CORRUPT).isNotNull(), F.lit("MALFORMED_RECORD: record does not parse against the landing schema")).alias(
                "parse_error"
            ),
            F.col("source_path"),
            F.col("_metadata.file_size").alias("file_size"),
            F.col("_metadata.file_modification_time").alias("modification_time"),
            F.lit(run_date).alias("ingest_run_date"),
            F.sha2(raw, 256).alias("content_hash"),
            line.alias("source_line"),
        )

    return _


def _spark_hides(name: str) -> bool:
    """Spark's rule for names its file index leaves out (InMemoryFileIndex.shouldFilterOutPathName)."""
    if name.startswith(("_metadata", "_common_metadata")):
        return False
    return (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")


def spark_skips(entry: FileEntry, base: str) -> bool:
    """Files Spark's file sources never return: zero-length ones, and hidden names (``.x``, ``_x``) at any
    depth below ``base`` (the folder's listing_base)."""
    return entry.size == 0 or any(_spark_hides(c) for c in relative_path(entry.path, base).split("/") if c)


def source_files(src: Source, folder: str, sharing: tuple[Source, ...]) -> list[FileEntry]:
    """Every file under the source's landing folder that it claims: those matching its glob (case-
    insensitively), plus, for the first source of a shared folder, those that match no source's glob."""
    mine = []
    for f in list_files(folder):
        if matches(f.path, src.glob):
            mine.append(f)
        elif src is sharing[0] and not any(matches(f.path, o.glob) for o in sharing):
            mine.append(f)
    return mine


def driver_read(spark: SparkSession, entries: list[FileEntry]) -> DataFrame:
    """binaryFile-shaped rows for files Spark's scan skips, read on the driver (they are few and small)."""
    from deepbatch.storage import read_bytes

    rows = [(f.path, datetime.fromtimestamp(f.mtime_ms / 1000, tz=timezone.utc), f.size, read_bytes(f.path) if f.size else b"")
            for f in entries]  # fmt: skip
    return spark.createDataFrame(rows, BINARY_FILE)


def read_files(spark: SparkSession, source: Source, folder: str, files: list[FileEntry], everything: bool, run_date: str) -> DataFrame:
    """Every claimed file as a bronze row: formats are sniffed from the bytes by clean, never from names."""
    base = listing_base(folder)
    skipped: list[FileEntry] = []
    scanned: list[FileEntry] = []
    for f in files:
        (skipped if spark_skips(f, base) else scanned).append(f)
    extra = driver_read(spark, skipped)
    if not scanned:
        return extra.transform(with_file_lineage(run_date))
    raw = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(folder if everything else [f.path for f in scanned])
    if [f.name for f in raw.schema.fields] != [f.name for f in BINARY_FILE.fields]:
        raise RuntimeError(f"binaryFile source returned unexpected columns {raw.columns}")
    return raw.unionByName(extra).transform(with_file_lineage(run_date))


def unusable_record_files(spark: SparkSession, source: Source, entries: list[FileEntry], run_date: str) -> DataFrame:
    """One bronze row per record file deepbatch cannot read as records: empty, hidden, or of another format."""
    from deepbatch.schemas.tables import BRONZE_RECORDS_OF

    rows = []
    for f in entries:
        name = f.path.rsplit("/", 1)[-1]
        if f.size == 0:
            err = "EMPTY_FILE: zero-byte file"
        elif not matches(f.path, source.glob):
            err = f"UNSUPPORTED_FORMAT: {name} does not match {source.glob}: not read as {source.kind} records"
        else:
            err = f"UNSUPPORTED_FORMAT: {name} is hidden (starts with . or _); Spark's readers skip such files"
        rows.append({"record_id": name.rsplit(".", 1)[0], "parse_error": err, "source_path": f.path, "file_size": f.size,
                     "modification_time": datetime.fromtimestamp(f.mtime_ms / 1000, tz=timezone.utc),
                     "ingest_run_date": run_date, "source_line": 0})  # fmt: skip
    schema = BRONZE_RECORDS_OF[source.kind]
    return spark.createDataFrame([tuple(r.get(c) for c in schema.names) for r in rows], schema)


def numbered_lines(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Every line of the given text files with its file lineage and 1-based line number.

    The number comes from the split's byte offset, then the order within the split: the same
    for any partitioning, so "the first line of the first file" is well defined for dedup."""
    from pyspark.sql import Window

    lines = spark.read.format("text").load(paths).select(
        "value", F.col("_metadata.file_path").alias("source_path"), F.col("_metadata.file_size").alias("file_size"),
        F.col("_metadata.file_modification_time").alias("modification_time"),
        F.col("_metadata.file_block_start").alias("_block"), F.monotonically_increasing_id().alias("_seq"))  # fmt: skip
    w = Window.partitionBy("source_path").orderBy("_block", "_seq")
    return lines.withColumn("source_line", F.row_number().over(w).cast("long")).drop("_block", "_seq")


def json_records(run_date: str, id_col: str, fields: list[str]) -> Transform:
    """Numbered raw lines -> bronze text rows. A line that is not valid UTF-8, is blank, does not parse,
    or holds an array/object where a string belongs keeps its raw bytes and gets a coded parse_error."""

    def _(lines: DataFrame) -> DataFrame:
        raw_bytes = F.col("value").cast("binary")
        text = F.decode(F.encode(F.col("value"), "UTF-8"), "UTF-8")  # invalid bytes -> U+FFFD: always valid UTF-8
        parsed = F.from_json(F.col("value"), LANDING_TEXT, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
        drifted = [F.when(F.col("value").rlike(rf'(?<!\\)"{f}"\s*:\s*[\[{{]'), F.lit(f)) for f in [id_col, *fields]]
        error = (F.when(F.encode(F.col("value"), "UTF-8") != raw_bytes, F.concat(F.lit("INVALID_UTF8: line "), F.col("source_line"), F.lit(" is not valid UTF-8")))
                 .when(F.trim(text) == "", F.lit("MALFORMED_RECORD: blank line"))
                 .when(F.col("_j")[CORRUPT].isNotNull() | F.col("_j").isNull(), F.lit("MALFORMED_RECORD: record does not parse against the landing schema"))
                 .when(F.concat_ws(",", *drifted) != "", F.concat(F.lit("SCHEMA_MISMATCH: an array or object where a string belongs in field(s) "), F.concat_ws(",", *drifted))))  # fmt: skip
        salvaged = F.regexp_extract(text, '"' + id_col + r'"\s*:\s*"([^"]*)"', 1)
        ok = F.col("_error").isNull()
        return (lines.withColumn("_j", parsed).withColumn("_error", error).select(
            F.coalesce(F.when(ok | F.col("_j")[id_col].isNotNull(), F.col("_j")[id_col]), F.when(salvaged != "", salvaged)).alias("record_id"),
            *[F.when(ok, F.col("_j")[f]).alias(f) for f in fields], text.alias("raw_record"), raw_bytes.alias("raw_bytes"),
            F.col("_error").alias("parse_error"), "source_path", "file_size", "modification_time",
            F.lit(run_date).alias("ingest_run_date"), F.sha2(raw_bytes, 256).alias("content_hash"), "source_line"))  # fmt: skip

    return _


def read_records(spark: SparkSession, source: Source, folder: str, files: list[FileEntry], run_date: str) -> DataFrame:
    """Every claimed record file: readable ones line by line, the rest as one coded row each."""
    base = listing_base(folder)
    readable = [f for f in files if matches(f.path, source.glob) and not spark_skips(f, base)]
    unusable = unusable_record_files(spark, source, [f for f in files if f not in readable], run_date)
    if not readable:
        return unusable
    paths = [f.path for f in readable]
    if source.kind == "jsonl":
        parsed = numbered_lines(spark, paths).transform(json_records(run_date, "review_id", ["text", "label", "movie"]))
    elif source.kind == "csv":
        reader = spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
        parsed = (reader.schema(LANDING_LABELS).option("header", "true").option("encoding", "UTF-8").csv(paths)
                  .transform(with_record_lineage(run_date, "id", ["label"])))  # fmt: skip
    else:
        raise ValueError(f"unknown source kind {source.kind!r}")
    return parsed.unionByName(unusable)


def read_source(spark: SparkSession, source: Source, landing_root: str, run_date: str, files: list[FileEntry],
                everything: bool = True) -> DataFrame:  # fmt: skip
    """One landing source in its bronze shape: a row for every file (and every line of a record file)
    in ``files``; ``everything`` says they are all the folder holds (full mode), so Spark may list it itself."""
    folder = f"{landing_root.rstrip('/')}/{source.landing}"
    if not files:
        return spark.createDataFrame([], source.bronze_schema)
    if source.kind == "files":
        return read_files(spark, source, folder, files, everything, run_date)
    return read_records(spark, source, folder, files, run_date)
