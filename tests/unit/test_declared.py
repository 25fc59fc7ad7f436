"""Sources and tasks declared in conf: what resolves, and every mistake named by its key with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepbatch.catalog import (
    classes_of,
    gold_schema,
    label_classes,
    load_conf,
    silver_schema,
    source,
    sources,
    trained_tasks,
)
from deepbatch.errors import ConfigError
from deepbatch.sources import bronze_schema

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]

# A user's own conf: one JSONL text source with its own field names, one ImageFolder image source.
OWN = """
extends: {base}
sources:
  notes:
    kind: jsonl
    path: corpus
    fields: {{id: id, text: body, label: mood, metadata: [speaker]}}
  pictures:
    kind: files
    id: path
tasks:
  mood:
    modality: text
    source: notes
    labels: field
    classes: auto
  kind:
    modality: image
    source: pictures
    labels: folder
    classes: [cat, dog]
"""


def _own(tmp_path: Path, *overrides: str, text: str = OWN):
    path = tmp_path / "own.yaml"
    path.write_text(text.format(base=REPO / "conf" / "base.yaml"))
    return load_conf(path, list(overrides))


def test_a_users_own_sources_and_tasks_resolve_without_the_demos(tmp_path) -> None:
    conf = _own(tmp_path)
    assert [s.name for s in sources(conf)] == ["notes", "pictures"] and trained_tasks(conf) == ("mood", "kind")
    notes, pictures = source(conf, "notes"), source(conf, "pictures")
    assert (notes.role, notes.glob, notes.folder(conf)) == ("records", "*.{jsonl,ndjson,jsonl.gz,ndjson.gz,jsonl.bz2,ndjson.bz2}", conf.path("landing", "corpus"))
    assert (pictures.role, pictures.media, pictures.id_from, pictures.landing) == ("files", "image", "path", "pictures")
    assert "png" in pictures.glob and "jpeg" in pictures.glob  # the image modality's usual extensions
    assert bronze_schema(notes).names[:4] == ["record_id", "text", "label", "speaker"]  # mapped fields under deepbatch's names
    assert "speaker" in silver_schema(notes).names and "speaker" in gold_schema(conf, "mood").names
    assert classes_of(conf, "mood") is None and classes_of(conf, "kind") == ["cat", "dog"]
    assert label_classes(conf, "notes") is None  # auto: no unknown-label check at clean


def test_an_overlay_removes_the_demo_entries_it_does_not_want(tmp_path) -> None:
    conf = load_conf(REPO / "conf" / "local.yaml", ["sources.videos=null", "sources.video_labels=null", "tasks.video_cls=null"])
    assert "videos" not in conf.sources and list(conf.tasks) == ["image_cls", "text_cls", "imagenet"]


def test_a_source_uri_is_used_as_given(tmp_path) -> None:
    conf = _own(tmp_path, "sources.pictures.path=s3a://bucket/pics/")
    assert source(conf, "pictures").folder(conf) == "s3a://bucket/pics"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tasks.mood.source=notez", r"'tasks.mood.source' names 'notez', which is not a declared source; declared sources: notes, pictures"),
        ("tasks.mood.labels=", r"task 'mood' has no labels: set 'tasks.mood.labels'"),
        ("tasks.kind.labels=field", r"'tasks.kind.labels' is field, but 'sources.pictures.fields.label' is not set"),
        ("tasks.mood.labels=folder", r"'tasks.mood.labels' is folder .* sources.notes is kind jsonl, not files"),
        ("tasks.mood.labels=tags", r"'tasks.mood.labels' names 'tags', which is not a declared label table"),
        ("sources.notes.fields.text=", r"'tasks.mood.source': a text task reads a files source .* or a record source .* without 'sources.notes.fields.text'"),
        ("sources.notes.fields.id=", r"'sources.notes.fields.id' is empty"),
        ("sources.notes.fields.metadata=[label]", r"'sources.notes.fields.metadata' lists 'label'"),
        ("sources.notes.kind=xml", r"'sources.notes.kind' must be one of files, jsonl, json, csv, parquet"),
        ("sources.pictures.id=name", r"'sources.pictures.id' must be stem .* or path"),
        ("tasks.kind.classes=[cat]", r"'tasks.kind.classes' must be auto or a list of at least 2 distinct class names"),
        ("tasks.kind.modality=audio", r"'tasks.kind.modality' must be one of image, text, video"),
        ("tasks.kind.model=resnet", r"'tasks.kind.model' must be one of efficientnet_lite0, compact_cnn, imagenet for modality image"),
        ("tasks.kind.labels=none", r"'tasks.kind.labels' is 'none' with model 'efficientnet_lite0': an inference-only task"),
        ("tasks.kind.train.optimizer=lbfgs", r"'tasks.kind.train.optimizer' must be one of"),
        ("tasks.kind.split.train=0.5", r"tasks.kind.split.train/val/test must be >= 0 and sum to 1"),
        ("tasks.kind=null", r"source 'pictures' is read by no task: .* 'sources: \{pictures: null\}'"),
        ("infer.targets=[kind,dogs]", r"'infer.targets' names \['dogs'\], which are not declared tasks"),
        ("tasks.kind.colour=red", r"unknown conf key tasks.kind.'colour'"),
    ],
)
def test_a_declaration_mistake_names_its_key_and_the_fix(tmp_path, override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _own(tmp_path, override)


def test_no_tasks_at_all_points_at_the_examples(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no tasks are declared .* conf/examples/"):
        load_conf(REPO / "conf" / "base.yaml")


def test_a_files_source_holds_one_kind_of_media(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"source 'pictures' is read by tasks of modalities \['image', 'video'\]"):
        _own(tmp_path, "tasks.clips={modality: video, source: pictures, labels: folder}")
