"""Storage, staging + atomic publish, and run manifests.

Everything goes through Hadoop's FileSystem API on the driver's JVM, so the
same code publishes to a local path, ``file://``, ``hdfs://`` or ``s3a://``.

Publishing protocol for one table partition ``<table>/run_date=D``:

1. the stage writes it to ``_staging/<run_id>/<table>/run_date=D``;
2. the row count is read back from the staged Parquet and reconciled;
3. the manifest is written into the staged folder;
4. an existing published partition is moved to ``_trash/<run_id>/…``, the
   staged folder is renamed into place, and the trash is deleted.

A reader therefore sees the old partition or the new one, never a half
written one; a rerun for the same run date replaces the partition exactly.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from deepbatch._version import __version__
from deepbatch.errors import MissingInputError, ReconciliationError, SchemaMismatchError

MANIFEST_NAME = "_manifest.json"
log = logging.getLogger(__name__)


def expand_braces(pattern: str) -> list[str]:
    """Hadoop glob braces to fnmatch patterns: ``*.{png,jpg}`` -> ``['*.png', '*.jpg']``."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end() :]
    return [p for alt in m.group(1).split(",") for p in expand_braces(head + alt + tail)]


@dataclass(frozen=True)
class FileEntry:
    path: str  # as Spark's file sources spell it: file:/abs/path, or scheme://authority/path
    size: int
    mtime_ms: int


