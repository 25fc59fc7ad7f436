"""Stage runners: read inputs, apply the stage's transformations, stage, check, publish.

Each ``run_<stage>(spark, conf, run_date)`` is what the CLI and the jobs call,
and what the integration tests call with an injected session and conf. It
returns the stage manifest (also written under ``manifests/run_date=…/``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from deepbatch.catalog import Source, bronze_schema, content_modality, kept_bytes, label_classes, silver_schema, sources
from deepbatch.commit import Commit
from deepbatch.config import Conf
from deepbatch.errors import MissingInputError, QuarantineThresholdExceeded
from deepbatch.manifests import TableCounts
from deepbatch.quality import quarantine_rows, reason_counts, valid_rows
from deepbatch.schemas import tables as T
from deepbatch.session import describe_job
from deepbatch.stages import clean as C
from deepbatch.stages import integrate as I
from deepbatch.stages.acquire import read_source, source_files
from deepbatch.storage import FileEntry, Storage, file_sha256, listing_base
from deepbatch.tables import read_partition

log = logging.getLogger(__name__)


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


def _file_entries(spark: SparkSession, src: Source, listing: list[FileEntry], bronze: DataFrame | None,
                  file_hashes: dict[str, str], run_date: str) -> DataFrame:
    """bronze/_files rows for the files this run ingested from one source."""
    meta = spark.createDataFrame([(f.path, f.size, f.mtime_ms) for f in listing], "path string, size long, mtime_ms long")
    if bronze is not None:  # file sources: the bronze rows carry each file's content hash
        hashes = bronze.select(F.col("source_path").alias("path"), "content_hash").distinct()
    else:  # record sources: few, larger files, hashed on the driver
        hashes = spark.createDataFrame([(f.path, file_hashes[f.path]) for f in listing], "path string, content_hash string")
    return meta.join(hashes, "path").select(F.lit(src.name).alias("source"), "path", "size", "mtime_ms", "content_hash",
                                            F.lit(run_date).alias("ingest_run_date"))


def _new_files(src: Source, listing: list[FileEntry], seen: Ingested) -> tuple[list[FileEntry], dict[str, str]]:
    """The files this run lands (incremental: those no earlier run date ingested) and, for record
    sources, their content hashes (few, larger files, hashed once here; file sources' hashes come
    with their bronze rows)."""
    if seen.keys:
        listing = [f for f in listing if (f.path, f.size, f.mtime_ms) not in seen.keys]
    file_hashes = {f.path: file_sha256(f.path) for f in listing} if src.kind != "files" else {}
    if seen.keys and src.kind != "files":  # touched but unchanged record files are not new
        listing = [f for f in listing if (f.path, file_hashes[f.path]) not in seen.hashes]
    return listing, file_hashes


def _land_source(spark: SparkSession, conf: Conf, commit: Commit, src: Source, seen: Ingested, run_date: str) -> DataFrame:
    """Stage bronze/<source> for one source; returns its file-manifest rows."""
    path = src.folder(conf)
    if not Storage(spark).exists(path):
        raise MissingInputError(
            f"landing folder {path} of source {src.name!r} does not exist. Put its files there, point "
            f"'sources.{src.name}.path' (or data_root) at them, or remove the source (an overlay says 'sources: {{{src.name}: null}}'); "
            "for the demo, `deepbatch demo-data` builds the landing zone."
        )
    describe_job(spark, "acquire", src.name, run_date)
    sharing = tuple(o for o in sources(conf) if o.folder(conf) == path)
    listing, file_hashes = _new_files(src, source_files(src, path, sharing), seen)
    schema = bronze_schema(src)
    df = read_source(spark, src, path, run_date, listing, everything=not seen.keys and len(sharing) == 1)
    if seen.hashes and src.kind == "files":
        touched = spark.createDataFrame(sorted(seen.hashes), "source_path string, content_hash string")
        df = df.join(F.broadcast(touched), ["source_path", "content_hash"], "left_anti")
    n_in = df.count()
    table = f"bronze/{src.name}"
    n_out = commit.stage_table(table, df, schema)
    bronze = spark.read.parquet(commit.staged_path(table)) if src.kind == "files" else None
    extra = {"mode": conf.acquire.mode, "files": len(listing)}
    commit.add_manifest(TableCounts(table, n_in, n_out, inputs=[path], extra=extra))
    log.debug("acquire %-13s %7d records landed from %d files", src.name, n_out, len(listing))
    return _file_entries(spark, src, listing, bronze, file_hashes, run_date)


def run_acquire(spark: SparkSession, conf: Conf, run_date: str) -> dict[str, Any]:
    """Land every source as bronze/<source>/run_date=D; records in = records out.

    Every file under a source's landing folder becomes at least one bronze row: files whose
    format deepbatch cannot use are landed too, and clean quarantines them with a reason.
    In incremental mode (``acquire.mode``) only landing files that no earlier run date
    ingested are read: a file whose (path, size, mtime) is in the file manifest is not
    opened, and a file whose (path, content hash) is, was only touched and is skipped.
    """
    with Commit.for_stage(spark, conf, "acquire", run_date) as commit:
        incremental = conf.acquire.mode == "incremental"
        seen = Ingested.load(spark, conf, run_date) if incremental else Ingested(frozenset(), frozenset())
        entries = [_land_source(spark, conf, commit, src, seen, run_date) for src in sources(conf)]
        manifest = reduce(DataFrame.unionByName, entries)
        n_files = commit.stage_table("bronze/_files", manifest, T.BRONZE_FILE_MANIFEST)
        commit.add_manifest(TableCounts("bronze/_files", n_files, n_files, extra={"mode": conf.acquire.mode}))
    return commit.summary


def _clean_check(conf: Conf, src: Source) -> Callable[[DataFrame], DataFrame]:
    """The checks of a source by its role: its media's (files), text records' (with its label classes), or a label table's."""
    classes = label_classes(conf, src.name)
    if src.role == "labels":
        return lambda df: C.check_labels(df, classes)
    modality = content_modality(src)
    return lambda df: modality.check(df, conf, classes, src.metadata, bool(src.label_field))


