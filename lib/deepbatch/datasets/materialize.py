"""materialize: gold task tables -> versioned Petastorm datasets, one per split.

Layout: ``datasets/<task>/<version>/<split>/`` (Parquet + Petastorm metadata).
Rows are encoded on the executors (decode/resize images, tokenise text once,
sample video frames) and written with ``materialize_dataset`` so readers get
the Unischema. Each split is written as enough files that every training
worker gets at least ``min_row_groups_per_worker`` row groups: Petastorm
shards by row group, and a rank with an empty shard hangs Horovod's collectives.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from deepbatch.catalog import Task
from deepbatch.commit import Commit
from deepbatch.config import Conf, DatasetsConf
from deepbatch.datasets.window import partition_commit, window_run_dates
from deepbatch.errors import DeepbatchError
from deepbatch.manifests import TableCounts
from deepbatch.modality import MODALITIES, ModalityContract, model_settings
from deepbatch.session import describe_job
from deepbatch.storage import Storage
from deepbatch.tables import read_partition

log = logging.getLogger(__name__)
# petastorm 0.13 still calls pyarrow.localfs, deprecated but working under the pinned pyarrow 14.
warnings.filterwarnings("ignore", category=FutureWarning, module="petastorm")

SPLITS = ("train", "val", "test")


class NotEnoughRowGroupsError(DeepbatchError):
    """A dataset split cannot give every training worker a non-empty shard."""

    exit_code = 5


def dataset_url(path: str) -> str:
    """Petastorm wants URLs: a bare local path becomes ``file:///abs/path``."""
    if "://" in path:
        return path
    return "file://" + os.path.abspath(path)


def files_for(rows: int, d: DatasetsConf) -> int:
    """How many files to write a split as: enough row groups for every worker, never more than rows."""
    return max(1, min(rows, d.workers * d.min_row_groups_per_worker))


def count_row_groups(url: str) -> int:
    """Row groups across a Parquet dataset's files (reads footers only)."""
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(url.replace("s3a://", "s3://", 1))
    infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
    total = 0
    for info in infos:
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet") and not info.base_name.startswith(("_", ".")):
            with filesystem.open_input_file(info.path) as f:
                total += pq.ParquetFile(f).metadata.num_row_groups
    return total


def check_row_groups(url: str, workers: int, min_per_worker: int) -> int:
    """Refuse a dataset whose row groups cannot give each of ``workers`` ranks ``min_per_worker``."""
    groups = count_row_groups(url)
    if groups < workers * min_per_worker:
        raise NotEnoughRowGroupsError(
            f"{url} has {groups} row group(s); {workers} training worker(s) need at least "
            f"{workers * min_per_worker} ({min_per_worker} each) or a rank gets an empty shard and Horovod hangs. "
            "Rematerialise with more data or files (datasets.min_row_groups_per_worker, datasets.workers), "
            "or train with fewer workers."
        )
    return groups


def _encoder(modality: ModalityContract, d: DatasetsConf, tokenizer_dir: str | None, prep: dict[str, Any]) -> Callable[[Iterable[Row]], Iterable[Row]]:
    """Per-partition encoder: gold rows -> Petastorm rows (heavy objects built once per partition)."""

    def encode(rows: Iterable[Row]) -> Iterator[Row]:
        yield from modality.encode_rows(rows, unischema_for(modality, d, prep), d, tokenizer_dir, prep)

    return encode


def unischema_for(modality: ModalityContract | str, d: DatasetsConf, prep: dict[str, Any]) -> Any:
    """The Petastorm schema of a modality's dataset, for the preprocessing its model expects."""
    return (MODALITIES[modality] if isinstance(modality, str) else modality).unischema(d, prep)


def _require_rows(labelled: DataFrame, task: str, window: dict[str, Any]) -> None:
    """A window without labelled rows has nothing to train on: say which window and how to widen it."""
    if labelled.limit(1).count() == 0:
        labelled.unpersist()
        raise NotEnoughRowGroupsError(
            f"{task}: no labelled rows in datasets.window={window['window']} (run dates {', '.join(window['run_dates'])}), and no "
            "earlier run date has any to rebuild from. Land labelled data for the task (deepbatch check shows what it finds), "
            "set datasets.window=all or datasets.window=last (datasets.window_last=N), or train the other tasks with --task."
        )


def gold_window(spark: SparkSession, conf: Conf, task: Task, run_date: str, dates: list[str] | None = None) -> tuple[DataFrame, dict[str, Any]]:
    """The task's gold rows over the window (or over ``dates``); a record in several run dates counts once, from the newest.

    Returns the rows and what went in: the window, its run dates, each one's integrate commit and its rows."""
    from functools import reduce

    from pyspark.sql import Window

    storage = Storage(spark)
    root, schema = task.gold, task.gold_schema()
    dates = dates or window_run_dates(storage, conf, task.name, run_date)
    parts = [read_partition(spark, root, day, schema).withColumn("_run_date", F.lit(day)) for day in dates]
    union = reduce(DataFrame.unionByName, parts)
    newest = Window.partitionBy("record_id").orderBy(F.col("_run_date").desc())
    rows = union if len(dates) == 1 else union.withColumn("_n", F.row_number().over(newest)).where("_n = 1").drop("_n")
    commits = {day: partition_commit(storage, root, day) for day in dates}
    counts = {r["_run_date"]: int(r["count"]) for r in rows.groupBy("_run_date").count().collect()}
    info = {"window": conf.datasets.window, "run_dates": dates, "commits": commits, "rows_by_run_date": {d: counts.get(d, 0) for d in dates}}
    if len(dates) > 1:
        log.info("materialize %s: window %s over %d run dates (%s .. %s), %d rows", task.name, conf.datasets.window, len(dates), dates[0],
                 dates[-1], sum(counts.values()))
    return rows.drop("_run_date"), info


