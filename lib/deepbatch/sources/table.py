"""kind table: records from a Spark catalog table (``table: db.reviews``) or a Spark SQL query (``query: SELECT ...``).

Fields are mapped by name as for record files, each value read as a string; the lineage names the table (or the
query's hash) instead of a file. A table cannot prove it is unchanged unless the conf declares ``updated_at``: a
column whose newest value, with the row count, changes whenever rows are added or updated. Without it the
pipeline always runs acquire for the source, and says why.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from deepbatch.commit import Commit
from deepbatch.config import Conf, SourceConf
from deepbatch.errors import ConfigError, SourceUnavailableError
from deepbatch.manifests import TableCounts
from deepbatch.session import describe_job
from deepbatch.sources import Fingerprint, Source, SourceReader, bronze_schema
from deepbatch.sources.files import Ingested
from deepbatch.sources.records import ids_of, mapped_columns, missing_fields, record_fields
from deepbatch.sources.survey import SAMPLE_RECORDS, Finding, Sample, SourceCheck, check_fields, note

log = logging.getLogger(__name__)

FILE_KEYS = ("path", "glob", "delimiter")  # keys of file sources that mean nothing here


class TableReader:
    """A table or query, read through Spark; the base of the database kinds (:mod:`deepbatch.sources.jdbc`)."""

    kind = "table"
    reads_files = False
    media_files = False
    default_glob = ""
    kept_bytes = None
    foreign_keys: tuple[str, ...] = ("url", "driver", "user_env", "password_env", "credentials_file")  # the database kinds' keys

    def check_conf(self, name: str, sc: SourceConf) -> None:
        key = f"sources.{name}"
        if bool(sc.table) == bool(sc.query):
            raise ConfigError(f"source {name!r} (kind {sc.kind}) needs exactly one of '{key}.table' (a table name) or '{key}.query' "
                              "(a SELECT statement)")
        if sc.id not in ("", "field"):
            raise ConfigError(f"conf key '{key}.id' must be field for kind {sc.kind} (fields.id names the column holding the id), "
                              f"got {sc.id!r}")
        for k in FILE_KEYS:
            if getattr(sc, k) not in ("", ","):
                raise ConfigError(f"conf key '{key}.{k}' is for file sources; sources.{name} is kind {sc.kind}: remove it")
        for k in self.foreign_keys:
            if getattr(sc, k):
                raise ConfigError(f"conf key '{key}.{k}' is for kind jdbc; sources.{name} is kind {sc.kind} (read through Spark's catalog)")

    def where(self, src: Source) -> str:
        """The source's lineage: its table, or its query's hash (source_path of its bronze rows)."""
        return f"{self.kind}:{src.table}" if src.table else f"{self.kind}:query-{hashlib.sha256(src.query.encode()).hexdigest()[:12]}"

    def frame(self, spark: SparkSession, conf: Conf, src: Source, query: str | None = None) -> DataFrame:
        """The source's rows (or ``query`` over them, with the source as ``src``) as a Spark DataFrame."""
        try:
            df = spark.table(src.table) if src.table else spark.sql(src.query)
            if query is not None:
                df.createOrReplaceTempView("_deepbatch_src")
                df = spark.sql(query.replace("{src}", "_deepbatch_src"))
            return df
        except Exception as e:  # noqa: BLE001 - Spark's analysis errors name the missing table; say which conf key to fix
            raise SourceUnavailableError(f"source {src.name!r}: cannot read {self._named(src)}: {first_error_line(e)}. Fix "
                                         f"'sources.{src.name}.{'table' if src.table else 'query'}'") from e

    def _named(self, src: Source) -> str:
        return f"table {src.table}" if src.table else "its query"

    def fingerprint(self, spark: SparkSession | None, conf: Conf, src: Source) -> Fingerprint:
        """The row count and the newest ``updated_at`` value, when the conf declares that column; else unprovable."""
        if not src.updated_at:
            return Fingerprint(None, f"source {src.name!r} ({self.kind}) cannot prove it is unchanged: declare "
                                     f"'sources.{src.name}.updated_at' (a column that changes with every added or updated row)")
        if spark is None:
            return Fingerprint(None, f"source {src.name!r}: no Spark session to count its rows")
        row = self.frame(spark, conf, src, f"SELECT COUNT(*) AS n, MAX({src.updated_at}) AS newest FROM {{src}}").first()
        return Fingerprint(f"rows={row['n']} newest={row['newest']}" if row else None, "" if row else "no rows counted")

    def bronze(self, df: DataFrame, src: Source, run_date: str) -> DataFrame:
        """Rows -> bronze record rows: the mapped fields as strings, the mapped values as the raw record, the table as lineage."""
        why = missing_fields(src, list(df.columns), self._named(src))
        if why:
            raise SourceUnavailableError(f"source {src.name!r}: {why.split(': ', 1)[1]}")
        pairs = record_fields(src)
        mapped = mapped_columns(lambda f: F.col(f"`{f}`"), pairs)
        ids = [F.col(f"`{i}`").cast("string").alias(i) for i in ids_of(src.id_field)]
        raw = F.to_json(F.struct(*ids, *[c for c, (f, _) in zip(mapped, pairs, strict=True) if f]))
        changed = F.col(f"`{src.updated_at}`").cast("timestamp") if src.updated_at else F.lit(None).cast("timestamp")
        return df.select(
            (ids[0] if ids else F.lit(None).cast("string")).alias("record_id"), *mapped, raw.alias("raw_record"),
            F.lit(None).cast("string").alias("parse_error"), F.lit(self.where(src)).alias("source_path"),
            F.lit(None).cast("long").alias("file_size"), changed.alias("modification_time"), F.lit(run_date).alias("ingest_run_date"),
            F.sha2(raw, 256).alias("content_hash"), F.lit(None).cast("long").alias("source_line"))

    def land(self, spark: SparkSession, conf: Conf, commit: Commit, src: Source, run_date: str, seen: Ingested,
             all_sources: tuple[Source, ...]) -> DataFrame | None:
        """Stage bronze/<source> from every row the table or query holds now (a snapshot: acquire.mode is for files)."""
        describe_job(spark, "acquire", src.name, run_date)
        df = self.bronze(self.frame(spark, conf, src), src, run_date).select(*bronze_schema(src).names)
        table = f"bronze/{src.name}"
        n_out = commit.stage_table(table, df, bronze_schema(src))
        n_in = n_out  # one bronze row per row read: nothing is dropped on the way
        commit.add_manifest(TableCounts(table, n_in, n_out, inputs=[self.where(src)], extra={"kind": self.kind}))
        log.debug("acquire %-13s %7d records landed from %s", src.name, n_out, self.where(src))
        return None

    def survey(self, conf: Conf, src: Source, all_sources: tuple[Source, ...], spark: Any) -> tuple[SourceCheck, Sample]:
        """Connect, count the rows and sample the fields (``deepbatch check``)."""
        sc, sample = SourceCheck(src.name, src.kind, self.where(src)), Sample()
        try:
            df = self.frame(spark(), conf, src)
            sc.records = int(df.count())
            sample.keys.update(df.columns)
            for row in df.limit(SAMPLE_RECORDS).collect():
                note(sc, sample, src, {k: (None if v is None else str(v)) for k, v in row.asDict().items()})
        except (SourceUnavailableError, ConfigError) as e:  # unreachable, missing, or credentials not given: acquire would stop
            sc.findings.append(Finding("problem", f"sources.{src.name}", str(e)))
            return sc, sample
        check_fields(sc, src, sample)
        return sc, sample


def first_error_line(e: BaseException) -> str:
    """The first line of an error, without the stack trace; for a Java error through Py4J, the Java exception's own
    (``org.postgresql.util.PSQLException: Connection to 127.0.0.1:1 refused``), not Py4J's "An error occurred while calling"."""
    java = getattr(e, "java_exception", None)
    text = str(java.toString() if java is not None else e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


TABLE: SourceReader = TableReader()
