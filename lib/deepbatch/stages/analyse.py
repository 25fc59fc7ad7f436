"""analyse: profile each gold table, check class balance, compare with the previous run.

All aggregation runs in Spark; only small aggregates reach the driver, so the
stage scales with the data. Its part of the run report (figures, charts, sample pictures)
is built by :mod:`deepbatch.report.data` and published with the stage's commit; the page
``reports/<run_date>/report.html`` is then rendered from every published part.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from deepbatch.catalog import tasks as resolved_tasks
from deepbatch.commit import Commit
from deepbatch.config import Conf
from deepbatch.manifests import TableCounts
from deepbatch.modality import ModalityContract
from deepbatch.profiling import count_by
from deepbatch.report.data import MediaSamples, QuarantineSample
from deepbatch.schemas import tables as T
from deepbatch.session import describe_job
from deepbatch.storage import Storage
from deepbatch.tables import partition_path, read_partition

log = logging.getLogger(__name__)

PREVIEW_MAX_BYTES = 16 << 20  # quarantined files larger than this get a placeholder, not a preview


def class_balance(by_class: dict[str, int], classes: list[str]) -> dict[str, Any]:
    """Counts for every configured class (0 where absent) and the max/min imbalance ratio."""
    counts = {c: int(by_class.get(c, 0)) for c in classes}
    present = [n for n in counts.values() if n > 0]
    missing = [c for c, n in counts.items() if n == 0]
    ratio = (max(present) / min(present)) if present else None
    return {"counts": counts, "imbalance_ratio": ratio, "missing_classes": missing}


def profile_task(df: DataFrame, modality: ModalityContract, classes: list[str]) -> dict[str, Any]:
    """Counts, per-split class balance and the modality's (image, text, video) size distributions."""
    labelled = df.filter(F.col("label").isNotNull())
    by_split_class = count_by(labelled, "split", "label")
    out: dict[str, Any] = {
        "rows": df.count(),
        "by_split": count_by(df, "split"),
        "balance": class_balance(count_by(labelled, "label"), classes),
        "balance_by_split": {
            split: class_balance(
                {k.split("|", 1)[1]: v for k, v in by_split_class.items() if k.split("|", 1)[0] == split}, classes
            )
            for split in ("train", "val", "test")
        },
    }
    out.update(modality.profile(df))
    return out


def quarantine_summary(spark: SparkSession, conf: Conf, run_date: str) -> dict[str, dict[str, int]]:
    """Rejected records by table and reason, from the clean and integrate manifests."""
    storage = Storage(spark)
    out: dict[str, dict[str, int]] = {}
    for stage in ("clean", "integrate"):
        path = conf.path("manifests", f"run_date={run_date}", f"{stage}.json")
        if not storage.exists(path):
            continue
        for t in json.loads(storage.read_text(path))["tables"]:
            # clean: silver tables carry the counts; integrate: its quarantine tables do.
            if t["table"].startswith("silver/") or t["table"].startswith("quarantine/integrate/"):
                out[t["table"]] = {**t["quarantined"], **t["deduplicated"]}
    return out


def previous_report(spark: SparkSession, conf: Conf, run_date: str) -> dict[str, Any] | None:
    """The newest report.json of an earlier run date, if any."""
    storage = Storage(spark)
    reports = conf.path("reports")
    earlier = [d for d in storage.list_dirs(reports) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) and d < run_date]
    for d in sorted(earlier, reverse=True):
        path = f"{reports}/{d}/report.json"
        if storage.exists(path):
            return dict(json.loads(storage.read_text(path)))
    return None