def write_split(spark: SparkSession, df: DataFrame, url: str, modality: ModalityContract, d: DatasetsConf, tokenizer_dir: str | None,
                prep: dict[str, Any]) -> int:
    """Encode and write one split as a Petastorm dataset; returns rows written."""
    from petastorm.etl.dataset_metadata import materialize_dataset

    schema = unischema_for(modality, d, prep)
    n = df.count()
    files = files_for(n, d)
    with materialize_dataset(spark, url, schema, d.row_group_size_mb):
        # Range partitioning on the id gives non-empty, balanced files (hash partitioning of a
        # few rows can leave some empty), and a deterministic row order within them.
        encoded = df.repartitionByRange(files, "record_id").sortWithinPartitions("record_id").rdd.mapPartitions(
            _encoder(modality, d, tokenizer_dir, prep)
        )
        spark.createDataFrame(encoded, schema.as_spark_schema()).write.mode("overwrite").parquet(url)
    return n


def newest_labelled_run_date(spark: SparkSession, task: Task, run_date: str) -> str | None:
    """The newest gold run date before ``run_date`` with labelled rows (None: there is none)."""
    days = sorted((n.split("=", 1)[1] for n in Storage(spark).list_dirs(task.gold) if n.startswith("run_date=")), reverse=True)
    for day in (d for d in days if d < run_date):
        if read_partition(spark, task.gold, day, task.gold_schema()).where(F.col("split").isin(*SPLITS)).limit(1).count():
            return day
    return None


def labelled_window(spark: SparkSession, conf: Conf, task: Task, run_date: str) -> tuple[list[str], DataFrame, dict[str, Any]]:
    """The labelled rows a dataset is built from, its classes and what went in. A run date with no labelled rows of
    its own under ``datasets.window: this`` (an incremental day with nothing new) is rebuilt from the newest run date
    that has some, and says so; with no such run date, _require_rows refuses it."""
    gold, window = gold_window(spark, conf, task, run_date)
    labelled = gold.filter(F.col("split").isin(*SPLITS))
    if conf.datasets.window == "this" and labelled.limit(1).count() == 0:
        day = newest_labelled_run_date(spark, task, run_date)
        if day is not None:
            log.warning("materialize %s: run date %s has no labelled rows of its own (datasets.window=this, incremental acquire found "
                        "nothing new); the dataset is rebuilt from run date %s. Set datasets.window=all or last to train on what has "
                        "accumulated.", task.name, run_date, day)
            gold, window = gold_window(spark, conf, task, run_date, [day])
            window = {**window, "window": "this", "rebuilt_from": day, "empty_run_date": run_date}
            labelled = gold.filter(F.col("split").isin(*SPLITS))
    classes, labelled = window_classes(task, labelled)
    return classes, labelled, window


def window_classes(task: Task, labelled: DataFrame) -> tuple[list[str], DataFrame]:
    """The dataset's classes: declared, or (classes: auto) discovered over the whole window, re-indexed so every
    run date's rows share one label map."""
    from deepbatch.stages.integrate import discovered_classes, with_label_index

    if task.classes is not None:
        return list(task.classes), labelled
    classes = discovered_classes(labelled)
    return classes, labelled.transform(with_label_index(classes))


def _materialize_task(spark: SparkSession, conf: Conf, commit: Commit, task: Task, run_date: str) -> None:
    d = conf.datasets
    version = d.version or run_date
    classes, labelled, window = labelled_window(spark, conf, task, run_date)
    labelled = labelled.persist()
    _require_rows(labelled, task.name, window)
    modality, (_, prep) = task.modality, model_settings(conf, task.name)
    tokenizer_dir = str(prep["tokenizer"]) if modality.uses_tokenizer else None  # the task model's own tokenizer
    target = conf.path("datasets", task.name, version)
    staging = commit.staging_dir(f"datasets/{task.name}")
    extra: dict[str, Any] = {"version": version, "window": window, "classes": classes, "modality": modality.name, "preprocessing": prep,
                             "splits": {}}
    written = 0
    for split in SPLITS:
        describe_job(spark, "materialize", f"{task.name}/{split}", run_date)
        part = labelled.filter(F.col("split") == split)
        url = dataset_url(f"{staging}/{split}")
        rows = write_split(spark, part, url, modality, d, tokenizer_dir, prep)
        groups = check_row_groups(url, d.workers, d.min_row_groups_per_worker) if split == "train" else count_row_groups(url)
        balance = {str(r["label"]): int(r["count"]) for r in part.groupBy("label").count().collect()}
        extra["splits"][split] = {"rows": rows, "row_groups": groups, "class_balance": dict(sorted(balance.items()))}
        written += rows
        log.debug("materialize %-9s %-5s rows=%d row_groups=%d", task.name, split, rows, groups)
    extra.update(modality.dataset_extra(spark, [dataset_url(f"{staging}/{split}") for split in SPLITS]))
    n_in = labelled.count()
    labelled.unpersist()
    commit.register_folder(f"datasets/{task.name}", staging, target, written)
    commit.add_manifest(TableCounts(f"datasets/{task.name}", n_in, written, inputs=[task.gold], extra=extra))


def run_materialize(spark: SparkSession, conf: Conf, run_date: str, tasks: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Materialise each trained task's train/val/test splits (default: every one) and check their row groups."""
    from deepbatch.catalog import task as resolve_task
    from deepbatch.catalog import trained_tasks

    with Commit.for_stage(spark, conf, "materialize", run_date) as commit:
        for name in tasks if tasks is not None else trained_tasks(conf):
            _materialize_task(spark, conf, commit, resolve_task(conf, name), run_date)
    return commit.summary
