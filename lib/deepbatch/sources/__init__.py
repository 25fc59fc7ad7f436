"""Where records come from: one reader per source kind behind :class:`SourceReader`.

A reader lists what it would read and fingerprints it (the pipeline's skip check), lands it as the bronze
table with lineage (acquire), and surveys it for ``deepbatch check``. File kinds (``files`` and the record
formats jsonl, json, csv, parquet) share the landing-folder machinery of :mod:`.files`; ``table`` (a Spark
catalog table or SQL query) and ``jdbc`` (a database through Spark's JDBC reader) read no files. A new
record format is one class in :mod:`.records`; a new kind of source is one module with one class,
named in ``READERS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from deepbatch.config import Conf, SourceConf
from deepbatch.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from deepbatch.commit import Commit
    from deepbatch.sources.files import Ingested
    from deepbatch.sources.survey import Sample, SourceCheck


@dataclass(frozen=True)
class Source:
    """A declared source, resolved: its role follows from its kind and field mapping."""

    name: str
    kind: str  # a key of READERS
    landing: str  # file kinds: a folder under <data_root>/landing, or a URI
    glob: str
    id_from: str  # files: stem | path; records: field | line
    id_field: str  # records with id_from field: the field holding the id (else empty)
    text_field: str
    label_field: str
    metadata: tuple[str, ...]
    media: str | None  # the modality of the tasks that read its content (None: a label table)
    delimiter: str = ","  # csv
    table: str = ""  # table, jdbc: the table to read
    query: str = ""  # table, jdbc: a query to read instead
    url: str = ""  # jdbc
    driver: str = ""  # jdbc: the driver class
    user_env: str = ""  # jdbc: the environment variables holding the credentials
    password_env: str = ""
    credentials_file: str = ""  # jdbc: a file of user=... and password=... lines instead
    updated_at: str = ""  # table, jdbc: a column whose newest value (with the row count) proves the source unchanged

    @property
    def role(self) -> str:
        """files (media files), records (text records) or labels (a label table)."""
        if reader_of(self).media_files:
            return "files"
        return "records" if self.text_field else "labels"

    @property
    def reads_files(self) -> bool:
        return reader_of(self).reads_files

    def folder(self, conf: Conf) -> str:
        """Where its landing files are: a URI or absolute path as given, else under <data_root>/landing (for a source
        that reads no files, the name it is shown under)."""
        if not self.reads_files:
            return f"{self.kind}:{self.query and 'query' or self.table}"
        if "://" in self.landing or self.landing.startswith("/"):
            return self.landing.rstrip("/")
        return conf.path("landing", self.landing.strip("/"))


@dataclass(frozen=True)
class Fingerprint:
    """What a source holds now, for the pipeline's skip check; ``value`` None: it cannot prove it is unchanged (``why``)."""

    value: str | None
    why: str = ""


@runtime_checkable
class SourceReader(Protocol):
    """One kind of source (conf key ``sources.<name>.kind``)."""

    @property
    def kind(self) -> str: ...
    @property
    def reads_files(self) -> bool:
        """Whether it reads files under a landing folder (listing, incremental mode, the file manifest)."""
    @property
    def media_files(self) -> bool:
        """Whether each file is one record of media (images, clips, documents) rather than a file of records."""
    @property
    def default_glob(self) -> str:
        """The files a record-file kind reads by default ("" where the modality decides, or nothing is listed)."""
    @property
    def kept_bytes(self) -> str | None:
        """The bronze column that keeps a record's bytes exactly as they landed (quarantine keeps it too); None: raw_record says it all."""

    def check_conf(self, name: str, sc: SourceConf) -> None:
        """Its conf keys, each mistake named by key with the fix (ConfigError)."""
    def fingerprint(self, spark: SparkSession | None, conf: Conf, src: Source) -> Fingerprint:
        """What it holds now, cheaply; the same value means the same records."""
    def land(self, spark: SparkSession, conf: Conf, commit: Commit, src: Source, run_date: str, seen: Ingested,
             all_sources: tuple[Source, ...]) -> DataFrame | None:
        """Stage bronze/<source> in ``commit`` with its manifest; returns its rows of the file manifest (None: no files).
        ``seen`` is what earlier run dates ingested (incremental mode), ``all_sources`` those that may share its folder."""
    def survey(self, conf: Conf, src: Source, all_sources: tuple[Source, ...], spark: Any) -> tuple[SourceCheck, Sample]:
        """``deepbatch check``: what acquire would land, the fields and labels found, and findings by conf key."""


# Each module ends with its readers as typed instances, so mypy holds every class to the protocol.
READERS: Mapping[str, str] = {
    "files": "deepbatch.sources.files:FILES",
    "jsonl": "deepbatch.sources.records:JSONL",
    "json": "deepbatch.sources.records:JSON",
    "csv": "deepbatch.sources.records:CSV",
    "parquet": "deepbatch.sources.records:PARQUET",
    "table": "deepbatch.sources.table:TABLE",
    "jdbc": "deepbatch.sources.jdbc:JDBC",
}
SOURCE_KINDS = tuple(READERS)
_LOADED: dict[str, SourceReader] = {}


def reader(kind: str) -> SourceReader:
    """The reader of source kind ``kind``."""
    if kind not in READERS:
        raise ConfigError(f"unknown source kind {kind!r}: one of {', '.join(READERS)}")
    if kind not in _LOADED:
        module, _, name = READERS[kind].partition(":")
        _LOADED[kind] = getattr(importlib.import_module(module), name)
    return _LOADED[kind]


def reader_of(src: Source) -> SourceReader:
    return reader(src.kind)


def bronze_schema(src: Source) -> StructType:
    """The source's bronze table (a pyspark StructType)."""
    from deepbatch.schemas import tables as T

    if src.role == "files":
        return T.BRONZE_FILES
    return T.bronze_records(src.role == "records", src.metadata, raw_bytes=kept_bytes(src) == "raw_bytes")


def kept_bytes(src: Source) -> str | None:
    """The bronze column quarantine keeps a rejected record's raw bytes from (None: its raw_record text says it all)."""
    return reader_of(src).kept_bytes
