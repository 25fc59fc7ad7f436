"""Sources that are files under a landing folder: media files (kind files) and the base of the record-file kinds.

Listing and claiming files (a folder several sources share), Spark's hidden-file rules, incremental mode's
file manifest (bronze/_files), the landing fingerprint, and check's survey of a folder are the same for every
file kind; a record format adds only how its files are read (:mod:`deepbatch.sources.records`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from deepbatch.commit import Commit
from deepbatch.config import Conf, SourceConf
from deepbatch.errors import ConfigError, MissingInputError
from deepbatch.manifests import TableCounts
from deepbatch.quality import Transform
from deepbatch.schemas import tables as T
from deepbatch.schemas.tables import BINARY_FILE
from deepbatch.session import describe_job
from deepbatch.sources import Fingerprint, Source, SourceReader, bronze_schema
from deepbatch.sources.survey import Finding, Sample, SourceCheck, note_id
from deepbatch.storage import (
    FileEntry,
    Storage,
    file_sha256,
    fingerprint,
    list_files,
    listing_base,
    matches,
    path_exists,
    relative_path,
)

log = logging.getLogger(__name__)


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
            F.lit(None).cast("string").alias("parse_error"),
            F.col("path").alias("source_path"),
            F.col("length").alias("file_size"),
            F.col("modificationTime").alias("modification_time"),
            F.lit(run_date).alias("ingest_run_date"),
            F.sha2(F.col("content"), 256).alias("content_hash"),
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


def landing_root(conf: Conf, folder: str) -> str:
    """The root a landing link may point into: the landing zone (<data_root>/landing), or the source's own folder when
    it lies elsewhere."""
    root = conf.path("landing")
    return root if folder == root or folder.startswith(root.rstrip("/") + "/") else folder


def source_files(src: Source, folder: str, sharing: tuple[Source, ...], listing: list[FileEntry] | None = None,
                 within: str | None = None) -> list[FileEntry]:
    """Every file under the source's landing folder (``listing``, when the caller has it) that it claims: those matching
    its glob (case-insensitively), plus, for the first source of a shared folder, those that match no source's glob."""
    mine = []
    for f in list_files(folder, within) if listing is None else listing:
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


MAX_REREADS = 50  # files a Spark reader may fail on before acquire gives up on the source (a broken store, not broken files)


def failed_file(error: BaseException, paths: set[str]) -> str | None:
    """The landing file a Spark read failure names (FAILED_READ_FILE and its kin), among ``paths``; None if none."""
    text = str(error)
    for m in re.finditer(r"(?:reading file|file|path) (\S+?)\.?(?:\s|$)", text):
        named = re.sub(r"^file:/+", "file:/", m.group(1).rstrip(".,;"))
        if named in paths:
            return named
    return next((p for p in paths if p in text or p.replace("file:/", "file:///", 1) in text), None)


def spark_cause(error: BaseException) -> str:
    """The innermost 'Caused by' line of a Java failure (the decompressor's or the reader's own words)."""
    causes = re.findall(r"Caused by: ([^\n]+)", str(error))
    return (causes[-1] if causes else str(error).strip().splitlines()[0]).strip()[:300]


def hashed_entry(f: FileEntry) -> tuple[FileEntry, str]:
    """A record file and its content hash, read once on the driver. A file acquire will not read (a link out of the zone)
    is hashed by its path and reason, never by its target's bytes; one the driver cannot open comes back refused."""
    if not f.refused:
        try:
            return f, file_sha256(f.path)
        except OSError as e:
            f = replace(f, refused=f"UNREADABLE_FILE: {f.path.rsplit('/', 1)[-1]} cannot be opened: {e}"[:300])
    return f, hashlib.sha256(f"{f.path}\n{f.refused}".encode()).hexdigest()


def refusal(f: FileEntry, refused: Mapping[str, str]) -> str:
    """Why acquire does not read a listed file ("" when it does): the listing's rule (links, special files) or a
    failure Spark's reader had on it earlier in this run."""
    return f.refused or refused.get(f.path, "")


def refused_files(spark: SparkSession, src: Source, entries: list[tuple[FileEntry, str]], base: str, run_date: str) -> DataFrame:
    """One bronze row per file acquire does not read, with its reason and no content (a link's target is never copied)."""
    meta = [(f.path, datetime.fromtimestamp(f.mtime_ms / 1000, tz=timezone.utc), f.size, None) for f, _ in entries]
    lined = spark.createDataFrame(meta, BINARY_FILE).transform(with_file_lineage(run_date, src.id_from, base))
    why = spark.createDataFrame([(f.path, reason) for f, reason in entries], "source_path string, _why string")
    return (lined.drop("parse_error").join(why, "source_path").withColumn("parse_error", F.col("_why"))
            .withColumn("content_hash", F.sha2(F.concat_ws("\n", "source_path", "parse_error"), 256)).drop("_why"))


