"""The declared sources and tasks (conf keys ``sources`` and ``tasks``), resolved and checked.

A source says where landing files are and how they are read; a task says which source's
records it learns from, where their labels come from, its classes, split and model. Every
stage asks this module instead of knowing names: acquire lands each declared source, clean
checks each by its role, integrate builds one gold table per task. Spark-free, so the CLI
and ``deepbatch check`` can use it before any Spark job starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepbatch.config import (
    LABELS_FROM,
    Conf,
    SourceConf,
    SplitConf,
    TaskTrainConf,
    apply_overrides,
    build_conf,
    read_yaml,
    validate,
)
from deepbatch.declared import check_declarations
from deepbatch.errors import ConfigError
from deepbatch.sources import Source, reader

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

    from deepbatch.modality import ModalityContract


def _media_of(conf: Conf, name: str) -> str | None:
    used = sorted({t.modality for t in conf.tasks.values() if t.source == name})
    return used[0] if used else None


def resolve(conf: Conf, name: str, sc: SourceConf) -> Source:
    from deepbatch.modality import MODALITIES

    media = _media_of(conf, name)
    kind = reader(sc.kind)
    if kind.media_files:
        default_glob = MODALITIES[media].default_glob if media is not None and media in MODALITIES else "*"
    else:
        default_glob = kind.default_glob or "*"
    f = sc.fields
    # Files in class folders (labels: folder) often repeat names across folders (cat/001.png, dog/001.png): their
    # default id is the path under the folder; other files are named by their stem.
    foldered = any(t.source == name and t.labels == "folder" for t in conf.tasks.values())
    id_from = sc.id or (("path" if foldered else "stem") if kind.media_files else "field")
    return Source(name, sc.kind, sc.path or name, sc.glob or default_glob, id_from, f.id if id_from == "field" else "", f.text, f.label,
                  tuple(f.metadata), media, sc.delimiter, sc.table, sc.query, sc.url, sc.driver, sc.user_env, sc.password_env,
                  sc.credentials_file, sc.updated_at)


def sources(conf: Conf) -> tuple[Source, ...]:
    """Every declared source, in declaration order."""
    return tuple(resolve(conf, n, sc) for n, sc in conf.sources.items())


def source(conf: Conf, name: str) -> Source:
    if name not in conf.sources:
        raise ConfigError(f"unknown source {name!r}: declared sources are {', '.join(conf.sources) or 'none'} (conf key 'sources')")
    return resolve(conf, name, conf.sources[name])


@dataclass(frozen=True)
class Task:
    """A declared task, resolved once: its modality, sources, classes, model, split, training settings and gold table.
    Stages take this value instead of re-resolving (conf, name) in every helper."""

    name: str
    modality: ModalityContract
    source: Source  # where its content comes from
    labels: str  # a label table's name | field | folder | none (inference only)
    label_table: Source | None  # the label table it joins (None: labels from a field, the folder, or nowhere)
    classes: tuple[str, ...] | None  # None: discovered from the labelled rows (classes: auto)
    model: str
    split: SplitConf
    train: TaskTrainConf
    gold: str  # the gold table's path under the data root

    @property
    def trained(self) -> bool:
        """Whether it trains a model (False: labels none, an inference-only task scoring with a pretrained model)."""
        return self.labels != "none"

    def gold_schema(self) -> StructType:
        """Its gold table: its modality's, with its source's metadata fields."""
        schema: StructType = self.modality.gold_schema(self.source.metadata)
        return schema


def task(conf: Conf, name: str) -> Task:
    """The declared task ``name``, resolved (an unknown name is an error that lists the declared ones)."""
    from deepbatch.modality import modality_of, model_of

    tc = conf.task(name)
    table = label_source(conf, name)
    return Task(name, modality_of(conf, name), source(conf, tc.source), tc.labels, source(conf, table) if table else None,
                None if tc.classes == "auto" else tuple(tc.classes), model_of(conf, name), tc.split or conf.split, tc.train,
                conf.path("gold", name))


def tasks(conf: Conf) -> tuple[Task, ...]:
    """Every declared task, resolved, in declaration order."""
    return tuple(task(conf, name) for name in conf.tasks)


def label_source(conf: Conf, task: str) -> str | None:
    """The label table a task joins (None: its labels come from a field, the folder, or nowhere)."""
    labels = conf.task(task).labels
    return None if labels in LABELS_FROM else labels


def classes_of(conf: Conf, task: str) -> list[str] | None:
    """The task's declared classes, or None when they are discovered (classes: auto)."""
    classes = conf.task(task).classes
    return None if classes == "auto" else list(classes)