def list_files(root: str) -> list[FileEntry]:
    """Every file under root (local path or URI), recursively, sorted by path; [] if root is absent."""
    from pyarrow import fs as pafs

    if "://" in root:
        filesystem, path = pafs.FileSystem.from_uri(root.replace("s3a://", "s3://", 1))
        scheme, rest = root.split("://", 1)
        prefix = "file:" if scheme == "file" else f"{scheme}://{rest.split('/', 1)[0]}"
        if scheme == "file":
            path = "/" + path.lstrip("/")
    elif root.startswith("file:"):
        filesystem, path, prefix = pafs.LocalFileSystem(), root[len("file:") :], "file:"
    else:
        filesystem, path, prefix = pafs.LocalFileSystem(), os.path.abspath(root), "file:"
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return []
    return sorted((
        FileEntry(prefix + ("/" + i.path.lstrip("/") if prefix != "file:" else i.path), int(i.size or 0),
                  int(i.mtime_ns // 1_000_000) if i.mtime_ns else 0)
        for i in infos
        if i.type == pafs.FileType.File
    ), key=lambda f: f.path)  # fmt: skip


def matches(path: str, glob: str) -> bool:
    """Whether a file's name matches a Hadoop-style name glob (``*.{png,jpg}``)."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) for p in expand_braces(glob))


def list_zero_length_files(root: str, glob: str) -> list[tuple[str, int]]:
    """Empty files under root matching a Hadoop-style name glob: (path as Spark spells it, mtime ms)."""
    return [(f.path, f.mtime_ms) for f in list_files(root) if f.size == 0 and matches(f.path, glob)]


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes (local path, ``file:`` or any pyarrow-readable URI), streamed."""
    from pyarrow import fs as pafs

    if path.startswith("file:") or "://" not in path:
        filesystem, inner = pafs.LocalFileSystem(), path[len("file:") :] if path.startswith("file:") else path
        inner = "/" + inner.lstrip("/") if path.startswith("file:") else inner
    else:
        filesystem, inner = pafs.FileSystem.from_uri(path.replace("s3a://", "s3://", 1))
    h = hashlib.sha256()
    with filesystem.open_input_stream(inner) as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(root: str) -> str:
    """A hash of every file's path, size and modification time under root: changes when the input does."""
    h = hashlib.sha256()
    for f in list_files(root):
        h.update(f"{f.path}\t{f.size}\t{f.mtime_ms}\n".encode())
    return h.hexdigest()[:16]


class Storage:
    """Thin wrapper over Hadoop FileSystem for the few operations stages need."""

    def __init__(self, spark: SparkSession):
        self._spark = spark
        self._jvm: Any = spark._jvm  # type: ignore[attr-defined]
        self._hconf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]

    def _path(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def _fs(self, path: str) -> Any:
        return self._path(path).getFileSystem(self._hconf)

    def exists(self, path: str) -> bool:
        return bool(self._fs(path).exists(self._path(path)))

    def delete(self, path: str) -> None:
        if self.exists(path):
            self._fs(path).delete(self._path(path), True)

    def mkdirs(self, path: str) -> None:
        self._fs(path).mkdirs(self._path(path))

    def rename(self, src: str, dst: str) -> None:
        parent = self._path(dst).getParent()
        self._fs(dst).mkdirs(parent)
        if not self._fs(src).rename(self._path(src), self._path(dst)):
            raise OSError(f"could not rename {src} to {dst}; check permissions on {parent}")

    def list_dirs(self, path: str) -> list[str]:
        if not self.exists(path):
            return []
        statuses = self._fs(path).listStatus(self._path(path))
        return sorted(str(s.getPath().getName()) for s in statuses if s.isDirectory())

    def zero_length_files(self, root: str, glob: str) -> list[tuple[str, int]]:
        """(path, mtime ms) of every empty file under root whose name matches glob.

        Spark's file sources skip zero-length files when planning a scan, so
        acquire lists them itself to land them as records instead of losing them.
        The listing uses pyarrow's filesystems (one C++ call for the whole tree);
        per-file calls through the JVM gateway cost milliseconds each.
        """
        try:
            return list_zero_length_files(root, glob)
        except (pa.ArrowException, ValueError, OSError) as e:  # scheme pyarrow cannot open
            log.warning("pyarrow cannot list %s (%s); listing through Hadoop, which is slow for many files", root, e)
        if not self.exists(root):
            return []
        accept = self._jvm.org.apache.hadoop.fs.GlobFilter(glob)
        it = self._fs(root).listFiles(self._path(root), True)
        out = []
        while it.hasNext():
            st = it.next()
            if st.getLen() == 0 and accept.accept(st.getPath()):
                out.append((str(st.getPath().toString()), int(st.getModificationTime())))
        return sorted(out)

    def write_bytes(self, path: str, data: bytes) -> None:
        out = self._fs(path).create(self._path(path), True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def write_text(self, path: str, text: str) -> None:
        self.write_bytes(path, text.encode("utf-8"))

    def read_text(self, path: str) -> str:
        fs = self._fs(path)
        p = self._path(path)
        length = int(fs.getFileStatus(p).getLen())
        stream = fs.open(p)
        try:
            buf = self._jvm.java.io.ByteArrayOutputStream()
            self._jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, buf, max(length, 1), False)
            return bytes(buf.toByteArray()).decode("utf-8")
        finally:
            stream.close()


def partition_path(table_root: str, run_date: str) -> str:
    return f"{table_root.rstrip('/')}/run_date={run_date}"


def read_partition(
    spark: SparkSession, table_root: str, run_date: str, schema: StructType
) -> DataFrame:
    """Read one published run-date partition with its declared schema."""
    path = partition_path(table_root, run_date)
    if not Storage(spark).exists(path):
        raise MissingInputError(
            f"input {path} does not exist: run the upstream stage for run date {run_date} first "
            f"(e.g. `deepbatch pipeline --run-date {run_date}`)."
        )
    df = spark.read.schema(schema).parquet(path)
    check_columns(df, schema, path)
    return df


def check_columns(df: DataFrame, schema: StructType, where: str) -> None:
    expected = [(f.name, f.dataType.simpleString()) for f in schema.fields]
    actual = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
    if expected != actual:
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        raise SchemaMismatchError(
            f"{where}: columns differ from the declared schema; missing {missing}, unexpected {extra}. "
            "Fix the producing transformation or update schemas/tables.py."
        )


def conform(df: DataFrame, schema: StructType, where: str) -> DataFrame:
    """Select and cast columns to the declared schema, failing on a missing column."""
    from pyspark.sql import functions as F

    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing:
        raise SchemaMismatchError(
            f"{where}: missing columns {missing} for its declared schema; available: {df.columns}"
        )
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


@dataclass
class TableCounts:
    """Record accounting for one output table."""

    table: str
    records_in: int
    records_out: int
    quarantined: dict[str, int] = field(default_factory=dict)
    deduplicated: dict[str, int] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def reconcile(self) -> None:
        q = sum(self.quarantined.values())
        d = sum(self.deduplicated.values())
        if self.records_in != self.records_out + q + d:
            raise ReconciliationError(
                f"{self.table}: records_in={self.records_in} but records_out={self.records_out} "
                f"+ quarantined={q} + deduplicated={d} = {self.records_out + q + d}; "
                "a transformation lost or invented rows. Nothing was published."
            )

    @property
    def quarantined_fraction(self) -> float:
        return sum(self.quarantined.values()) / self.records_in if self.records_in else 0.0


def build_manifest(
    stage: str, run_date: str, conf_hash: str, counts: TableCounts, duration_s: float, output: str
) -> dict[str, Any]:
    return {
        "stage": stage,
        "table": counts.table,
        "run_date": run_date,
        "conf_hash": conf_hash,
        "inputs": counts.inputs,
        "output": output,
        "records_in": counts.records_in,
        "records_out": counts.records_out,
        "quarantined": dict(sorted(counts.quarantined.items())),
        "deduplicated": dict(sorted(counts.deduplicated.items())),
        **({"extra": counts.extra} if counts.extra else {}),
        "duration_s": round(duration_s, 3),
        "deepbatch_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@dataclass
class _Staged:
    target: str
    staging: str
    expected_rows: int
    manifest_table: str | None


class Publisher:
    """Stages a stage's outputs and publishes them together once all checks pass."""

    def __init__(self, spark: SparkSession, data_root: str, stage: str, run_date: str, conf_hash: str, progress_seconds: float = 10.0):
        self.spark = spark
        self.progress_seconds = progress_seconds
        self.storage = Storage(spark)
        self.root = data_root.rstrip("/")
        self.stage = stage
        self.run_date = run_date
        self.conf_hash = conf_hash
        self.run_id = f"{stage}-{run_date}-{uuid.uuid4().hex[:8]}"
        self.started = time.monotonic()
        self._staged: list[_Staged] = []
        self.manifests: list[dict[str, Any]] = []

    def stage_table(self, table: str, df: DataFrame, schema: StructType, progress: bool = True) -> int:
        """Write df (conformed to schema) to staging; return the rows written.

        While it writes, a progress line (tasks done, ETA) is logged every ``progress_seconds``."""
        from deepbatch.progress import SparkProgress

        target = partition_path(f"{self.root}/{table}", self.run_date)
        staging = partition_path(f"{self.root}/_staging/{self.run_id}/{table}", self.run_date)
        every = self.progress_seconds if progress else 0.0
        with SparkProgress(self.spark, f"deepbatch-{self.stage}-{self.run_date}", f"{self.stage} {table}", None, every):
            conform(df, schema, table).write.mode("overwrite").parquet(staging)
        rows = self.spark.read.parquet(staging).count()
        self._staged.append(_Staged(target, staging, rows, table))
        return rows

    def stage_files(self, name: str, target: str, files: dict[str, bytes]) -> int:
        """Stage a folder of plain files (e.g. a report) to publish at ``target``."""
        staging = f"{self.root}/_staging/{self.run_id}/{name}"
        for fname, data in sorted(files.items()):
            self.storage.write_bytes(f"{staging}/{fname}", data)
        self._staged.append(_Staged(target, staging, len(files), name))
        return len(files)

    def register_folder(self, name: str, staging: str, target: str, rows: int) -> None:
        """Publish a folder some other writer (e.g. Petastorm) staged at ``staging``."""
        self._staged.append(_Staged(target, staging, rows, name))

    def _find(self, table: str) -> _Staged:
        for s in self._staged:
            if s.manifest_table == table:
                return s
        raise KeyError(f"table {table!r} was not staged in this run")

    def staged_path(self, table: str) -> str:
        return self._find(table).staging

    def add_file(self, table: str, name: str, text: str) -> None:
        """Write a side file (e.g. a class map) into a staged partition; published with it."""
        self.storage.write_text(f"{self._find(table).staging}/{name}", text)

    def add_manifest(self, counts: TableCounts) -> dict[str, Any]:
        counts.reconcile()
        staged = self._find(counts.table)
        manifest = build_manifest(
            self.stage,
            self.run_date,
            self.conf_hash,
            counts,
            time.monotonic() - self.started,
            staged.target,
        )
        self.storage.write_text(f"{staged.staging}/{MANIFEST_NAME}", json.dumps(manifest, indent=2))
        self.manifests.append(manifest)
        return manifest

    def publish(self) -> dict[str, Any]:
        """Swap every staged partition into place and write the stage manifest."""
        trash = f"{self.root}/_trash/{self.run_id}"
        for i, s in enumerate(self._staged):
            if self.storage.exists(s.target):
                self.storage.rename(s.target, f"{trash}/{i}")
            self.storage.rename(s.staging, s.target)
        self.storage.delete(trash)
        self.storage.delete(f"{self.root}/_staging/{self.run_id}")
        summary = {
            "stage": self.stage,
            "run_date": self.run_date,
            "conf_hash": self.conf_hash,
            "run_id": self.run_id,
            "duration_s": round(time.monotonic() - self.started, 3),
            "deepbatch_version": __version__,
            "tables": self.manifests,
        }
        self.storage.write_text(
            f"{self.root}/manifests/run_date={self.run_date}/{self.stage}.json",
            json.dumps(summary, indent=2),
        )
        return summary

    def abort(self) -> None:
        self.storage.delete(f"{self.root}/_staging/{self.run_id}")