def read_files(spark: SparkSession, source: Source, folder: str, files: list[FileEntry], everything: bool, run_date: str,
               refused: Mapping[str, str]) -> DataFrame:
    """Every claimed file as a bronze row: formats are sniffed from the bytes by clean, never from names; a refused
    file is a row with its reason and no content."""
    base = listing_base(folder)
    skipped: list[FileEntry] = []
    scanned: list[FileEntry] = []
    unread = [(f, refusal(f, refused)) for f in files if refusal(f, refused)]
    for f in files:
        if not refusal(f, refused):
            (skipped if spark_skips(f, base) else scanned).append(f)
    parts = [driver_read(spark, skipped).transform(with_file_lineage(run_date, source.id_from, base))]
    if unread:
        parts.append(refused_files(spark, source, unread, base, run_date))
    if scanned:
        raw = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(
            folder if everything and not unread else [f.path for f in scanned])
        if [f.name for f in raw.schema.fields] != [f.name for f in BINARY_FILE.fields]:
            raise RuntimeError(f"binaryFile source returned unexpected columns {raw.columns}")
        parts.append(raw.transform(with_file_lineage(run_date, source.id_from, base)))
    return reduce(lambda a, b: a.unionByName(b.select(*a.columns)), parts)


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


@dataclass(frozen=True)
class Ingested:
    """What earlier run dates ingested, from the file manifest bronze/_files."""

    keys: frozenset[tuple[str, int, int]]  # (path, size, mtime_ms)
    hashes: frozenset[tuple[str, str]]  # (path, content hash)

    @classmethod
    def load(cls, spark: SparkSession, conf: Conf, run_date: str) -> Ingested:
        root = conf.path("bronze", "_files")
        if not Storage(spark).exists(root):
            return cls(frozenset(), frozenset())
        # Every run date but this one: a rerun of a run date re-ingests exactly what it ingested before.
        rows = (spark.read.schema(T.BRONZE_FILE_MANIFEST).parquet(root).where(F.col("ingest_run_date") != run_date)
                .select("path", "size", "mtime_ms", "content_hash").distinct().collect())
        return cls(frozenset((r.path, r.size, r.mtime_ms) for r in rows), frozenset((r.path, r.content_hash) for r in rows))



def file_id(src: Source, f: FileEntry, base: str) -> str:
    """The record id acquire gives a landed file (``id: stem`` or ``id: path``)."""
    rel = relative_path(f.path, base) if src.id_from == "path" else f.path.rsplit("/", 1)[-1]
    head, _, name = rel.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    return f"{head}/{stem}" if head else stem


def note_unreadable(sc: SourceCheck, src: Source, unread: Mapping[str, str]) -> None:
    """One finding per reason for the files acquire will land unread, with the count and an example."""
    by_code: dict[str, list[str]] = {}
    for _, why in sorted(unread.items()):
        by_code.setdefault(why.split(":", 1)[0], []).append(why)
    for code, whys in by_code.items():
        sc.findings.append(Finding("warning", f"sources.{src.name}", f"{len(whys)} file(s) will land unread as {code}, e.g. "
                                   f"{whys[0].split(': ', 1)[-1]}"))


