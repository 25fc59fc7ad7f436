"""The infer stage: score each task's rows with the predictor cores under Spark.

Outputs, one per task (conf key ``tasks``), each staged and published atomically with a manifest:

- a trained image task: ``predictions/<task>``, top-k labels of its gold rows
- an inference-only image task (model: imagenet): ``predictions/<task>``, ImageNet top-k of its source's silver images
- a text task: ``predictions/<task>``, class probabilities and the predicted label
- a video task: ``predictions/<task>``, one row per clip (clip label and probabilities), and
  ``predictions/<task>_frames``, one row per sampled frame (features and ImageNet top-1)

Every input row gives exactly one output row (one clip row per clip); a row the
model could not use carries its ``error`` reason instead of a prediction. The
manifest counts rows by error reason, records accuracy on labelled rows by
split, and reports the Python workers that ran the model (model loads per
worker, rows, peak memory).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from deepbatch.catalog import Task, silver_schema
from deepbatch.catalog import task as resolve_task
from deepbatch.commit import Commit
from deepbatch.config import Conf
from deepbatch.cores.common import check_model_files, local_path, model_for_run
from deepbatch.errors import ConfigError, MissingInputError
from deepbatch.infer.reporting import top_prediction
from deepbatch.infer.spark import WorkerStatsParam, frames_fn, series_udf, summarise_workers
from deepbatch.manifests import TableCounts
from deepbatch.modality import CoreSpec, InferPlan
from deepbatch.progress import SparkProgress
from deepbatch.report.predictions import Preview
from deepbatch.schemas import tables as T
from deepbatch.session import describe_job
from deepbatch.storage import Storage
from deepbatch.tables import partition_path, read_partition

log = logging.getLogger(__name__)


def models_root(conf: Conf) -> str:
    root = conf.path("models")
    if "://" in root and not root.startswith("file:"):
        raise ConfigError(f"trained models are read with local file I/O on the executors; {root} is not local. "
                          "Use a shared mount (file://) for data_root.")
    # Absolute on the driver: executors run in their own working directories.
    return os.path.abspath(local_path(root))


def _partitions(spark: SparkSession, rows: int, rows_per_task: int) -> int:
    return max(spark.sparkContext.defaultParallelism, math.ceil(rows / rows_per_task), 1)


def _error_counts(df: DataFrame) -> dict[str, int]:
    reason = F.split(F.col("error"), ":").getItem(0)
    return {r["reason"]: int(r["count"]) for r in df.where(F.col("error").isNotNull()).groupBy(reason.alias("reason")).count().collect()}


def _accuracy(df: DataFrame, predicted: F.Column) -> dict[str, dict[str, float]]:
    """Top-1 accuracy on rows with a gold label, by split."""
    rows = (
        df.where(F.col("label").isNotNull() & F.col("error").isNull())
        .groupBy("split")
        .agg(F.count("*").alias("n"), F.avg((predicted == F.col("label")).cast("double")).alias("accuracy"))
        .collect()
    )
    return {r["split"]: {"n": int(r["n"]), "accuracy": round(float(r["accuracy"]), 4)} for r in sorted(rows, key=lambda r: str(r["split"]))}


class _Scoring:
    """Arrow batch size, job group, progress and the worker accumulator around one target's Spark job."""

    def __init__(self, spark: SparkSession, conf: Conf, run_date: str, target: str, total: int, arrow_batch: int):
        self.spark, self.conf, self.run_date, self.target, self.total = spark, conf, run_date, target, total
        self.arrow_batch = arrow_batch
        self.stats = spark.sparkContext.accumulator({}, WorkerStatsParam())
        self.seconds = 0.0

    def run(self, action: Any) -> Any:
        key = "spark.sql.execution.arrow.maxRecordsPerBatch"
        before = self.spark.conf.get(key, None)
        self.spark.conf.set(key, str(self.arrow_batch))
        describe_job(self.spark, "infer", self.target, self.run_date)
        t0 = time.monotonic()
        try:
            with SparkProgress(self.spark, f"deepbatch-infer-{self.run_date}", f"infer {self.target}", self.total,
                               self.conf.infer.progress_seconds):
                return action()
        finally:
            self.seconds = time.monotonic() - t0
            if before is None:
                self.spark.conf.unset(key)
            else:
                self.spark.conf.set(key, before)

    def extra(self, model_dir: str, version: str | None = None) -> dict[str, Any]:
        return {
            "model_dir": model_dir,
            "model_version": version,
            "seconds": round(self.seconds, 1),
            "records_per_s": round(self.total / self.seconds, 1) if self.seconds else None,
            "arrow_batch": self.arrow_batch,
            "workers": summarise_workers(self.stats.value),
        }