def trained_tasks(conf: Conf) -> tuple[str, ...]:
    """The tasks that train a model, in declaration order (the others only score)."""
    from deepbatch.modality import is_trained

    return tuple(t for t in conf.tasks if is_trained(conf, t))


def tasks_reading(conf: Conf, name: str) -> tuple[str, ...]:
    """The tasks whose content or labels come from source ``name``."""
    return tuple(t for t, tc in conf.tasks.items() if name in (tc.source, tc.labels))


def label_classes(conf: Conf, name: str) -> list[str] | None:
    """The classes a source's labels are checked against: the union of its tasks' classes (None: a task discovers them)."""
    out: list[str] = []
    for task in tasks_reading(conf, name):
        tc = conf.task(task)
        if tc.labels == "none":
            continue
        classes = classes_of(conf, task)
        if classes is None:
            return None
        out += [c for c in classes if c not in out]
    return out


def silver_schema(src: Source) -> StructType:
    """The source's silver table: its modality's (with its metadata), or a label table's."""
    from deepbatch.schemas import tables as T

    if src.role == "labels":
        return T.SILVER_LABELS
    schema: StructType = content_modality(src).silver_schema(src.metadata)
    return schema


def content_modality(src: Source) -> ModalityContract:
    """The modality of the tasks that read a source's content (a label table has none)."""
    from deepbatch.modality import MODALITIES

    if src.media is None:
        raise ConfigError(f"source {src.name!r} is a label table: no task reads its content (conf key 'sources.{src.name}')")
    return MODALITIES[src.media]


def gold_schema(conf: Conf, task: str) -> StructType:
    """The task's gold table: its modality's, with its source's metadata fields."""
    from deepbatch.modality import modality_of

    schema: StructType = modality_of(conf, task).gold_schema(source(conf, conf.task(task).source).metadata)
    return schema


def extensions(src: Source) -> list[str]:
    """The file extensions a source's glob names (``*.{png,jpg}`` -> png, jpg), lower case."""
    from deepbatch.storage import expand_braces

    return sorted({p.rsplit(".", 1)[1].lower() for p in expand_braces(src.glob) if "." in p and "*" not in p.rsplit(".", 1)[1]})


def label_id(raw: str, content: Source) -> str:
    """A label table's id as the id of the file it labels: ``cat/001.png`` labels ``001`` (``id: stem``) or
    ``cat/001`` (``id: path``): the media extension (and, for stems, the folders) dropped. The Spark side is
    :func:`deepbatch.stages.integrate.as_file_ids`."""
    rid = raw.strip().replace("\\", "/")
    while rid.startswith("./"):
        rid = rid[2:]
    rid = rid.rsplit("/", 1)[-1] if content.id_from == "stem" else rid
    head, dot, ext = rid.rpartition(".")
    return head if dot and ext.lower() in extensions(content) else rid


def load_conf(path: str | Path, overrides: list[str] | None = None) -> Conf:
    """Load, merge and validate a conf file plus CLI overrides: its settings, then its declared sources and tasks."""
    return check_declarations(validate(build_conf(apply_overrides(read_yaml(Path(path)), list(overrides or [])))))
