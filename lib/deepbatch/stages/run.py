"""Stage runners: read inputs, apply the stage's transformations, stage, check, publish.

Each ``run_<stage>(spark, conf, run_date)`` is what the CLI and the jobs call,
and what the integration tests call with an injected session and conf. It
returns the stage manifest (also written under ``manifests/run_date=…/``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import reduce
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from deepbatch.catalog import Task, content_modality, extensions, label_classes, silver_schema, sources, tasks
from deepbatch.commit import Commit
from deepbatch.config import Conf
from deepbatch.errors import QuarantineThresholdExceeded
from deepbatch.manifests import TableCounts
from deepbatch.quality import flag_parse_errors, quarantine_rows, reason_counts, start_checks, valid_rows
from deepbatch.schemas import tables as T
from deepbatch.session import describe_job
from deepbatch.sources import Source, bronze_schema, kept_bytes, reader_of
from deepbatch.sources.files import Ingested
from deepbatch.stages import clean as C
from deepbatch.stages import integrate as I
from deepbatch.storage import listing_base
from deepbatch.tables import read_partition

log = logging.getLogger(__name__)


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
        all_sources = sources(conf)
        landed = [reader_of(src).land(spark, conf, commit, src, run_date, seen, all_sources) for src in all_sources]
        entries = [e for e in landed if e is not None]
        manifest = reduce(DataFrame.unionByName, entries) if entries else spark.createDataFrame([], T.BRONZE_FILE_MANIFEST)
        n_files = commit.stage_table("bronze/_files", manifest, T.BRONZE_FILE_MANIFEST)
        commit.add_manifest(TableCounts("bronze/_files", n_files, n_files, extra={"mode": conf.acquire.mode}))
    return commit.summary


def _clean_check(conf: Conf, src: Source) -> Callable[[DataFrame], DataFrame]:
    """The checks of a source by its role: its media's (files), text records' (with its label classes), or a label table's."""
    classes = label_classes(conf, src.name)
    if src.role == "labels":
        return lambda df: C.check_labels(df, classes)
    modality = content_modality(src)
    check = lambda df: modality.check(df, conf, classes, src.metadata, bool(src.label_field))  # noqa: E731
    if src.role != "files":
        return check
    # Files acquire did not read (parse_error set, no content) keep acquire's reason, whatever the modality's checks.
    unread = F.col("parse_error").isNotNull()
    return lambda df: df.where(unread).transform(start_checks()).transform(flag_parse_errors()).unionByName(
        check(df.where(~unread)), allowMissingColumns=True)


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


def _labelled_content(spark: SparkSession, conf: Conf, task: Task, run_date: str) -> tuple[DataFrame, DataFrame | None, list[str]]:
    """The task's silver content with a label column (from its own field, its folder, or joined later from a label
    table), that label table (or None) and the silver paths read."""
    src = task.source
    content_path = conf.path("silver", src.name)
    content = read_partition(spark, content_path, run_date, silver_schema(src))
    if task.labels == "folder":
        classes = None if task.classes is None else list(task.classes)
        content = content.transform(I.folder_labels(classes, listing_base(src.folder(conf))))
    if task.label_table is None:
        return content, None, [content_path]
    labels_path = conf.path("silver", task.label_table.name)
    labels = read_partition(spark, labels_path, run_date, T.SILVER_LABELS)
    if src.role == "files":  # a label table may name files with their extension or folders: cat/001.png labels 001
        labels = labels.transform(I.as_file_ids(extensions(src), keep_folders=src.id_from == "path"))
    return content, labels, [content_path, labels_path]


def _stage_orphans(commit: Commit, task: Task, content: DataFrame, labels: DataFrame, labels_path: str, labelled: int) -> int:
    """Label rows with no content go to quarantine/integrate/<label source>; the others labelled ``labelled`` gold rows.
    Returns the labels read."""
    labels_src = task.label_table.name if task.label_table else ""
    qtable = f"quarantine/integrate/{labels_src}"
    n_orphan = commit.stage_table(qtable, I.orphan_labels(labels, content, labels_src), T.QUARANTINE)
    n_labels = labels.count()
    commit.add_manifest(TableCounts(qtable, n_labels, labelled, {"ORPHAN_LABEL": n_orphan} if n_orphan else {}, inputs=[labels_path]))
    return n_labels


def _integrate_task(spark: SparkSession, conf: Conf, commit: Commit, task: Task, run_date: str) -> None:
    import json

    describe_job(spark, "integrate", task.name, run_date)
    content, labels, inputs = _labelled_content(spark, conf, task, run_date)
    joined = content.transform(I.join_labels(labels)) if labels is not None else content
    classes = list(task.classes) if task.classes is not None else I.discovered_classes(joined)
    gold = I.build_task_table(joined, None, classes, task.split.train, task.split.val, task.split.seed)
    table = f"gold/{task.name}"
    n_in = content.count()
    n_out = commit.stage_table(table, gold, task.gold_schema())
    staged = spark.read.parquet(commit.staged_path(table))
    split_counts = {r["split"]: int(r["count"]) for r in staged.groupBy("split").count().collect()}
    extra: dict[str, Any] = {"splits": dict(sorted(split_counts.items())), "classes": classes,
                             "classes_from": "conf" if task.classes is not None else "auto"}
    if labels is not None:
        labelled = n_out - split_counts.get(I.UNLABELLED, 0)
        extra["labels_in"] = _stage_orphans(commit, task, content, labels, inputs[1], labelled)
    commit.add_manifest(TableCounts(table, n_in, n_out, inputs=inputs, extra=extra))
    commit.add_file(table, "_class_map.json", json.dumps(I.class_map(classes), indent=2))
    if task.classes is None:
        log.info("integrate %s: classes discovered from the labelled rows (classes: auto): %s", task.name, ", ".join(classes) or "none")
    log.debug("integrate %-9s in=%d out=%d splits=%s", task.name, n_in, n_out, extra["splits"])


def run_integrate(spark: SparkSession, conf: Conf, run_date: str) -> dict[str, Any]:
    """silver -> gold/<task> for every trained task, with class index and hash split; orphan labels to quarantine."""
    with Commit.for_stage(spark, conf, "integrate", run_date) as commit:
        for task in tasks(conf):
            if task.trained:
                _integrate_task(spark, conf, commit, task, run_date)
    return commit.summary
