"""acquire: land raw files and records as bronze Parquet, nothing dropped.

Every declared source (conf key ``sources``, see :mod:`deepbatch.catalog`) is landed:
files (images, videos) through Spark's ``binaryFile`` source; records (JSONL, CSV,
Parquet) through readers with explicit schemas built from the source's field mapping,
in PERMISSIVE mode, so a malformed line becomes a bronze row with a ``parse_error`` for
the clean stage to quarantine, and a file that cannot be read at all one row that says why.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, timezone
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from deepbatch.catalog import Source, bronze_schema
from deepbatch.quality import Transform
from deepbatch.schemas.tables import BINARY_FILE, CORRUPT, landing_records
from deepbatch.storage import FileEntry, list_files, listing_base, matches, relative_path


def file_stem(path_col: str) -> F.Column:
    """File name without directory and extension: the record id of a landed file."""
    return F.regexp_extract(F.col(path_col), r"([^/]+?)(\.[^./]*)?$", 1)


def parent_dir(path_col: str) -> F.Column:
    return F.regexp_extract(F.col(path_col), r"([^/]+)/[^/]+$", 1)


def path_id(path_col: str, base: str) -> F.Column:
    """The file's path under ``base`` (its source folder) without the extension: an id unique across class folders."""
    rel = F.when(F.col(path_col).startswith(base + "/"), F.substring(F.col(path_col), len(base) + 2, 1 << 20))
    return F.coalesce(F.regexp_replace(rel, r"\.[^./]*$", ""), file_stem(path_col))


def with_file_lineage(run_date: str, id_from: str = "stem", base: str = "") -> Transform:
    """binaryFile rows -> bronze file rows with record id (``stem`` or ``path`` under ``base``), collection (the
    parent folder: an ImageFolder class) and lineage columns."""

    def _(df: DataFrame) -> DataFrame:
        return df.select(
            (path_id("path", base) if id_from == "path" else file_stem("path")).alias("record_id"),
            parent_dir("path").alias("collection"),
            F.col("content"),
            F.col("path").alias("source_path"),
            F.col("length").alias("file_size"),
            F.col("modificationTime").alias("modification_time"),
            F.lit(run_date).alias("ingest_run_date"),
            F.sha2(F.col("content"), 256).alias("content_hash"),
        )

    return _


Fields = list[tuple[str | None, str]]  # (field in the landing files, bronze column); None: not mapped, null


def record_fields(src: Source) -> Fields:
    """The bronze columns of a record source besides the id, and the fields they come from."""
    if src.role == "records":
        return [(src.text_field, "text"), (src.label_field or None, "label"), *[(m, m) for m in src.metadata]]
    return [(src.label_field, "label")]


def _pairs(fields: Fields | list[str]) -> Fields:
    return [(f, f) if isinstance(f, str) else f for f in fields]


def _mapped(parsed: Callable[[str], F.Column], fields: Fields, ok: F.Column | None = None) -> list[F.Column]:
    cols = []
    for field, out in fields:
        value = F.lit(None).cast("string") if field is None else parsed(field).cast("string")
        cols.append((value if ok is None else F.when(ok, value)).alias(out))
    return cols


def _ids(id_col: str) -> list[str]:
    """The id field to read, if the source names one (``id: line`` sources do not)."""
    return [id_col] if id_col else []


def line_ids() -> Transform:
    """``id: line``: a record's id is its file's name and its line (or row) number."""

    def _(df: DataFrame) -> DataFrame:
        name = F.regexp_extract(F.col("source_path"), r"([^/]+)$", 1)
        return df.withColumn("record_id", F.concat(name, F.lit(":"), F.col("source_line").cast("string")))

    return _


def _salvaged_id(text: F.Column, id_col: str) -> F.Column:
    """The id a malformed JSON-ish line still shows (its quarantine record can then be traced back)."""
    found = F.regexp_extract(text, '"\\Q' + id_col + '\\E"' + r'\s*:\s*"?([^",}]*)', 1)
    return F.when(found != "", found)


