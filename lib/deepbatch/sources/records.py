"""Record files: a record per line (jsonl), JSON arrays (json), CSV and Parquet, read by their own field names.

Each format is one :class:`RecordFileReader` subclass: how Spark reads its files into bronze rows (explicit
schemas, PERMISSIVE, a malformed record kept with its parse error) and how ``deepbatch check`` samples them.
Listing, incremental mode and unreadable files are :class:`deepbatch.sources.files.FileSourceReader`'s.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from functools import reduce
from typing import ClassVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from deepbatch.config import Conf, SourceConf
from deepbatch.errors import ConfigError
from deepbatch.quality import Transform
from deepbatch.schemas.tables import CORRUPT, landing_records
from deepbatch.sources import Source, SourceReader, bronze_schema
from deepbatch.sources.files import FileSourceReader, refusal, spark_skips, unusable_reason, unusable_record_files
from deepbatch.sources.survey import SAMPLE_RECORDS, Finding, Sample, SourceCheck, check_fields, note
from deepbatch.storage import FileEntry, compression_problem, listing_base, matches, open_text

RecordRead = Callable[[SparkSession, Source, list[str], str], tuple[list[DataFrame], dict[str, str]]]


Fields = list[tuple[str | None, str]]  # (field in the landing files, bronze column); None: not mapped, null


def record_fields(src: Source) -> Fields:
    """The bronze columns of a record source besides the id, and the fields they come from."""
    if src.role == "records":
        return [(src.text_field, "text"), (src.label_field or None, "label"), *[(m, m) for m in src.metadata]]
    return [(src.label_field, "label")]


def pairs_of(fields: Fields | list[str]) -> Fields:
    return [(f, f) if isinstance(f, str) else f for f in fields]


def mapped_columns(parsed: Callable[[str], F.Column], fields: Fields, ok: F.Column | None = None) -> list[F.Column]:
    cols = []
    for field, out in fields:
        value = F.lit(None).cast("string") if field is None else parsed(field).cast("string")
        cols.append((value if ok is None else F.when(ok, value)).alias(out))
    return cols


def ids_of(id_col: str) -> list[str]:
    """The id field to read, if the source names one (``id: line`` sources do not)."""
    return [id_col] if id_col else []


def line_ids() -> Transform:
    """``id: line``: a record's id is its file's name and its line (or row) number."""

    def _(df: DataFrame) -> DataFrame:
        name = F.regexp_extract(F.col("source_path"), r"([^/]+)$", 1)
        return df.withColumn("record_id", F.concat(name, F.lit(":"), F.col("source_line").cast("string")))

    return _


def _salvaged_id(text: F.Column, id_col: str) -> F.Column:
    """The id a malformed JSON-ish line still shows, a string or a number (its quarantine record can then be traced
    back); a literal null, true or false is no id."""
    key = '"\\Q' + id_col + '\\E"' + r'\s*:\s*'
    quoted = F.regexp_extract(text, key + r'"([^"]*)"', 1)
    number = F.regexp_extract(text, key + r'(-?[0-9][0-9.eE+-]*)', 1)
    return F.coalesce(F.when(quoted != "", quoted), F.when(number != "", number))


def with_record_lineage(run_date: str, id_col: str, fields: Fields | list[str]) -> Transform:
    """Parsed CSV rows -> bronze record rows, keeping the raw line of malformed ones and each row's place in its file."""
    from pyspark.sql import Window

    pairs = pairs_of(fields)

    def _(df: DataFrame) -> DataFrame:
        present = [f for f, _ in pairs if f is not None]
        raw = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(f"`{f}`") for f in [*ids_of(id_col), *present]])))
        record_id = F.coalesce(F.col(f"`{id_col}`"), _salvaged_id(F.col(CORRUPT), id_col)) if id_col else F.lit(None).cast("string")
        placed = df.select("*", F.col("_metadata.file_path").alias("source_path"), F.col("_metadata.file_block_start").alias("_block"),
                           F.monotonically_increasing_id().alias("_seq"))
        line = F.row_number().over(Window.partitionBy("source_path").orderBy("_block", "_seq")).cast("long")
        return placed.select(
            record_id.alias("record_id"),
            *mapped_columns(lambda f: F.col(f"`{f}`"), pairs),
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
    pairs = pairs_of(fields)
    present = [f for f, _ in pairs if f is not None]

    def _(lines: DataFrame) -> DataFrame:
        raw_bytes = F.col("value").cast("binary")
        text = F.decode(F.encode(F.col("value"), "UTF-8"), "UTF-8")  # invalid bytes -> U+FFFD: always valid UTF-8
        landing = landing_records([*ids_of(id_col), *present])
        parsed = F.from_json(F.col("value"), landing, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
        drifted = [F.when(F.col("value").rlike(r'(?<!\\)"\Q' + f + r'\E"\s*:\s*[\[{]'), F.lit(f)) for f in dict.fromkeys([*ids_of(id_col), *present])]
        error = (F.when(F.encode(F.col("value"), "UTF-8") != raw_bytes, F.concat(F.lit("INVALID_UTF8: line "), F.col("source_line"), F.lit(" is not valid UTF-8")))
                 .when(F.trim(text) == "", F.lit("MALFORMED_RECORD: blank line"))
                 .when(F.col("_j")[CORRUPT].isNotNull() | F.col("_j").isNull(), F.lit("MALFORMED_RECORD: record does not parse against the landing schema"))
                 .when(F.concat_ws(",", *drifted) != "", F.concat(F.lit("SCHEMA_MISMATCH: an array or object where a string belongs in field(s) "), F.concat_ws(",", *drifted))))
        ok = F.col("_error").isNull()
        return (lines.withColumn("_j", parsed).withColumn("_error", error).select(
            (F.when(ok, F.col("_j")[id_col]).otherwise(F.coalesce(F.col("_j")[id_col], _salvaged_id(text, id_col))) if id_col
             else F.lit(None).cast("string")).alias("record_id"),
            *mapped_columns(lambda f: F.col("_j")[f], pairs, ok), text.alias("raw_record"), raw_bytes.alias("raw_bytes"),
            F.col("_error").alias("parse_error"), "source_path", "file_size", "modification_time",
            F.lit(run_date).alias("ingest_run_date"), F.sha2(raw_bytes, 256).alias("content_hash"), "source_line"))

    return _


def csv_header(path: str, delimiter: str = ",") -> list[str]:
    """A CSV file's column names, from its first line (a UTF-8 byte-order mark dropped)."""
    from deepbatch.storage import read_head

    first = read_head(path).decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()[:1]
    return next(csv.reader(io.StringIO(first[0]), delimiter=delimiter), []) if first else []


def missing_fields(source: Source, have: list[str] | dict[str, str], what: str) -> str | None:
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
        why = missing_fields(source, header, "the header") if len(set(header)) == len(header) else (
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
        why = missing_fields(source, columns, "the file")
        if why:
            bad[path] = why
        else:
            groups.setdefault(tuple(sorted(columns.items())), []).append(path)
    return [_parquet_group(spark, source, group, run_date) for group in groups.values()], bad


def _parquet_group(spark: SparkSession, source: Source, paths: list[str], run_date: str) -> DataFrame:
    pairs = record_fields(source)
    df = spark.read.parquet(*paths)
    mapped = mapped_columns(lambda f: F.col(f"`{f}`"), pairs)
    ids = [F.col(f"`{i}`").cast("string").alias(i) for i in ids_of(source.id_field)]
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
    fields = [*ids_of(source.id_field), *[f for f, _ in record_fields(source) if f is not None]]
    reader = spark.read.option("multiLine", "true").option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
    parsed = reader.schema(landing_records(fields)).json(paths)
    return [parsed.transform(with_record_lineage(run_date, source.id_field, record_fields(source)))], {}


def unreadable_reason(f: FileEntry, refused: Mapping[str, str]) -> str:
    """Why a record file that matches its glob cannot be read ("" when it can): refused by the listing or by an
    earlier Spark read, or a compressed stream that does not decompress (Spark's reader would fail the whole stage)."""
    why = refusal(f, refused)
    if why:
        return why
    broken = compression_problem(f.path)
    return f"UNREADABLE_FILE: {broken}" if broken else ""


def read_record_files(spark: SparkSession, source: Source, folder: str, files: list[FileEntry], run_date: str,
                      read: RecordRead, refused: Mapping[str, str]) -> DataFrame:
    """Every claimed record file: readable ones record by record, the rest as one coded row each."""
    base = listing_base(folder)
    wanted = [f for f in files if matches(f.path, source.glob) and not spark_skips(f, base) and not refusal(f, refused)]
    broken = {f.path: why for f in wanted if (why := unreadable_reason(f, refused))}
    readable = [f for f in wanted if f.path not in broken]
    frames, bad = read(spark, source, [f.path for f in readable], run_date) if readable else ([], {})
    bad = {**broken, **bad}
    unusable = ([(f, refusal(f, refused) or unusable_reason(source, f)) for f in files if f not in wanted]
                + [(f, bad[f.path]) for f in wanted if f.path in bad])
    schema = bronze_schema(source)
    parts = [(df.transform(line_ids()) if source.id_from == "line" else df).select(*schema.names) for df in frames]
    if unusable or not parts:
        parts.append(unusable_record_files(spark, source, unusable, run_date))
    return reduce(DataFrame.unionByName, parts)


def _scan_jsonl(sc: SourceCheck, sample: Sample, src: Source, files: list[FileEntry]) -> None:
    for f in files:
        with open_text(f.path) as fh:
            for line in fh:
                if not line.strip():
                    continue
                sc.records += 1
                if sample.sampled >= SAMPLE_RECORDS:
                    continue
                try:
                    rec = json.loads(line)
                except (ValueError, RecursionError):  # a line nested too deep for the parser is malformed, as acquire says
                    continue
                if isinstance(rec, dict):
                    note(sc, sample, src, rec)


def _scan_csv(sc: SourceCheck, sample: Sample, src: Source, files: list[FileEntry]) -> None:
    for f in files:
        with open_text(f.path) as fh:
            reader = csv.DictReader(fh, delimiter=src.delimiter)
            sample.keys.update(c.lstrip("\ufeff") for c in reader.fieldnames or [])
            for row in reader:
                sc.records += 1
                if sample.sampled < SAMPLE_RECORDS:
                    note(sc, sample, src, {k.lstrip("\ufeff"): v for k, v in row.items() if k is not None})


def _scan_parquet(sc: SourceCheck, sample: Sample, src: Source, files: list[FileEntry]) -> None:
    import pyarrow.parquet as pq

    from deepbatch.storage import open_input_file

    for f in files:
        try:
            with open_input_file(f.path) as fh:
                pf = pq.ParquetFile(fh)
                groups = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
                sc.records += sum(max(n, 0) for n in groups)  # what the readers read: a footer's total may lie
                sample.keys.update(pf.schema_arrow.names)
                wanted = [c for c in (src.id_field, src.label_field) if c and c in pf.schema_arrow.names]
                for batch in pf.iter_batches(columns=wanted, batch_size=4096) if wanted else []:
                    for rec in batch.to_pylist():
                        if sample.sampled < SAMPLE_RECORDS:
                            note(sc, sample, src, rec)
        except Exception as e:  # noqa: BLE001 - any unreadable footer: acquire quarantines the file as UNREADABLE_FILE
            sc.findings.append(Finding("warning", f"sources.{src.name}", f"{f.path} is not a readable Parquet file ({str(e)[:120]}): "
                                       "acquire lands it as one UNREADABLE_FILE record"))


def _scan_json(sc: SourceCheck, sample: Sample, src: Source, files: list[FileEntry]) -> None:
    for f in files:
        with open_text(f.path) as fh:
            try:
                data = json.load(fh)
            except (ValueError, RecursionError):
                sc.findings.append(Finding("warning", f"sources.{src.name}.kind", f"{f.path} is not a JSON document: acquire lands it as "
                                           "one MALFORMED_RECORD record (a file with one record per line is kind jsonl)"))
                continue
        for rec in data if isinstance(data, list) else [data]:
            sc.records += 1
            if isinstance(rec, dict) and sample.sampled < SAMPLE_RECORDS:
                note(sc, sample, src, rec)


class RecordFileReader(FileSourceReader):
    """A record format: files of records, each landing as a bronze row (a file it cannot read as one coded row).
    A format names how Spark reads its files (``read_fn``) and how check samples them (``scan_fn``)."""

    read_fn: ClassVar[RecordRead]
    scan_fn: ClassVar[Callable[[SourceCheck, Sample, Source, list[FileEntry]], None]]

    def check_conf(self, name: str, sc: SourceConf) -> None:
        super().check_conf(name, sc)
        if sc.id not in ("", "field", "line"):
            raise ConfigError(f"conf key 'sources.{name}.id' must be field (fields.id holds the id) or line (file name and line number), "
                              f"got {sc.id!r}")

    def read(self, spark: SparkSession, src: Source, folder: str, run_date: str, files: list[FileEntry], everything: bool,
             refused: Mapping[str, str]) -> DataFrame:
        return read_record_files(spark, src, folder, files, run_date, type(self).read_fn, refused)

    def unreadable(self, src: Source, f: FileEntry) -> str:
        return unreadable_reason(f, {}) if matches(f.path, src.glob) and f.size > 0 else f.refused

    def scan(self, conf: Conf, sc: SourceCheck, sample: Sample, src: Source, files: list[FileEntry], base: str) -> None:
        for f in files:
            if not (matches(f.path, src.glob) and f.size > 0):
                continue
            try:
                type(self).scan_fn(sc, sample, src, [f])
            except Exception as e:  # noqa: BLE001 - check reports a file it cannot read; it never stops on one
                sc.findings.append(Finding("warning", f"sources.{src.name}", f"check could not read {f.path}: {type(e).__name__}: "
                                           f"{str(e)[:160]}; acquire reads it with Spark and lands it as UNREADABLE_FILE if it fails too"))
        check_fields(sc, src, sample)


class JsonlReader(RecordFileReader):
    kind, default_glob, read_fn, scan_fn = "jsonl", "*.{jsonl,ndjson,jsonl.gz,ndjson.gz,jsonl.bz2,ndjson.bz2}", jsonl_records, _scan_jsonl
    kept_bytes = "raw_bytes"  # a line's bytes exactly as they landed


class JsonReader(RecordFileReader):
    kind, default_glob, read_fn, scan_fn = "json", "*.{json,json.gz,json.bz2}", json_array_records, _scan_json


class CsvReader(RecordFileReader):
    kind, default_glob, read_fn, scan_fn = "csv", "*.{csv,csv.gz,csv.bz2}", csv_records, _scan_csv

    def check_conf(self, name: str, sc: SourceConf) -> None:
        super().check_conf(name, sc)
        if len(sc.delimiter) != 1:
            raise ConfigError(f"conf key 'sources.{name}.delimiter' must be one character (\",\", \";\", \"\\t\"), got {sc.delimiter!r}")


class ParquetReader(RecordFileReader):
    kind, default_glob, read_fn, scan_fn = "parquet", "*.parquet", parquet_records, _scan_parquet


JSONL: SourceReader = JsonlReader()
JSON: SourceReader = JsonReader()
CSV: SourceReader = CsvReader()
PARQUET: SourceReader = ParquetReader()
