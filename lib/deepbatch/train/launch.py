"""Driver side of training: plain parameters from conf + dataset manifest, then a launcher.

Launchers: ``horovod`` (``horovod.spark.run`` inside the Spark application),
``torch_distributor`` (PySpark's TorchDistributor, DDP) and ``local`` (one
process, no launcher). All run :func:`deepbatch.train.loop.train_fn`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from deepbatch.catalog import Task
from deepbatch.commit import Commit
from deepbatch.config import Conf
from deepbatch.datasets.materialize import check_row_groups, dataset_url
from deepbatch.errors import ConfigError, MissingInputError, ResumeMismatchError, TrainingIncompleteError
from deepbatch.storage import Storage, is_local, local_path

log = logging.getLogger(__name__)


def _local_dir(path: str) -> str:
    if not is_local(path):
        raise ConfigError(f"model outputs are written with local file I/O; {path} is not local. Use a shared mount (file://) for data_root.")
    return str(Path(local_path(path)).resolve())


def training_params(spark: SparkSession, conf: Conf, run_date: str, task: str, backend: str) -> dict[str, Any]:
    """Everything train_fn needs, as plain values, checked before any worker starts."""
    from deepbatch.catalog import task as resolve_task
    from deepbatch.modality import model_settings

    resolved = resolve_task(conf, task)  # an undeclared name is its own error
    if not resolved.trained:
        raise ConfigError(f"task {task!r} is inference-only (labels: none, a pretrained model): there is nothing to train")
    version = conf.datasets.version or run_date
    ds_root = conf.path("datasets", task, version)
    manifest_path = f"{ds_root}/_manifest.json"
    storage = Storage(spark)
    if not storage.exists(manifest_path):
        raise MissingInputError(f"no Petastorm dataset at {ds_root}: run `deepbatch materialize --run-date {run_date}` first.")
    manifest = json.loads(storage.read_text(manifest_path))
    hp = resolved.train
    classes = dataset_classes(resolved, manifest, ds_root, run_date)
    workers = 1 if backend == "local" else conf.train.num_proc
    check_row_groups(dataset_url(f"{ds_root}/train"), workers, conf.datasets.min_row_groups_per_worker)
    balance = manifest["extra"]["splits"]["train"]["class_balance"]
    weights = None
    if hp.class_weights == "balanced":
        n = sum(balance.values())
        weights = [n / (len(classes) * balance[c]) if balance.get(c) else 0.0 for c in classes]
    settings, preprocessing = model_settings(conf, task)
    model_version = conf.train.version or run_date
    params = {
        "task": task,
        "modality": resolved.modality.name,
        "backend": backend,
        "classes": classes,
        "hparams": hp.model_dump(),
        "model_settings": settings,
        "preprocessing": preprocessing,
        "class_weights": weights,
        "seed": conf.train.seed,
        "resume": conf.train.resume,
        "train_url": dataset_url(f"{ds_root}/train"),
        "val_url": dataset_url(f"{ds_root}/val"),
        "test_url": dataset_url(f"{ds_root}/test"),
        "model_dir": _local_dir(conf.path("models", task, model_version)),
        "export_dir": _local_dir(conf.path("models", task, model_version)),  # run_train exports into its commit
        "checkpoint_dir": _local_dir(conf.path("checkpoints", task, model_version)),
        "dataset_version": version,
    }
    if conf.train.resume:
        check_resumable(params)
    return params


def check_resumable(params: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint made for another dataset version, class list or model."""
    from deepbatch.train.loop import checkpoint_meta

    meta_path = Path(params["checkpoint_dir"]) / "last.json"
    if not meta_path.is_file():
        return
    saved, now = json.loads(meta_path.read_text()), json.loads(json.dumps(checkpoint_meta(params), sort_keys=True))
    differs = sorted(k for k in now if saved.get(k) != now[k])
    if differs:
        raise ResumeMismatchError(
            f"cannot resume {params['task']} from {meta_path.parent}: the checkpoint was made with other "
            f"{', '.join(differs)} ({', '.join(f'{k}: {saved.get(k)!r} then, {now[k]!r} now' for k in differs)}). "
            "Train from scratch without --resume, or resume with the settings and dataset version it was made with."
        )