class FileSourceReader:
    """The landing-folder machinery every file kind shares; subclasses say how their files are read and surveyed."""

    kind = ""
    reads_files = True
    media_files = False
    default_glob = ""
    kept_bytes: str | None = None
    # Whether the bronze rows carry each file's content hash (media files); record files are hashed on the driver.
    bronze_hashes_files = False

    def check_conf(self, name: str, sc: SourceConf) -> None:
        key = f"sources.{name}"
        for other in ("table", "query", "url", "driver", "user_env", "password_env", "credentials_file", "updated_at"):
            if getattr(sc, other):
                raise ConfigError(f"conf key '{key}.{other}' is for sources that are not files (kind table or jdbc); "
                                  f"sources.{name} is kind {sc.kind}: remove it, or change the kind")

    def fingerprint(self, spark: SparkSession | None, conf: Conf, src: Source) -> Fingerprint:
        """Every file's path (relative to the folder), size and modification time."""
        return Fingerprint(fingerprint(src.folder(conf)))

    def read(self, spark: SparkSession, src: Source, folder: str, run_date: str, files: list[FileEntry], everything: bool,
             refused: Mapping[str, str]) -> DataFrame:
        """The bronze rows of ``files``; ``everything``: they are all the folder holds; ``refused``: path -> reason of files
        not to read (a Spark reader failed on them)."""
        raise NotImplementedError

    def scan(self, conf: Conf, sc: SourceCheck, sample: Sample, src: Source, files: list[FileEntry], base: str) -> None:
        raise NotImplementedError

    def unreadable(self, src: Source, f: FileEntry) -> str:
        """Why acquire lands a claimed file as one record with a reason instead of reading it ("" when it reads it)."""
        return f.refused

    def _new_files(self, listing: list[FileEntry], seen: Ingested) -> tuple[list[FileEntry], dict[str, str]]:
        """The files this run lands (incremental: those no earlier run date ingested) and, for record files, their
        content hashes (few, larger files, hashed once here; media files' hashes come with their bronze rows)."""
        if seen.keys:
            listing = [f for f in listing if (f.path, f.size, f.mtime_ms) not in seen.keys]
        file_hashes: dict[str, str] = {}
        if not self.bronze_hashes_files:
            hashed = [hashed_entry(f) for f in listing]
            listing, file_hashes = [f for f, _ in hashed], {f.path: h for f, h in hashed}
        if seen.keys and not self.bronze_hashes_files:  # touched but unchanged record files are not new
            listing = [f for f in listing if (f.path, file_hashes[f.path]) not in seen.hashes]
        return listing, file_hashes

    def _file_entries(self, spark: SparkSession, src: Source, listing: list[FileEntry], bronze: DataFrame | None,
                      file_hashes: dict[str, str], run_date: str) -> DataFrame:
        """bronze/_files rows for the files this run ingested from one source."""
        meta = spark.createDataFrame([(f.path, f.size, f.mtime_ms) for f in listing], "path string, size long, mtime_ms long")
        if bronze is not None:
            hashes = bronze.select(F.col("source_path").alias("path"), "content_hash").distinct()
        else:
            hashes = spark.createDataFrame([(f.path, file_hashes[f.path]) for f in listing], "path string, content_hash string")
        return meta.join(hashes, "path").select(F.lit(src.name).alias("source"), "path", "size", "mtime_ms", "content_hash",
                                                F.lit(run_date).alias("ingest_run_date"))

    def land(self, spark: SparkSession, conf: Conf, commit: Commit, src: Source, run_date: str, seen: Ingested,
             all_sources: tuple[Source, ...]) -> DataFrame | None:
        """Stage bronze/<source>; returns its file-manifest rows."""
        path = src.folder(conf)
        if not Storage(spark).exists(path):
            raise MissingInputError(
                f"landing folder {path} of source {src.name!r} does not exist. Put its files there, point "
                f"'sources.{src.name}.path' (or data_root) at them, or remove the source (an overlay says 'sources: {{{src.name}: null}}'); "
                "for the demo, `deepbatch demo-data` builds the landing zone."
            )
        describe_job(spark, "acquire", src.name, run_date)
        sharing = tuple(o for o in all_sources if o.reads_files and o.folder(conf) == path)
        listing, file_hashes = self._new_files(source_files(src, path, sharing, within=landing_root(conf, path)), seen)
        table = f"bronze/{src.name}"
        n_in, n_out = self._stage_bronze(spark, commit, src, path, run_date, listing, not seen.keys and len(sharing) == 1, seen)
        bronze = spark.read.parquet(commit.staged_path(table)) if self.bronze_hashes_files else None
        commit.add_manifest(TableCounts(table, n_in, n_out, inputs=[path], extra={"mode": conf.acquire.mode, "files": len(listing)}))
        log.debug("acquire %-13s %7d records landed from %d files", src.name, n_out, len(listing))
        return self._file_entries(spark, src, listing, bronze, file_hashes, run_date)

    def _bronze(self, spark: SparkSession, src: Source, path: str, run_date: str, listing: list[FileEntry], everything: bool,
                seen: Ingested, refused: Mapping[str, str]) -> DataFrame:
        df = self.read(spark, src, path, run_date, listing, everything, refused) if listing else (
            spark.createDataFrame([], bronze_schema(src)))
        if seen.hashes and self.bronze_hashes_files:
            touched = spark.createDataFrame(sorted(seen.hashes), "source_path string, content_hash string")
            df = df.join(F.broadcast(touched), ["source_path", "content_hash"], "left_anti")
        return df

    def _stage_bronze(self, spark: SparkSession, commit: Commit, src: Source, path: str, run_date: str, listing: list[FileEntry],
                      everything: bool, seen: Ingested) -> tuple[int, int]:
        """Stage bronze/<source>: (rows in, rows written). A file a Spark reader fails on (a corrupt .gz, a Parquet file
        cut short, one that vanished or cannot be opened) becomes that file's UNREADABLE_FILE row and the rest is read
        again; only a failure that names no landing file fails the stage."""
        refused: dict[str, str] = {}
        paths = {f.path for f in listing}
        while True:
            df = self._bronze(spark, src, path, run_date, listing, everything, seen, refused)
            try:
                return df.count(), commit.stage_table(f"bronze/{src.name}", df, bronze_schema(src))
            except Exception as e:  # noqa: BLE001 - a failure on one file is that file's reason; any other is re-raised
                failed = failed_file(e, paths - set(refused))
                if failed is None or len(refused) >= MAX_REREADS:
                    raise
                refused[failed] = f"UNREADABLE_FILE: Spark could not read {failed.rsplit('/', 1)[-1]}: {spark_cause(e)}"
                log.warning("acquire %s: %s; landing it as one UNREADABLE_FILE record and reading the rest again", src.name, refused[failed])

    def survey(self, conf: Conf, src: Source, all_sources: tuple[Source, ...], spark: Any = None) -> tuple[SourceCheck, Sample]:
        folder = src.folder(conf)
        sc, sample = SourceCheck(src.name, src.kind, folder), Sample()
        listed = list_files(folder, within=landing_root(conf, folder))
        if not listed and not path_exists(folder):
            sc.findings.append(Finding("problem", f"sources.{src.name}.path", f"landing folder {folder} of source {src.name!r} does not exist: "
                                       f"put its files there, fix 'sources.{src.name}.path', or remove the source"))
            return sc, sample
        sharing = tuple(o for o in all_sources if o.reads_files and o.folder(conf) == folder)
        files = source_files(src, folder, sharing, listed)
        sc.files = len(files)
        sc.unmatched = [f.path for f in files if not matches(f.path, src.glob)]
        unread = {f.path: why for f in files if (why := self.unreadable(src, f))}
        note_unreadable(sc, src, unread)
        self.scan(conf, sc, sample, src, [f for f in files if f.path not in unread], listing_base(folder))
        sc.records += len(unread)  # each lands as one record with its reason
        if sc.unmatched:
            sc.findings.append(Finding("warning", f"sources.{src.name}.glob", f"{len(sc.unmatched)} file(s) in {folder} match no source's "
                                       f"glob ({src.glob}), e.g. {sc.unmatched[0].rsplit('/', 1)[-1]}: acquire lands them and clean "
                                       "quarantines them as UNSUPPORTED_FORMAT"))
        return sc, sample