def _read_gold(spark: SparkSession, task: Task, run_date: str) -> tuple[DataFrame, str]:
    if not Storage(spark).exists(partition_path(task.gold, run_date)):
        raise MissingInputError(f"no gold/{task.name} partition for run_date={run_date}: run `deepbatch integrate --run-date {run_date}` first.")
    return read_partition(spark, task.gold, run_date, task.gold_schema()), task.gold


def _silver_input(spark: SparkSession, conf: Conf, run_date: str, task: Task, column: str) -> tuple[DataFrame, str]:
    """An inference-only task's input: its source's silver rows (``column``), with no split or label."""
    src = task.source
    path = conf.path("silver", src.name)
    if not Storage(spark).exists(partition_path(path, run_date)):
        raise MissingInputError(f"no silver/{src.name} partition for run_date={run_date} (task {task.name}): run acquire and clean first.")
    rows = read_partition(spark, path, run_date, silver_schema(src))
    return rows.select("record_id", column, F.lit(None).cast("string").alias("split"), F.lit(None).cast("string").alias("label")), path


class _Target:
    """One task being scored: its plan, input rows and the stage's commit."""

    def __init__(self, spark: SparkSession, conf: Conf, run_date: str, commit: Commit, task: Task, plan: InferPlan, df: DataFrame,
                 inputs: list[str]):
        self.spark, self.conf, self.run_date, self.commit, self.task = spark, conf, run_date, commit, task.name
        self.plan, self.df, self.inputs = plan, df, inputs
        self.modality = task.modality
        self.spec = CoreSpec(plan.kind, plan.model_dir, tuple(sorted(plan.options.items())), conf.infer.device, conf.infer.threads_per_task)

    def scoring(self, total: int) -> _Scoring:
        return _Scoring(self.spark, self.conf, self.run_date, self.task, total, self.plan.arrow_batch or self.conf.infer.arrow_batch)

    def partitions(self, rows: int) -> int:
        return _partitions(self.spark, rows, self.plan.rows_per_task or self.conf.infer.rows_per_task)

    def finish(self, job: _Scoring, table: str, staged: DataFrame, n_in: int, n_out: int, source: DataFrame, **more: Any) -> dict[str, Any]:
        """The manifest (reconciled), the class order and the report part of the target's predictions table."""
        version = staged.select("model_version").first()
        extra = job.extra(self.plan.model_dir, version[0] if version else None)
        extra.update(errors_by_reason=_error_counts(staged), accuracy_by_split=_accuracy(staged, top_prediction(staged)[0]), **more)
        extra.update(self.plan.extra)
        counts = TableCounts(table, n_in, n_out, inputs=self.inputs, extra=extra)
        counts.reconcile()
        self.commit.add_manifest(counts)
        if self.plan.classes is not None:
            self.commit.add_file(table, "_classes.json", json.dumps(self.plan.classes))
        _stage_report_part(self.commit, self.conf, self.run_date, staged, source, self.plan.column, self.task, self.modality.preview, n_out,
                           extra)
        log.debug("infer   %-10s %d records in %.1f s (%s records/s), errors %s, accuracy %s", self.task, n_out, job.seconds,
                  extra["records_per_s"], extra["errors_by_reason"] or "{}", extra["accuracy_by_split"] or "-")
        return extra


def _score_series(t: _Target) -> None:
    """One prediction row per input row, through an iterator pandas UDF over the plan's column."""
    n_in = t.df.count()
    job = t.scoring(n_in)
    udf = series_udf(t.spec, list(t.plan.fields), job.stats)
    scored = (
        t.df.repartition(t.partitions(n_in))
        .select("record_id", "split", "label", udf(F.col(t.plan.column)).alias("p"))
        .select("record_id", "split", "label", "p.*")
    )
    table = f"predictions/{t.task}"
    n_out = job.run(lambda: t.commit.stage_table(table, scored, t.plan.schema, progress=False))
    t.finish(job, table, t.spark.read.parquet(t.commit.staged_path(table)), n_in, n_out, t.df)