def _check_threshold(counts: TableCounts, limit: float) -> None:
    if counts.quarantined_fraction > limit:
        raise QuarantineThresholdExceeded(
            f"{counts.table}: {sum(counts.quarantined.values())} of {counts.records_in} records "
            f"({counts.quarantined_fraction:.1%}) were quarantined, above quality.max_quarantine_fraction="
            f"{limit:.1%}; by reason {counts.quarantined}. Nothing was published. Inspect the rejected "
            "records in the staging quarantine output or raise the limit with "
            "quality.max_quarantine_fraction=<value>."
        )


def run_clean(spark: SparkSession, conf: Conf, run_date: str) -> dict[str, Any]:
    """bronze -> silver + quarantine/clean, with reconciliation and the quarantine threshold."""
    with Commit.for_stage(spark, conf, "clean", run_date) as commit:
        for src in sources(conf):
            source = src.name
            describe_job(spark, "clean", source, run_date)
            bronze_path = conf.path("bronze", source)
            bronze = read_partition(spark, bronze_path, run_date, bronze_schema(src))
            n_in = bronze.count()
            # The checks run Python UDFs (decoding): persist so they run once per record.
            checked = bronze.transform(_clean_check(conf, src)).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                _, quarantined, deduplicated = reason_counts(checked)
                table = f"silver/{source}"
                qtable = f"quarantine/clean/{source}"
                n_out = commit.stage_table(table, checked.transform(valid_rows()), silver_schema(src))
                counts = TableCounts(table, n_in, n_out, quarantined, deduplicated, inputs=[bronze_path])
                counts.reconcile()
                _check_threshold(counts, conf.quality.max_quarantine_fraction)
                n_q = commit.stage_table(qtable, checked.transform(quarantine_rows("clean", source, kept_bytes(src))), T.QUARANTINE)
                commit.add_manifest(counts)
                rejected = {**quarantined, **deduplicated}
                commit.add_manifest(TableCounts(qtable, sum(rejected.values()), n_q, extra={"by_reason": rejected}))
            finally:
                checked.unpersist()
            log.debug(
                "clean   %-13s in=%d out=%d quarantined=%s deduplicated=%s",
                source, n_in, n_out, quarantined or "{}", deduplicated or "{}",
            )
    return commit.summary