class FilesReader(FileSourceReader):
    """kind files: media files (images, videos, documents), one bronze row per file; formats are sniffed by clean."""

    kind = "files"
    media_files = True
    kept_bytes = "content"
    bronze_hashes_files = True

    def check_conf(self, name: str, sc: SourceConf) -> None:
        super().check_conf(name, sc)
        if sc.id not in ("", "stem", "path"):
            raise ConfigError(f"conf key 'sources.{name}.id' must be stem (file name without extension) or path (path under the folder), "
                              f"got {sc.id!r}")

    def read(self, spark: SparkSession, src: Source, folder: str, run_date: str, files: list[FileEntry], everything: bool,
             refused: Mapping[str, str]) -> DataFrame:
        return read_files(spark, src, folder, files, everything, run_date, refused)

    def scan(self, conf: Conf, sc: SourceCheck, sample: Sample, src: Source, files: list[FileEntry], base: str) -> None:
        """Files and their ids (colliding ids are named), and ImageFolder labels when a task reads them."""
        folder_labels = any(t.source == src.name and t.labels == "folder" for t in conf.tasks.values())
        sc.records += len(files)
        seen: dict[str, str] = {}
        for f in files:
            if not matches(f.path, src.glob) or f.size == 0:
                continue
            rid = file_id(src, f, base)
            note_id(sc, src, rid)  # Unicode-normalisation twins are their own finding
            if rid in seen and not any(x.key == f"sources.{src.name}.id" for x in sc.findings):
                sc.findings.append(Finding("warning", f"sources.{src.name}.id", f"files {seen[rid].rsplit('/', 2)[-2:]} and "
                                           f"{f.path.rsplit('/', 2)[-2:]} get the same id {rid!r} (id: {src.id_from}); clean keeps one "
                                           f"and deduplicates the others as DUPLICATE_ID. Set sources.{src.name}.id: path"))
            seen[rid] = f.path
            rel = relative_path(f.path, base)
            if folder_labels and "/" in rel:  # ImageFolder: landing/<source>/<class>/<file>
                sc.labels[rel.rsplit("/", 2)[-2]] += 1


FILES: SourceReader = FilesReader()
