"""Checks of the declared sources and tasks: every mistake named by its conf key, with the fix.

Run by :func:`deepbatch.catalog.load_conf`, so a conf with an unknown source, an unmapped
field or a task without labels never reaches a Spark job.
"""

from __future__ import annotations

import re

from deepbatch.config import LABELS_FROM, Conf, SourceConf, TaskConf, TaskTrainConf, check_split
from deepbatch.errors import ConfigError
from deepbatch.modality import MODALITIES, check_sections
from deepbatch.sources import SOURCE_KINDS, reader

# Columns deepbatch adds itself: a metadata field may not take these names.
RESERVED = frozenset({"record_id", "text", "label", "label_index", "split", "collection", "content", "content_hash",
                      "source_path", "file_size", "modification_time", "ingest_run_date", "raw_record", "raw_bytes",
                      "parse_error", "source_line", "text_chars", "width", "height", "channels", "fps", "frame_count",
                      "image_format", "orientation", "frame_count_capped"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

def _check_name(value: str, key: str) -> None:
    if not _NAME.match(value):
        raise ConfigError(f"conf key {key!r}: {value!r} is not a usable field name (letters, digits and _, not starting with a digit)")


def check_source(name: str, sc: SourceConf) -> None:
    key = f"sources.{name}"
    _check_name(name, key)
    if sc.kind not in SOURCE_KINDS:
        raise ConfigError(f"conf key '{key}.kind' must be one of {', '.join(SOURCE_KINDS)}, got {sc.kind!r}")
    source_reader = reader(sc.kind)
    source_reader.check_conf(name, sc)
    if sc.updated_at:
        _check_name(sc.updated_at, f"{key}.updated_at")
    if source_reader.media_files:
        return
    f = sc.fields
    if not f.id and sc.id != "line":
        raise ConfigError(f"conf key '{key}.fields.id' is empty: name the field that holds each record's id, or set '{key}.id: line' "
                          "when the files have no id column")
    if not f.text and not f.label:
        raise ConfigError(f"source {name!r} maps neither a text nor a label field: set '{key}.fields.text' (a text source) "
                          f"or '{key}.fields.label' (a label table)")
    for meta in f.metadata:
        _check_name(meta, f"{key}.fields.metadata")
        if meta in RESERVED or meta in (f.id, f.text, f.label):
            raise ConfigError(f"conf key '{key}.fields.metadata' lists {meta!r}, a column deepbatch writes itself or a mapped "
                              "field; leave it out")


def check_train(hp: TaskTrainConf, key: str) -> None:
    if hp.epochs < 1 or hp.batch_size < 1 or hp.lr <= 0:
        raise ConfigError(f"conf keys {key}.epochs/batch_size must be >= 1 and {key}.lr > 0")


def _check_classes(tc: TaskConf, key: str) -> None:
    c = tc.classes
    if c == "auto":
        return
    if not isinstance(c, list) or not all(isinstance(x, str) and x for x in c) or len(c) < 2 or len(set(c)) != len(c):
        raise ConfigError(f"conf key '{key}.classes' must be auto or a list of at least 2 distinct class names, got {c!r}")


def _check_content(conf: Conf, name: str, tc: TaskConf) -> SourceConf:
    key = f"tasks.{name}"
    if tc.modality not in MODALITIES:
        raise ConfigError(f"conf key '{key}.modality' must be one of {', '.join(MODALITIES)}, got {tc.modality!r}")
    if tc.source not in conf.sources:
        raise ConfigError(f"conf key '{key}.source' names {tc.source!r}, which is not a declared source; declared sources: "
                          f"{', '.join(conf.sources) or 'none'}. Declare it under sources, or fix the name.")
    sc = conf.sources[tc.source]
    wants_files = not MODALITIES[tc.modality].reads_records
    media = reader(sc.kind).media_files
    if (wants_files and not media) or (not wants_files and not media and not sc.fields.text):
        need = "a files source" if wants_files else "a files source (a document per file) or a record source with fields.text mapped"
        raise ConfigError(f"conf key '{key}.source': a {tc.modality} task reads {need}; sources.{tc.source} is kind {sc.kind}"
                          + ("" if wants_files else f" without 'sources.{tc.source}.fields.text'"))
    return sc


def _check_labels(conf: Conf, name: str, tc: TaskConf, sc: SourceConf) -> None:
    key, m = f"tasks.{name}", MODALITIES[tc.modality]
    model = tc.model or m.models[0]
    if model not in (*m.models, *m.pretrained) and not (model.startswith(m.prefixes) and m.prefixes and model.split(":", 1)[1]):
        allowed = ", ".join((*m.models, *m.pretrained, *(f"{p}<local folder>" for p in m.prefixes)))
        raise ConfigError(f"conf key '{key}.model' must be one of {allowed} for modality {tc.modality}, got {model!r}")
    if not tc.labels:
        raise ConfigError(f"task {name!r} has no labels: set '{key}.labels' to a label source, field (the record's own label), "
                          "folder (landing/<source>/<class>/<file>), or none for an inference-only task with a pretrained model")
    prefixed = bool(m.prefixes) and model.startswith(m.prefixes)  # hf:<folder>: trains a head, or scores with its own
    if (tc.labels == "none" and not (model in m.pretrained or prefixed)) or (tc.labels != "none" and model in m.pretrained):
        pretrained = ", ".join((*m.pretrained, *(f"{p}<local folder>" for p in m.prefixes))) or "none for " + tc.modality
        raise ConfigError(f"conf key '{key}.labels' is {tc.labels!r} with model {model!r}: an inference-only task uses labels: none and "
                          f"a pretrained model ({pretrained}); a trained task needs labels")
    if tc.labels == "field" and not sc.fields.label:
        raise ConfigError(f"conf key '{key}.labels' is field, but 'sources.{tc.source}.fields.label' is not set: map the label field")
    if tc.labels == "folder" and not reader(sc.kind).media_files:
        raise ConfigError(f"conf key '{key}.labels' is folder (ImageFolder layout), but sources.{tc.source} is kind {sc.kind}, not files")
    if tc.labels not in LABELS_FROM:
        lab = conf.sources.get(tc.labels)
        if lab is None or reader(lab.kind).media_files or not lab.fields.label or lab.fields.text:
            raise ConfigError(f"conf key '{key}.labels' names {tc.labels!r}, which is not a declared label table (a jsonl, csv or parquet "
                              f"source with fields.id and fields.label); declared sources: {', '.join(conf.sources) or 'none'}")


def check_task(conf: Conf, name: str, tc: TaskConf) -> None:
    _check_name(name, f"tasks.{name}")
    sc = _check_content(conf, name, tc)
    _check_labels(conf, name, tc, sc)
    _check_classes(tc, f"tasks.{name}")
    if tc.split is not None:
        check_split(tc.split, f"tasks.{name}.split")
    check_train(tc.train, f"tasks.{name}.train")


def _check_use(conf: Conf) -> None:
    """Every source is read by a task, and a files source by tasks of one modality."""
    for name, sc in conf.sources.items():
        readers = {t: tc for t, tc in conf.tasks.items() if name in (tc.source, tc.labels)}
        if not readers:
            raise ConfigError(f"source {name!r} is read by no task: name it in a task's source or labels, or remove it "
                              f"(in an overlay: 'sources: {{{name}: null}}')")
        media = {tc.modality for tc in readers.values() if tc.source == name}
        if reader(sc.kind).media_files and len(media) > 1:
            raise ConfigError(f"source {name!r} is read by tasks of modalities {sorted(media)}; a files source holds one kind of media")


def check_declarations(conf: Conf) -> Conf:
    """Every declared source and task, then how they fit together."""
    if not conf.tasks:
        raise ConfigError("no tasks are declared (conf key 'tasks'): declare at least one, as in conf/demo.yaml or conf/examples/")
    for name, sc in conf.sources.items():
        check_source(name, sc)
    for name, tc in conf.tasks.items():
        check_task(conf, name, tc)
    _check_use(conf)
    check_sections(conf)
    unknown = [t for t in conf.infer.targets if t not in conf.tasks]
    if unknown:
        raise ConfigError(f"conf key 'infer.targets' names {unknown}, which are not declared tasks; declared: {', '.join(conf.tasks)}")
    return conf
