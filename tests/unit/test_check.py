"""deepbatch check: the dry run finds what would fail or be lost, names the conf key, and runs no Spark job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepbatch.catalog import load_conf
from deepbatch.check import check_conf, render
from deepbatch.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.unit

CONF = """
extends: {base}
data_root: {root}
datasets: {{workers: 2, min_row_groups_per_worker: 2}}
sources:
  notes:
    kind: jsonl
    fields: {{id: uid, text: body, label: mood}}
  pics:
    kind: files
    id: path
tasks:
  mood:
    modality: text
    source: notes
    labels: field
    classes: [calm, tense]
    train: {{batch_size: 8}}
  pets:
    modality: image
    source: pics
    labels: folder
    classes: auto
    train: {{batch_size: 4}}
"""


def _landing(root: Path, notes: int = 40, moods: tuple[str, ...] = ("calm", "tense", "Calm ", "angry")) -> None:
    (root / "landing" / "notes").mkdir(parents=True)
    lines = [json.dumps({"uid": i, "body": f"text {i}", "mood": moods[i % len(moods)]}) for i in range(notes)]
    (root / "landing" / "notes" / "a.jsonl").write_text("\n".join(lines) + "\n")
    (root / "landing" / "notes" / "readme.txt").write_text("not a record file")
    for cls in ("cat", "dog"):
        (root / "landing" / "pics" / cls).mkdir(parents=True)
        for i in range(10):
            (root / "landing" / "pics" / cls / f"{i}.png").write_bytes(b"x")
    (root / "landing" / "stray").mkdir()
    (root / "landing" / "stray" / "lost.csv").write_text("a,b\n")


def _conf(tmp_path: Path, *overrides: str):
    path = tmp_path / "c.yaml"
    path.write_text(CONF.format(base=REPO / "conf" / "base.yaml", root=tmp_path))
    return load_conf(path, list(overrides))


def test_check_counts_files_records_fields_and_labels(tmp_path) -> None:
    _landing(tmp_path)
    report = check_conf(_conf(tmp_path))
    notes, pics = report.sources
    assert (notes.files, notes.records, notes.fields_found) == (2, 40, ["body", "mood", "uid"])
    assert [p.rsplit("/", 1)[-1] for p in notes.unmatched] == ["readme.txt"]
    assert dict(pics.labels) == {"cat": 10, "dog": 10} and "cat/3" in pics.ids
    mood, pets = report.tasks
    assert mood.labelled == 30 and mood.splits["train"] == 24  # 'Calm ' counts as calm; 'angry' does not
    assert pets.labelled == 20
    levels = {(f.level, f.key) for f in report.findings}
    assert levels == {("warning", "tasks.mood.classes"), ("warning", "sources.notes.glob"), ("warning", "sources")}
    unknown = next(f for f in report.findings if f.key == "tasks.mood.classes")
    assert "'angry' (10)" in unknown.message and "UNKNOWN_LABEL" in unknown.message
    assert [p.rsplit("/", 1)[-1] for p in report.stray] == ["lost.csv"]
    assert "check: 2 source(s), 2 task(s): 0 problem(s), 3 warning(s)" in render(report)


def test_check_names_an_unmapped_field_with_the_fields_found(tmp_path) -> None:
    _landing(tmp_path)
    report = check_conf(_conf(tmp_path, "sources.notes.fields.id=id"))
    problem = next(f for f in report.problems if f.key == "sources.notes.fields.id")
    assert "maps 'id', which is in none of its records; fields found: body, mood, uid" in problem.message


def test_check_refuses_too_few_rows_for_the_workers_and_a_single_discovered_class(tmp_path) -> None:
    _landing(tmp_path, notes=4)
    (tmp_path / "landing" / "pics" / "dog" / "0.png").unlink()
    for i in range(1, 10):
        (tmp_path / "landing" / "pics" / "dog" / f"{i}.png").unlink()
    report = check_conf(_conf(tmp_path))
    keys = {f.key: f.message for f in report.problems}
    assert "has 3 labelled record(s); its training split needs at least 4 (datasets.workers=2" in keys["datasets.workers"]
    assert "classes: auto but its labelled rows show 1 distinct label(s) ['cat']" in keys["tasks.pets.classes"]
    assert check_conf(_conf(tmp_path), training=False).problems == []  # a run that stops before materialize
    _landing(tmp_path / "more", notes=6)
    warned = check_conf(_conf(tmp_path / "more")).findings
    assert any(f.level == "warning" and f.key == "datasets.workers" and "about {'train': 4, 'val': 0" in f.message for f in warned)


def test_a_missing_folder_is_a_problem_only_for_a_declared_source(tmp_path) -> None:
    _landing(tmp_path)
    assert not (tmp_path / "landing" / "videos").exists()  # no video source is declared: nothing to say
    report = check_conf(_conf(tmp_path, "sources.pics.path=pictures"))
    assert [f.key for f in report.problems] == ["sources.pics.path", "tasks.pets.labels"]


def test_the_cli_check_and_the_pipeline_stop_on_a_problem_before_any_spark_job(tmp_path, capsys) -> None:
    _landing(tmp_path)
    (tmp_path / "c.yaml").write_text(CONF.format(base=REPO / "conf" / "base.yaml", root=tmp_path))
    assert main(["check", "--conf", str(tmp_path / "c.yaml")]) == 0
    assert "check: 2 source(s), 2 task(s): 0 problem(s)" in capsys.readouterr().out
    assert main(["check", "--conf", str(tmp_path / "c.yaml"), "--json", "sources.notes.fields.text=content"]) == 2
    found = json.loads(capsys.readouterr().out)["findings"]
    assert {"level": "problem", "key": "sources.notes.fields.text"} in [{k: f[k] for k in ("level", "key")} for f in found]
    assert main(["pipeline", "--conf", str(tmp_path / "c.yaml"), "--run-date", "2026-11-27", "sources.notes.fields.text=content"]) == 2
    assert not (tmp_path / "bronze").exists() and not (tmp_path / "_staging").exists()


def test_files_in_class_folders_default_to_path_ids_and_check_warns_when_stems_collide(tmp_path) -> None:
    from deepbatch.catalog import source

    _landing(tmp_path)
    text = CONF.format(base=REPO / "conf" / "base.yaml", root=tmp_path).replace("    id: path\n", "")
    (tmp_path / "c.yaml").write_text(text)
    conf = load_conf(tmp_path / "c.yaml")
    assert source(conf, "pics").id_from == "path" and source(conf, "notes").id_from == "field"  # labels: folder -> path ids
    assert not [f for f in check_conf(conf).findings if f.key == "sources.pics.id"]
    stems = check_conf(load_conf(tmp_path / "c.yaml", ["sources.pics.id=stem"]))
    warning = next(f for f in stems.findings if f.key == "sources.pics.id")
    assert "get the same id '0' (id: stem)" in warning.message and "DUPLICATE_ID" in warning.message


def test_check_lands_the_same_files_unread_as_acquire_and_never_raises_on_them(tmp_path) -> None:
    """A corrupt .jsonl.gz, a line nested too deep, a link out of the landing zone, and Unicode twins: check names each
    with the reason acquire gives it, and exits with a report."""
    import gzip
    import zlib

    _landing(tmp_path)
    notes = tmp_path / "landing" / "notes"
    (notes / "zlib.jsonl.gz").write_bytes(zlib.compress(b'{"uid": 1}\n'))
    packed = gzip.compress(b'{"uid": "g1", "body": "x", "mood": "calm"}\n' * 500)
    (notes / "cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    (notes / "deep.jsonl").write_text("[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "secret").write_text("outside")
    (tmp_path / "landing" / "pics" / "cat" / "out.png").symlink_to(tmp_path / "secret")
    (tmp_path / "landing" / "pics" / "cat" / "caf\u00e9.png").write_bytes(b"x")
    (tmp_path / "landing" / "pics" / "cat" / "cafe\u0301.png").write_bytes(b"x")
    report = check_conf(_conf(tmp_path))  # kind jsonl reads .jsonl.gz by default
    said = [f.message for f in report.findings]
    unread = next(m for m in said if "will land unread as UNREADABLE_FILE" in m)
    assert unread.startswith("2 file(s)") and "not a complete gzip stream" in unread
    assert any("will land unread as UNSUPPORTED_FORMAT" in m and "link outside the landing zone" in m for m in said)
    assert any("differ only in Unicode normalisation" in m and "DUPLICATE_ID" in m for m in said)
    notes_check = next(s for s in report.sources if s.name == "notes")
    assert notes_check.records == 40 + 1 + 2  # the good lines, the deep line (a record acquire quarantines), two unread files


def test_listing_follows_a_link_only_into_the_landing_zone_and_never_loops(tmp_path) -> None:
    from deepbatch.storage import list_files

    land = tmp_path / "landing"
    (land / "a").mkdir(parents=True)
    (land / "a" / "real.png").write_bytes(b"12345")
    (tmp_path / "secret").write_text("s")
    (land / "a" / "inside.png").symlink_to("real.png")
    (land / "a" / "outside.png").symlink_to(tmp_path / "secret")
    (land / "a" / "dangling.png").symlink_to("nothing")
    (land / "a" / "loop").symlink_to("..")
    got = {f.path.rsplit("/", 1)[-1]: (f.size, f.refused.split(":", 1)[0]) for f in list_files(str(land))}
    assert got == {"real.png": (5, ""), "inside.png": (5, ""), "outside.png": (got["outside.png"][0], "UNSUPPORTED_FORMAT"),
                   "dangling.png": (got["dangling.png"][0], "UNREADABLE_FILE"), "loop": (got["loop"][0], "UNSUPPORTED_FORMAT")}
    # a link into a sibling folder of the landing zone is inside it: the source folder alone is not the boundary
    assert [f.refused for f in list_files(str(land / "a"), within=str(land)) if f.path.endswith("inside.png")] == [""]


def test_check_knows_a_batch_larger_than_a_workers_shard_and_classes_too_rare_for_the_split(tmp_path) -> None:
    _landing(tmp_path)
    problems = check_conf(_conf(tmp_path, "tasks.mood.train.batch_size=64")).problems
    batch = next(f for f in problems if f.key == "tasks.mood.train.batch_size")
    assert "fewer than tasks.mood.train.batch_size=64: training would stop" in batch.message
    two = check_conf(_conf(tmp_path, "tasks.mood.train.batch_size=16", "train.launcher=horovod", "train.num_proc=2")).problems
    assert [f.key for f in two if "batch_size" in f.key] == ["tasks.mood.train.batch_size"]  # ~24 rows, 12 per worker
    assert not [f for f in check_conf(_conf(tmp_path, "tasks.mood.train.batch_size=16", "train.launcher=local")).problems
                if "batch_size" in f.key]
    (tmp_path / "landing" / "notes" / "rare.jsonl").write_text('{"uid": "r1", "body": "rare one", "mood": "tense"}\n')
    rare = check_conf(_conf(tmp_path, "tasks.mood.classes=[calm, tense, rare]")).findings
    assert not [f for f in rare if f.key == "tasks.mood.split"]
    (tmp_path / "landing" / "notes" / "rare.jsonl").write_text('{"uid": "r1", "body": "rare one", "mood": "rare"}\n')
    rare = check_conf(_conf(tmp_path, "tasks.mood.classes=[calm, tense, rare]")).findings
    assert "'rare' (1)" in next(f for f in rare if f.key == "tasks.mood.split").message