def _labelled_content(spark: SparkSession, conf: Conf, task: str, run_date: str) -> tuple[DataFrame, DataFrame | None, list[str]]:
    """The task's silver content with a label column (from its own field, its folder, or joined later from a label
    table), that label table (or None) and the silver paths read."""
    from deepbatch.catalog import classes_of, label_source, source

    tc = conf.task(task)
    content_path = conf.path("silver", tc.source)
    content = read_partition(spark, content_path, run_date, silver_schema(source(conf, tc.source)))
    if tc.labels == "folder":
        base = listing_base(source(conf, tc.source).folder(conf))
        content = content.transform(I.folder_labels(classes_of(conf, task), base))
    labels_src = label_source(conf, task)
    if labels_src is None:
        return content, None, [content_path]
    labels_path = conf.path("silver", labels_src)
    labels = read_partition(spark, labels_path, run_date, T.SILVER_LABELS)
    src = source(conf, tc.source)
    if src.kind == "files":  # a label table may name files with their extension or folders: cat/001.png labels 001
        from deepbatch.catalog import extensions

        labels = labels.transform(I.as_file_ids(extensions(src), keep_folders=src.id_from == "path"))
    return content, labels, [content_path, labels_path]


def _stage_orphans(commit: Commit, conf: Conf, task: str, content: DataFrame, labels: DataFrame, labels_path: str, labelled: int) -> int:
    """Label rows with no content go to quarantine/integrate/<label source>; the others labelled ``labelled`` gold rows.
    Returns the labels read."""
    from deepbatch.catalog import label_source

    labels_src = str(label_source(conf, task))
    qtable = f"quarantine/integrate/{labels_src}"
    n_orphan = commit.stage_table(qtable, I.orphan_labels(labels, content, labels_src), T.QUARANTINE)
    n_labels = labels.count()
    commit.add_manifest(TableCounts(qtable, n_labels, labelled, {"ORPHAN_LABEL": n_orphan} if n_orphan else {}, inputs=[labels_path]))
    return n_labels


def _integrate_task(spark: SparkSession, conf: Conf, commit: Commit, task: str, run_date: str) -> None:
    import json

    from deepbatch.catalog import classes_of, gold_schema

    describe_job(spark, "integrate", task, run_date)
    content, labels, inputs = _labelled_content(spark, conf, task, run_date)
    joined = content.transform(I.join_labels(labels)) if labels is not None else content
    declared = classes_of(conf, task)
    classes = declared if declared is not None else I.discovered_classes(joined)
    split = conf.split_of(task)
    gold = I.build_task_table(joined, None, classes, split.train, split.val, split.seed)
    table = f"gold/{task}"
    n_in = content.count()
    n_out = commit.stage_table(table, gold, gold_schema(conf, task))
    staged = spark.read.parquet(commit.staged_path(table))
    split_counts = {r["split"]: int(r["count"]) for r in staged.groupBy("split").count().collect()}
    extra: dict[str, Any] = {"splits": dict(sorted(split_counts.items())), "classes": classes, "classes_from": "conf" if declared else "auto"}
    if labels is not None:
        labelled = n_out - split_counts.get(I.UNLABELLED, 0)
        extra["labels_in"] = _stage_orphans(commit, conf, task, content, labels, inputs[1], labelled)
    commit.add_manifest(TableCounts(table, n_in, n_out, inputs=inputs, extra=extra))
    commit.add_file(table, "_class_map.json", json.dumps(I.class_map(classes), indent=2))
    if declared is None:
        log.info("integrate %s: classes discovered from the labelled rows (classes: auto): %s", task, ", ".join(classes) or "none")
    log.debug("integrate %-9s in=%d out=%d splits=%s", task, n_in, n_out, extra["splits"])


def run_integrate(spark: SparkSession, conf: Conf, run_date: str) -> dict[str, Any]:
    """silver -> gold/<task> for every trained task, with class index and hash split; orphan labels to quarantine."""
    from deepbatch.catalog import trained_tasks

    with Commit.for_stage(spark, conf, "integrate", run_date) as commit:
        for task in trained_tasks(conf):
            _integrate_task(spark, conf, commit, task, run_date)
    return commit.summary