def _score_clips(t: _Target) -> None:
    """Clips -> sampled frame rows (mapInPandas) -> one row per clip, and a table of the frames themselves."""
    limit = t.plan.inline_max_bytes
    content = F.col(t.plan.column)
    clips = t.df.select("record_id", "split", "label", "frame_count", "source_path",
                        (content if limit is None else F.when(F.length(content) <= limit, content)).alias(t.plan.column))  # larger: read from source_path
    n_in = clips.count()
    n_by_path = clips.where(F.col(t.plan.column).isNull()).count()
    job = t.scoring(n_in)
    rows = clips.repartition(t.partitions(n_in)).mapInPandas(
        frames_fn(t.spec, job.stats, passthrough=["split", "label"]), T.VIDEO_INFER_ROWS  # type: ignore[arg-type]
    )
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    frame_table, clip_table = f"predictions/{t.task}_frames", f"predictions/{t.task}"
    try:
        first = Window.partitionBy("record_id").orderBy(F.col("frame_index").asc_nulls_first())
        n_frames = job.run(lambda: t.commit.stage_table(frame_table, rows.where(F.col("error").isNull()), t.plan.frame_schema, progress=False))
        per_clip = rows.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")
        n_out = t.commit.stage_table(clip_table, per_clip, t.plan.schema)
    finally:
        rows.unpersist()
    staged = t.spark.read.parquet(t.commit.staged_path(clip_table))
    t.finish(job, clip_table, staged, n_in, n_out, clips, clips_read_from_path=n_by_path, frames=n_frames)
    t.commit.add_manifest(TableCounts(frame_table, n_frames, n_frames, inputs=t.inputs, extra={"clips": n_in}))


def _stage_report_part(commit: Commit, conf: Conf, run_date: str, staged: DataFrame, source: DataFrame, column: str, target: str,
                       preview: Preview | None, records: int, extra: dict[str, Any]) -> None:
    """The target's part of the run report, published with its predictions."""
    from deepbatch.infer.reporting import prediction_part
    from deepbatch.report.publish import stage_part

    keys = ("model_version", "model_choice", "model_trained_for", "records_per_s", "accuracy_by_split", "errors_by_reason")
    stats = {"records": records, **{k: extra.get(k) for k in keys}}
    stage_part(commit, conf, run_date, prediction_part(staged, source, column, target, preview, stats, conf.report.prediction_samples))


# How rows flow through a core (InferPlan.shape): one row per input, or frame rows per clip.
SHAPES: dict[str, Callable[[_Target], None]] = {"series": _score_series, "clips": _score_clips}


def score_target(spark: SparkSession, conf: Conf, run_date: str, commit: Commit, target: str) -> None:
    """One task through its modality's plan: a trained task's gold rows and the model infer.model_version picks for the
    run date (:func:`deepbatch.cores.common.model_for_run`), or an inference-only task's silver rows and its pretrained model."""
    task = resolve_task(conf, target)
    if task.trained:
        chosen = model_for_run(models_root(conf), target, run_date, conf.infer.model_version)
        check_model_files(chosen.path)  # on the driver too: a corrupt model fails here, named, before any task starts
        plan = task.modality.infer_plan(conf, target, str(chosen.path))
        plan = replace(plan, extra={**plan.extra, **chosen.describe()})
        df, path = _read_gold(spark, task, run_date)
    else:
        plan = task.modality.pretrained_plan(conf, target, task.model)
        df, path = _silver_input(spark, conf, run_date, task, plan.column)
    inputs = [path, plan.model_dir] if plan.model_dir else [path]
    SHAPES[plan.shape](_Target(spark, conf, run_date, commit, task, plan, df, inputs))


def run_infer(spark: SparkSession, conf: Conf, run_date: str, targets: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Score each target (default: ``infer.targets``) and publish its predictions partition."""
    from deepbatch.report.publish import publish_run_report

    with Commit.for_stage(spark, conf, "infer", run_date) as commit:
        for target in targets or tuple(conf.infer.targets) or tuple(conf.tasks):
            score_target(spark, conf, run_date, commit, target)
    publish_run_report(spark, conf, run_date)
    return commit.summary