def compare_runs(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """Row and class-share changes per task against the previous run date."""
    if previous is None:
        return None
    out: dict[str, Any] = {"previous_run_date": previous.get("run_date"), "tasks": {}}
    for task, prof in current["tasks"].items():
        before = previous.get("tasks", {}).get(task)
        if before is None:
            out["tasks"][task] = {"new_task": True}
            continue
        now_counts, old_counts = prof["balance"]["counts"], before["balance"]["counts"]
        now_total, old_total = max(sum(now_counts.values()), 1), max(sum(old_counts.values()), 1)
        share_delta = {c: round(now_counts.get(c, 0) / now_total - old_counts.get(c, 0) / old_total, 4) for c in now_counts}
        out["tasks"][task] = {
            "rows_before": before["rows"],
            "rows_now": prof["rows"],
            "rows_delta": prof["rows"] - before["rows"],
            "class_share_delta": share_delta,
            "max_abs_share_delta": max((abs(v) for v in share_delta.values()), default=0.0),
        }
    return out


def _sample_rows(df: DataFrame, per_key: int, key: str) -> DataFrame:
    """Up to ``per_key`` rows per value of ``key``, chosen by a hash of the record id (the same on every run)."""
    order = Window.partitionBy(key).orderBy(F.xxhash64("record_id"), "record_id")
    return df.withColumn("_n", F.row_number().over(order)).where(F.col("_n") <= per_key).drop("_n")


def media_samples(df: DataFrame, modality: ModalityContract, per_class: int) -> MediaSamples | None:
    """A few labelled records' bytes per class as the modality's contact sheet (None where it shows none: text)."""
    per_class = modality.samples_per_class(per_class)
    if "content" not in df.columns or per_class < 1:
        return None
    picked = _sample_rows(df.where(F.col("label").isNotNull()), per_class, "label")
    by_class: dict[str, list[bytes]] = {}
    for row in picked.select("label", "content").orderBy("label", "record_id").collect():
        by_class.setdefault(row["label"], []).append(bytes(row["content"]))
    what, sheet = modality.report_samples(by_class)
    return MediaSamples(what, sheet)


def quarantine_samples(spark: SparkSession, conf: Conf, run_date: str, n: int) -> list[QuarantineSample]:
    """Up to ``n`` quarantined media files (of the file sources) that kept their bytes, spread over sources and reasons."""
    from deepbatch.catalog import sources

    storage, found = Storage(spark), []
    root = conf.path("quarantine", "clean")
    for source in [s.name for s in sources(conf) if s.role == "files"] if n > 0 else []:
        if not storage.exists(partition_path(f"{root}/{source}", run_date)):
            continue
        df = read_partition(spark, f"{root}/{source}", run_date, T.QUARANTINE).where(F.col("content").isNotNull())
        small = F.when(F.length("content") <= PREVIEW_MAX_BYTES, F.col("content")).alias("content")
        rows = _sample_rows(df, 2, "reason").select("reason", "detail", "source_path", small).limit(n).collect()
        found += [QuarantineSample(f"quarantine/clean/{source}", r["reason"], r["detail"], r["source_path"],
                                   None if r["content"] is None else bytes(r["content"])) for r in rows]
    return found[:n]


def gold_classes(spark: SparkSession, conf: Conf, task: str, run_date: str) -> list[str]:
    """The classes integrate indexed the task's gold partition with (declared, or discovered: classes auto)."""
    path = partition_path(conf.path("gold", task), run_date) + "/_class_map.json"
    mapping = json.loads(Storage(spark).read_text(path))
    return sorted(mapping, key=mapping.get)


def _profile_gold(spark: SparkSession, conf: Conf, run_date: str) -> tuple[dict[str, Any], dict[str, MediaSamples], list[str]]:
    profiles: dict[str, Any] = {}
    samples: dict[str, MediaSamples] = {}
    inputs = []
    for task in (t for t in resolved_tasks(conf) if t.trained):
        describe_job(spark, "analyse", task.name, run_date)
        inputs.append(task.gold)
        df = read_partition(spark, task.gold, run_date, task.gold_schema())
        profiles[task.name] = profile_task(df, task.modality, gold_classes(spark, conf, task.name, run_date))
        sample = media_samples(df, task.modality, conf.report.samples_per_class)
        if sample is not None:
            samples[task.name] = sample
        log.debug("analyse %-9s rows=%d imbalance=%s", task.name, profiles[task.name]["rows"],
                  profiles[task.name]["balance"]["imbalance_ratio"])
    return profiles, samples, inputs


def run_analyse(spark: SparkSession, conf: Conf, run_date: str) -> dict[str, Any]:
    """Profile gold tables, publish the data part of the run report, then render the page."""
    from deepbatch.report.data import data_part
    from deepbatch.report.publish import publish_run_report, stage_part

    with Commit.for_stage(spark, conf, "analyse", run_date) as commit:
        tasks, samples, inputs = _profile_gold(spark, conf, run_date)
        report: dict[str, Any] = {
            "run_date": run_date,
            "conf_hash": conf.hash(),
            "tasks": tasks,
            "quarantine": quarantine_summary(spark, conf, run_date),
        }
        report["comparison"] = compare_runs(report, previous_report(spark, conf, run_date))
        part = data_part(report, samples, quarantine_samples(spark, conf, run_date, conf.report.quarantine_samples))
        stage_part(commit, conf, run_date, part)
        rows = sum(t["rows"] for t in tasks.values())
        commit.add_manifest(TableCounts(f"reports/_parts/{part.key}", rows, rows, inputs=inputs, extra={"files": sorted(part.to_files())}))
    publish_run_report(spark, conf, run_date)
    return commit.summary
