"""A label table names files as its authors wrote them; both sides of the join read them as the files' ids."""

from __future__ import annotations

import pytest

from deepbatch.catalog import extensions, label_id, source
from deepbatch.stages.integrate import as_file_ids
from tests.conftest import make_conf

pytestmark = pytest.mark.unit

RAW = ["fmnist-00001", "fmnist-00002.png", "cat/001.JPG", ".\\cat\\002.jpeg", "./dog/x.y.png", "clip.v2", "notes.txt"]


@pytest.mark.parametrize(("id_from", "expected"), [
    ("stem", ["fmnist-00001", "fmnist-00002", "001", "002", "x.y", "clip.v2", "notes.txt"]),
    ("path", ["fmnist-00001", "fmnist-00002", "cat/001", "cat/002", "dog/x.y", "clip.v2", "notes.txt"]),
])
def test_label_ids_drop_media_extensions_and_for_stems_the_folders_the_same_in_python_and_spark(spark, tmp_path, id_from, expected) -> None:
    src = source(make_conf(tmp_path, f"sources.images.id={id_from}"), "images")
    assert extensions(src) == ["jpeg", "jpg", "png"]
    assert [label_id(r, src) for r in RAW] == expected  # deepbatch check's side
    df = spark.createDataFrame([(r,) for r in RAW], "record_id string")
    assert [r.record_id for r in df.transform(as_file_ids(extensions(src), id_from == "path")).collect()] == expected  # integrate's
