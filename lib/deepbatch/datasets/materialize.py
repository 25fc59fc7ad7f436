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

from deepbatch.commit import Commit
from deepbatch.config import TASKS, Conf, DatasetsConf
from deepbatch.errors import DeepbatchError
from deepbatch.manifests import TableCounts
from deepbatch.schemas import tables as T
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


def _encoder(task: str, d: DatasetsConf, tokenizer_dir: str | None) -> Callable[[Iterable[Row]], Iterable[Row]]:
    """Per-partition encoder: gold rows -> Petastorm rows (heavy objects built once per partition)."""

    def encode(rows: Iterable[Row]) -> Iterator[Row]:
        from petastorm.unischema import dict_to_spark_row

        schema = unischema_for(task, d)
        if task == "image_cls":
            from deepbatch.media.image import image_to_array

            for r in rows:
                img = image_to_array(r.content, d.image_size, d.image_channels)
                img = img[:, :, 0] if d.image_channels == 1 else img
                yield dict_to_spark_row(schema, {"record_id": r.record_id, "label_index": r.label_index, "image": img})
        elif task == "text_cls":
            import numpy as np
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer_dir)
            batch: list[Row] = []

            def flush(batch: list[Row]) -> Iterator[Row]:
                enc = tok([r.text for r in batch], max_length=d.text_max_length, truncation=True, padding="max_length",
                          return_overflowing_tokens=False, return_length=False)
                full = tok([r.text for r in batch], truncation=False)["input_ids"]
                for r, ids, mask, whole in zip(batch, enc["input_ids"], enc["attention_mask"], full, strict=True):
                    yield dict_to_spark_row(schema, {
                        "record_id": r.record_id, "label_index": r.label_index,
                        "input_ids": np.asarray(ids, dtype=np.int32), "attention_mask": np.asarray(mask, dtype=np.int8),
                        "truncated": bool(len(whole) > d.text_max_length),
                    })  # fmt: skip

            for r in rows:
                batch.append(r)
                if len(batch) == 256:
                    yield from flush(batch)
                    batch = []
            if batch:
                yield from flush(batch)
        elif task == "video_cls":
            from deepbatch.media.video import sample_frames

            for r in rows:
                frames = sample_frames(r.content, d.video_frames, d.video_size)
                yield dict_to_spark_row(schema, {"record_id": r.record_id, "label_index": r.label_index, "frames": frames})
        else:
            raise ValueError(f"unknown task {task!r}")

    return encode


def unischema_for(task: str, d: DatasetsConf) -> Any:
    from deepbatch.schemas import petastorm as P

    if task == "image_cls":
        return P.image_cls_schema(d.image_size, d.image_channels)
    if task == "text_cls":
        return P.text_cls_schema(d.text_max_length)
    if task == "video_cls":
        return P.video_cls_schema(d.video_frames, d.video_size)
    raise ValueError(f"unknown task {task!r}; expected image_cls, text_cls or video_cls")



def write_split(spark: SparkSession, df: DataFrame, url: str, task: str, d: DatasetsConf, tokenizer_dir: str | None) -> int:
    """Encode and write one split as a Petastorm dataset; returns rows written."""
    from petastorm.etl.dataset_metadata import materialize_dataset

    schema = unischema_for(task, d)
    n = df.count()
    files = files_for(n, d)
    with materialize_dataset(spark, url, schema, d.row_group_size_mb):
        # Range partitioning on the id gives non-empty, balanced files (hash partitioning of a
        # few rows can leave some empty), and a deterministic row order within them.
        encoded = df.repartitionByRange(files, "record_id").sortWithinPartitions("record_id").rdd.mapPartitions(
            _encoder(task, d, tokenizer_dir)
        )
        spark.createDataFrame(encoded, schema.as_spark_schema()).write.mode("overwrite").parquet(url)
    return n


def run_materialize(spark: SparkSession, conf: Conf, run_date: str, tasks: tuple[str, ...] = TASKS) -> dict[str, Any]:
    """Materialise every task's train/val/test splits and check their row groups."""
    from deepbatch.models.pretrained import resolve_pretrained

    d = conf.datasets
    version = d.version or run_date
    with Commit.for_stage(spark, conf, "materialize", run_date) as commit:
        storage = Storage(spark)
        for task in tasks:
            gold_path = conf.path("gold", task)
            gold = read_partition(spark, gold_path, run_date, T.GOLD_SCHEMAS[task])
            labelled = gold.filter(F.col("split").isin(*SPLITS)).persist()
            tokenizer_dir = str(resolve_pretrained(d.text_tokenizer)) if task == "text_cls" else None
            target = conf.path("datasets", task, version)
            staging = commit.staging_dir(f"datasets/{task}")
            extra: dict[str, Any] = {"version": version, "splits": {}}
            written = 0
            for split in SPLITS:
                describe_job(spark, "materialize", f"{task}/{split}", run_date)
                part = labelled.filter(F.col("split") == split)
                url = dataset_url(f"{staging}/{split}")
                rows = write_split(spark, part, url, task, d, tokenizer_dir)
                groups = check_row_groups(url, d.workers, d.min_row_groups_per_worker) if split == "train" else count_row_groups(url)
                balance = {str(r["label"]): int(r["count"]) for r in part.groupBy("label").count().collect()}
                extra["splits"][split] = {"rows": rows, "row_groups": groups, "class_balance": dict(sorted(balance.items()))}
                written += rows
                log.debug("materialize %-9s %-5s rows=%d row_groups=%d", task, split, rows, groups)
            if task == "text_cls":
                extra["truncated"] = _count_truncated(spark, dataset_url(f"{staging}/train"), dataset_url(f"{staging}/val"), dataset_url(f"{staging}/test"))
            n_in = labelled.count()
            labelled.unpersist()
            commit.register_folder(f"datasets/{task}", staging, target, written)
            commit.add_manifest(TableCounts(f"datasets/{task}", n_in, written, inputs=[gold_path], extra=extra))
            if storage.exists(target):
                log.debug("materialize %s: version %s exists and will be replaced", task, version)
    return commit.summary


def _count_truncated(spark: SparkSession, *urls: str) -> int:
    return sum(spark.read.parquet(u).filter(F.col("truncated")).count() for u in urls)