def launch(spark: SparkSession, params: dict[str, Any], launcher: str, num_proc: int) -> list[dict[str, Any]]:
    """Run train_fn under the chosen launcher; returns one result per rank where the launcher gives them."""
    from deepbatch.train.loop import train_fn

    if launcher == "local" or num_proc == 1:
        return [train_fn({**params, "backend": "local"})]
    if launcher == "horovod":
        import horovod.spark

        results: list[dict[str, Any]] = horovod.spark.run(train_fn, args=({**params, "backend": "horovod"},), num_proc=num_proc, use_gloo=True, verbose=1)
        return results
    if launcher == "torch_distributor":
        import torch
        from pyspark.ml.torch.distributor import TorchDistributor

        # local_mode runs the processes on the driver: right for local[*], wrong on a cluster.
        local_mode = (spark.sparkContext.master or "").startswith("local")
        distributor = TorchDistributor(num_processes=num_proc, local_mode=local_mode, use_gpu=torch.cuda.is_available())
        result = distributor.run(train_fn, {**params, "backend": "torch"})
        if result is None:
            raise RuntimeError("TorchDistributor returned no result; see the worker logs above")
        return [dict(result)]
    raise ConfigError(f"unknown launcher {launcher!r}: expected horovod, torch_distributor or local")


def train_task(spark: SparkSession, conf: Conf, run_date: str, task: str, commit: Commit) -> dict[str, Any]:
    """Train one task and stage its model folder in ``commit``; returns the run's summary."""
    launcher = conf.train.launcher
    backend = {"horovod": "horovod", "torch_distributor": "torch", "local": "local"}[launcher]
    params = training_params(spark, conf, run_date, task, backend if conf.train.num_proc > 1 else "local")
    staging = commit.staging_dir(f"models/{task}")
    params["export_dir"] = _local_dir(staging)
    t0 = time.monotonic()
    results = launch(spark, params, launcher, conf.train.num_proc)
    export = Path(params["export_dir"])
    if not (export / "model.safetensors").is_file():
        raise TrainingIncompleteError(f"training {task} ended after {results[0]['epochs_done']} epochs without writing a model "
                                      f"to {export}; see the worker logs above, then rerun with --resume.")
    from deepbatch.catalog import task as resolve_task

    _export_onnx(spark, conf, run_date, resolve_task(conf, task), export, params["classes"])
    summary = {
        "stage": "train",
        "task": task,
        "run_date": run_date,
        "conf_hash": conf.hash(),
        "launcher": launcher if conf.train.num_proc > 1 else "local",
        "num_proc": conf.train.num_proc,
        "dataset_version": params["dataset_version"],
        "commit_id": commit.commit_id,
        "model_dir": params["model_dir"],
        "epochs_done": results[0]["epochs_done"],
        "test_accuracy": results[0].get("test_accuracy"),
        "weights_checksums": [r["weights_checksum"] for r in results],
        "duration_s": round(time.monotonic() - t0, 1),
    }
    if summary["test_accuracy"] is not None:
        from deepbatch.train.tracking import default_tracking_uri, log_to_mlflow

        uri = conf.train.tracking_uri or default_tracking_uri(conf.data_root)
        summary["mlflow_run_id"] = log_to_mlflow(uri, summary, export)
        summary["mlflow_tracking_uri"] = uri
    (export / "_train_manifest.json").write_text(json.dumps(summary, indent=2))
    commit.register_folder(f"models/{task}", staging, conf.path("models", task, conf.train.version or run_date), 1)
    _stage_model_report(commit, conf, run_date, task, export, summary, params["classes"])
    return summary


# What the ONNX export and its checks read of the gold table: rows per split (clips are costlier).
def dataset_classes(task: Task, manifest: dict[str, Any], ds_root: str, run_date: str) -> list[str]:
    """The classes the dataset was materialised with (declared, or discovered over its window: classes auto);
    declared classes that have changed since are refused, since its label indexes follow the old list."""
    classes = list(manifest["extra"]["classes"])
    declared = None if task.classes is None else list(task.classes)
    if declared is not None and declared != classes:
        raise ConfigError(f"{ds_root} was materialised with classes {classes}, but conf key 'tasks.{task.name}.classes' is now {declared}: "
                          f"rerun `deepbatch materialize --run-date {run_date} --task {task.name}` (or `deepbatch pipeline`) first")
    return classes