def with_record_lineage(run_date: str, id_col: str, fields: Fields | list[str]) -> Transform:
    """Parsed CSV rows -> bronze record rows, keeping the raw line of malformed ones and each row's place in its file."""
    from pyspark.sql import Window

    pairs = _pairs(fields)

    def _(df: DataFrame) -> DataFrame:
        present = [f for f, _ in pairs if f is not None]
        raw = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(f"`{f}`") for f in [*_ids(id_col), *present]])))
        record_id = F.coalesce(F.col(f"`{id_col}`"), _salvaged_id(F.col(CORRUPT), id_col)) if id_col else F.lit(None).cast("string")
        placed = df.select("*", F.col("_metadata.file_path").alias("source_path"), F.col("_metadata.file_block_start").alias("_block"),
                           F.monotonically_increasing_id().alias("_seq"))
        line = F.row_number().over(Window.partitionBy("source_path").orderBy("_block", "_seq")).cast("long")
        return placed.select(
            record_id.alias("record_id"),
            *_mapped(lambda f: F.col(f"`{f}`"), pairs),
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


def source_files(src: Source, folder: str, sharing: tuple[Source, ...], listing: list[FileEntry] | None = None) -> list[FileEntry]:
    """Every file under the source's landing folder (``listing``, when the caller has it) that it claims: those matching
    its glob (case-insensitively), plus, for the first source of a shared folder, those that match no source's glob."""
    mine = []
    for f in list_files(folder) if listing is None else listing:
        if matches(f.path, src.glob):
            mine.append(f)
        elif src == sharing[0] and not any(matches(f.path, o.glob) for o in sharing):
            mine.append(f)
    return mine


def driver_read(spark: SparkSession, entries: list[FileEntry]) -> DataFrame:
    """binaryFile-shaped rows for files Spark's scan skips, read on the driver (they are few and small)."""
    from deepbatch.storage import read_bytes

    rows = [(f.path, datetime.fromtimestamp(f.mtime_ms / 1000, tz=timezone.utc), f.size, read_bytes(f.path) if f.size else b"")
            for f in entries]
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
        return extra.transform(with_file_lineage(run_date, source.id_from, base))
    raw = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(folder if everything else [f.path for f in scanned])
    if [f.name for f in raw.schema.fields] != [f.name for f in BINARY_FILE.fields]:
        raise RuntimeError(f"binaryFile source returned unexpected columns {raw.columns}")
    return raw.unionByName(extra).transform(with_file_lineage(run_date, source.id_from, base))


def unusable_reason(source: Source, f: FileEntry) -> str:
    """Why a claimed record file is not read as records: empty, of another format, or hidden."""
    name = f.path.rsplit("/", 1)[-1]
    if f.size == 0:
        return "EMPTY_FILE: zero-byte file"
    if not matches(f.path, source.glob):
        return f"UNSUPPORTED_FORMAT: {name} does not match {source.glob} (sources.{source.name}.glob): not read as {source.kind} records"
    return f"UNSUPPORTED_FORMAT: {name} is hidden (starts with . or _); Spark's readers skip such files"


def unusable_record_files(spark: SparkSession, source: Source, entries: list[tuple[FileEntry, str]], run_date: str) -> DataFrame:
    """One bronze row per record file deepbatch cannot read as records, with the reason."""
    schema = bronze_schema(source)
    rows = []
    for f, err in entries:
        name = f.path.rsplit("/", 1)[-1]
        rows.append({"record_id": name.rsplit(".", 1)[0], "parse_error": err, "source_path": f.path, "file_size": f.size,
                     "modification_time": datetime.fromtimestamp(f.mtime_ms / 1000, tz=timezone.utc),
                     "ingest_run_date": run_date, "source_line": 0})
    return spark.createDataFrame([tuple(r.get(c) for c in schema.names) for r in rows], schema)


def numbered_lines(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Every line of the given text files with its file lineage and 1-based line number.

    The number comes from the split's byte offset, then the order within the split: the same
    for any partitioning, so "the first line of the first file" is well defined for dedup."""
    from pyspark.sql import Window

    lines = spark.read.format("text").load(paths).select(
        "value", F.col("_metadata.file_path").alias("source_path"), F.col("_metadata.file_size").alias("file_size"),
        F.col("_metadata.file_modification_time").alias("modification_time"),
        F.col("_metadata.file_block_start").alias("_block"), F.monotonically_increasing_id().alias("_seq"))
    w = Window.partitionBy("source_path").orderBy("_block", "_seq")
    return lines.withColumn("source_line", F.row_number().over(w).cast("long")).drop("_block", "_seq")


def json_records(run_date: str, id_col: str, fields: Fields | list[str]) -> Transform:
    """Numbered raw lines -> bronze record rows. A line that is not valid UTF-8, is blank, does not parse,
    or holds an array/object where a string belongs keeps its raw bytes and gets a coded parse_error."""
    pairs = _pairs(fields)
    present = [f for f, _ in pairs if f is not None]

    def _(lines: DataFrame) -> DataFrame:
        raw_bytes = F.col("value").cast("binary")
        text = F.decode(F.encode(F.col("value"), "UTF-8"), "UTF-8")  # invalid bytes -> U+FFFD: always valid UTF-8
        landing = landing_records([*_ids(id_col), *present])
        parsed = F.from_json(F.col("value"), landing, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
        drifted = [F.when(F.col("value").rlike(r'(?<!\\)"\Q' + f + r'\E"\s*:\s*[\[{]'), F.lit(f)) for f in dict.fromkeys([*_ids(id_col), *present])]
        error = (F.when(F.encode(F.col("value"), "UTF-8") != raw_bytes, F.concat(F.lit("INVALID_UTF8: line "), F.col("source_line"), F.lit(" is not valid UTF-8")))
                 .when(F.trim(text) == "", F.lit("MALFORMED_RECORD: blank line"))
                 .when(F.col("_j")[CORRUPT].isNotNull() | F.col("_j").isNull(), F.lit("MALFORMED_RECORD: record does not parse against the landing schema"))
                 .when(F.concat_ws(",", *drifted) != "", F.concat(F.lit("SCHEMA_MISMATCH: an array or object where a string belongs in field(s) "), F.concat_ws(",", *drifted))))
        ok = F.col("_error").isNull()
        return (lines.withColumn("_j", parsed).withColumn("_error", error).select(
            (F.coalesce(F.when(ok | F.col("_j")[id_col].isNotNull(), F.col("_j")[id_col]), _salvaged_id(text, id_col)) if id_col
             else F.lit(None).cast("string")).alias("record_id"),
            *_mapped(lambda f: F.col("_j")[f], pairs, ok), text.alias("raw_record"), raw_bytes.alias("raw_bytes"),
            F.col("_error").alias("parse_error"), "source_path", "file_size", "modification_time",
            F.lit(run_date).alias("ingest_run_date"), F.sha2(raw_bytes, 256).alias("content_hash"), "source_line"))

    return _


def csv_header(path: str, delimiter: str = ",") -> list[str]:
    """A CSV file's column names, from its first line (a UTF-8 byte-order mark dropped)."""
    from deepbatch.storage import read_head

    first = read_head(path).decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()[:1]
    return next(csv.reader(io.StringIO(first[0]), delimiter=delimiter), []) if first else []


def _missing_fields(source: Source, have: list[str] | dict[str, str], what: str) -> str | None:
    """A SCHEMA_MISMATCH reason when a file lacks a field the source maps (None: it has them all)."""
    keys = {"id": source.id_field, "text": source.text_field, "label": source.label_field}
    wanted = [(f"fields.{k}", v) for k, v in keys.items() if v] + [("fields.metadata", m) for m in source.metadata]
    if source.role == "labels":
        wanted = [w for w in wanted if w[0] in ("fields.id", "fields.label")]
    missing = [f"{v!r} (sources.{source.name}.{k})" for k, v in wanted if v not in have]
    if not missing:
        return None
    return f"SCHEMA_MISMATCH: {what} has no column {', '.join(missing)}; its columns are {list(have)}. Map the right names in conf"


def csv_records(spark: SparkSession, source: Source, paths: list[str], run_date: str) -> tuple[list[DataFrame], dict[str, str]]:
    """Readable CSV files grouped by header and read by column name; files whose header lacks a mapped field, with why."""
    groups: dict[tuple[str, ...], list[str]] = {}
    bad: dict[str, str] = {}
    for path in paths:
        header = csv_header(path, source.delimiter)
        why = _missing_fields(source, header, "the header") if len(set(header)) == len(header) else (
            f"SCHEMA_MISMATCH: the header repeats a column name: {header}")
        if why:
            bad[path] = why
        else:
            groups.setdefault(tuple(header), []).append(path)
    # multiLine: a quoted field may hold line breaks (RFC 4180); each file is then read by one task.
    reader = (spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT).option("header", "true")
              .option("multiLine", "true").option("escape", '"').option("sep", source.delimiter))
    frames = [reader.schema(landing_records(list(header))).option("encoding", "UTF-8").csv(group)
              .transform(with_record_lineage(run_date, source.id_field, record_fields(source))) for header, group in groups.items()]
    return frames, bad


def parquet_records(spark: SparkSession, source: Source, paths: list[str], run_date: str) -> tuple[list[DataFrame], dict[str, str]]:
    """Readable Parquet files grouped by schema, mapped fields as strings; unreadable ones and those lacking a field, with why."""
    from deepbatch.storage import parquet_columns

    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    bad: dict[str, str] = {}
    for path in paths:
        try:
            columns = parquet_columns(path)
        except Exception as e:  # noqa: BLE001 - any footer that does not parse makes the file unreadable
            bad[path] = f"UNREADABLE_FILE: not a readable Parquet file: {str(e)[:200]}"
            continue
        why = _missing_fields(source, columns, "the file")
        if why:
            bad[path] = why
        else:
            groups.setdefault(tuple(sorted(columns.items())), []).append(path)
    return [_parquet_group(spark, source, group, run_date) for group in groups.values()], bad


def _parquet_group(spark: SparkSession, source: Source, paths: list[str], run_date: str) -> DataFrame:
    pairs = record_fields(source)
    df = spark.read.parquet(*paths)
    mapped = _mapped(lambda f: F.col(f"`{f}`"), pairs)
    ids = [F.col(f"`{i}`").cast("string").alias(i) for i in _ids(source.id_field)]
    raw = F.to_json(F.struct(*ids, *[c for c, (f, _) in zip(mapped, pairs, strict=True) if f]))
    return df.select(
        (ids[0] if ids else F.lit(None).cast("string")).alias("record_id"), *mapped, raw.alias("raw_record"),
        F.lit(None).cast("string").alias("parse_error"), F.col("_metadata.file_path").alias("source_path"),
        F.col("_metadata.file_size").alias("file_size"), F.col("_metadata.file_modification_time").alias("modification_time"),
        F.lit(run_date).alias("ingest_run_date"), F.sha2(raw, 256).alias("content_hash"),
        (F.col("_metadata.row_index") + 1).cast("long").alias("source_line"))


def jsonl_records(spark: SparkSession, source: Source, paths: list[str], run_date: str) -> tuple[list[DataFrame], dict[str, str]]:
    return [numbered_lines(spark, paths).transform(json_records(run_date, source.id_field, record_fields(source)))], {}


def json_array_records(spark: SparkSession, source: Source, paths: list[str], run_date: str) -> tuple[list[DataFrame], dict[str, str]]:
    """Files that each hold a JSON array of records (or one record): a row per element, numbered in its file; a file that
    does not parse is one MALFORMED_RECORD row."""
    fields = [*_ids(source.id_field), *[f for f, _ in record_fields(source) if f is not None]]
    reader = spark.read.option("multiLine", "true").option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
    parsed = reader.schema(landing_records(fields)).json(paths)
    return [parsed.transform(with_record_lineage(run_date, source.id_field, record_fields(source)))], {}


RECORD_READERS: dict[str, Callable[[SparkSession, Source, list[str], str], tuple[list[DataFrame], dict[str, str]]]] = {
    "jsonl": jsonl_records,
    "json": json_array_records,
    "csv": csv_records,
    "parquet": parquet_records,
}


def read_records(spark: SparkSession, source: Source, folder: str, files: list[FileEntry], run_date: str) -> DataFrame:
    """Every claimed record file: readable ones record by record, the rest as one coded row each."""
    base = listing_base(folder)
    readable = [f for f in files if matches(f.path, source.glob) and not spark_skips(f, base)]
    frames, bad = RECORD_READERS[source.kind](spark, source, [f.path for f in readable], run_date) if readable else ([], {})
    unusable = [(f, unusable_reason(source, f)) for f in files if f not in readable] + [(f, bad[f.path]) for f in readable if f.path in bad]
    schema = bronze_schema(source)
    parts = [(df.transform(line_ids()) if source.id_from == "line" else df).select(*schema.names) for df in frames]
    if unusable or not parts:
        parts.append(unusable_record_files(spark, source, unusable, run_date))
    return reduce(DataFrame.unionByName, parts)


def read_source(spark: SparkSession, source: Source, folder: str, run_date: str, files: list[FileEntry],
                everything: bool = True) -> DataFrame:
    """One landing source in its bronze shape: a row for every file (and every record of a record file)
    in ``files``; ``everything`` says they are all the folder holds (full mode), so Spark may list it itself."""
    if not files:
        return spark.createDataFrame([], bronze_schema(source))
    if source.kind == "files":
        return read_files(spark, source, folder, files, everything, run_date)
    return read_records(spark, source, folder, files, run_date)