def _gold_rows(spark: SparkSession, task: Task, run_date: str, split: str, limit: int) -> Any:
    from pyspark.sql import functions as F

    from deepbatch.tables import read_partition

    df = read_partition(spark, task.gold, run_date, task.gold_schema()).where(F.col("split") == split)
    return df.orderBy(F.xxhash64("record_id"), "record_id").limit(limit).toPandas()


def _check_rows(rows: dict[str, Any]) -> Any:
    """The rows the ONNX graph is checked on: validation rows, or with a split too small to hold any, test or training rows."""
    return next((rows[s] for s in ("val", "test", "train") if len(rows[s])), rows["val"])


def _export_onnx(spark: SparkSession, conf: Conf, run_date: str, task: Task, export: Path, classes: list[str]) -> None:
    """model.onnx beside the weights, checked against torch on validation rows, and int8 when infer.quantize asks."""
    from deepbatch.cores.runtime import onnxruntime_available
    from deepbatch.infer.export import check_equivalence, export_folder, quantize_folder

    if not onnxruntime_available():
        log.warning("onnxruntime is not installed: %s gets no ONNX graph and infers with torch", task.name)
        return
    modality = task.modality
    options = modality.core_options(conf, classes)
    rows = {split: _gold_rows(spark, task, run_date, split, n) for split, n in modality.export_check_rows.items()}
    metrics_path = export / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["onnx"] = {"graphs": export_folder(modality, export, **options), **check_equivalence(modality, export, _check_rows(rows), **options)}
    if conf.infer.quantize != "none":
        metrics["quantization"] = quantize_folder(modality, export, conf.infer.quantize, conf.infer.max_quantized_accuracy_drop,
                                                  rows["test"], rows["train"], **options)
    metrics_path.write_text(json.dumps(metrics, indent=2))
    log.info("%s: ONNX graph %s matches torch on %d validation rows (top-1 agreement %.4f, largest probability difference %.1e)%s",
             task.name, ", ".join(metrics["onnx"]["graphs"]), metrics["onnx"]["rows"], metrics["onnx"]["top1_agreement"],
             metrics["onnx"]["max_prob_diff"], _int8_note(metrics.get("quantization")))


def _int8_note(q: dict[str, Any] | None) -> str:
    if not q:
        return ""
    verdict = "kept" if q["kept"] else "refused"
    return f"; int8 ({q['mode']}) {verdict}: test accuracy {q['test_accuracy_fp32']:.4f} -> {q['test_accuracy_int8']:.4f}"


def _stage_model_report(commit: Commit, conf: Conf, run_date: str, task: str, export: Path, summary: dict[str, Any],
                        classes: list[str]) -> None:
    """The task's part of the run report (curves, confusion matrix, per-class scores), in the same commit."""
    from deepbatch.report.model import model_part
    from deepbatch.report.publish import stage_part

    metrics = json.loads((export / "metrics.json").read_text())
    stage_part(commit, conf, run_date, model_part(task, metrics, summary, classes))


def run_train(spark: SparkSession, conf: Conf, run_date: str, task: str) -> dict[str, Any]:
    """Train one task and publish its model folder as one commit of the train stage."""
    return dict(run_train_stage(spark, conf, run_date, (task,))["runs"][0])


def run_train_stage(spark: SparkSession, conf: Conf, run_date: str, tasks: tuple[str, ...]) -> dict[str, Any]:
    """Train every task; all model folders are published together as the train stage's commit."""
    from deepbatch.report.publish import publish_run_report
    from deepbatch.train.tracking import mark_published

    runs: list[dict[str, Any]] = []
    try:
        with Commit.for_stage(spark, conf, "train", run_date) as commit:
            commit.extra["runs"] = runs
            for t in tasks:
                runs.append(train_task(spark, conf, run_date, t, commit))
    except BaseException:
        mark_published(runs, False)
        raise
    mark_published(runs, True)
    publish_run_report(spark, conf, run_date)
    return commit.summary
