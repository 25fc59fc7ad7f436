"""A user's own data through conf alone: ImageFolder labels, discovered classes, two image tasks, and a
text-only run whose sources are JSONL, CSV and Parquet with their own field names (no image or video folders)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepbatch.catalog import gold_schema, load_conf
from deepbatch.config import Conf
from deepbatch.schemas import tables as T
from deepbatch.stages.run import run_acquire, run_clean, run_integrate
from deepbatch.tables import read_partition
from tests.conftest import REPO, RUN_DATE

pytestmark = pytest.mark.integration

SPARK = """
extends: {base}
data_root: {root}
spark:
  master: "local[2]"
  conf: {{spark.sql.shuffle.partitions: "4", spark.ui.enabled: "false"}}
quality:
  max_quarantine_fraction: 0.5
"""

IMAGES = """
sources:
  pets:                   # ImageFolder: landing/pets/<class>/<file>, the same file names in every class folder
    kind: files
    id: path
  shapes:
    kind: files
    path: drawings
  shape_tags:             # a tab-separated label table with its own column names, naming files with their extension
    kind: csv
    path: tags
    glob: "*.tsv"
    delimiter: "\t"
    fields: {id: file, label: category}
tasks:
  pets:
    modality: image
    source: pets
    labels: folder
    classes: auto
  shapes:
    modality: image
    source: shapes
    labels: shape_tags
    classes: [ring, bar]
    model: compact_cnn
"""

TEXTS = """
sources:
  notes:
    kind: jsonl
    path: corpus
    fields: {id: id, text: body, label: mood, metadata: [speaker]}
  chats:
    kind: csv
    fields: {id: uid, text: utterance, label: tag}
  tickets:                # no id column: a record is its file and row
    kind: parquet
    id: line
    fields: {text: content, label: y, metadata: [queue]}
  speeches:               # each file one JSON array of records
    kind: json
    fields: {id: n, text: speech, label: party}
tasks:
  mood:
    modality: text
    source: notes
    labels: field
    classes: auto
  chat:
    modality: text
    source: chats
    labels: field
    classes: [question, answer]
  ticket:
    modality: text
    source: tickets
    labels: field
    classes: auto
  speech:
    modality: text
    source: speeches
    labels: field
    classes: auto
"""


def own_conf(root: Path, declarations: str, *overrides: str) -> Conf:
    path = root / "own.yaml"
    path.write_text(SPARK.format(base=REPO / "conf" / "base.yaml", root=root / "data") + declarations)
    return load_conf(path, list(overrides))


def _png(value: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(value, 20, (28, 28)), 0, 255).astype(np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def _write_images(landing: Path) -> None:
    for c, (name, value) in enumerate({"cat": 60, "dog": 140, "bird": 220}.items()):
        (landing / "pets" / name).mkdir(parents=True)
        for i in range(8):
            (landing / "pets" / name / f"{i:04d}.png").write_bytes(_png(value, 100 * c + i))
    (landing / "pets" / "stray.png").write_bytes(_png(90, 999))  # no class folder: unlabelled, inference input
    (landing / "drawings").mkdir()
    (landing / "tags").mkdir()
    for i in range(6):
        (landing / "drawings" / f"s{i}.png").write_bytes(_png(40 + 30 * i, 500 + i))
    rows = "".join(f"{'ring' if i % 2 else 'bar'}\tdrawings/s{i}.PNG\n" for i in range(6))
    (landing / "tags" / "tags.tsv").write_text("category\tfile\n" + rows + "ring\tghost.png\n")


def _gold(spark, conf: Conf, task: str):
    return read_partition(spark, conf.path("gold", task), RUN_DATE, gold_schema(conf, task))


def test_imagefolder_labels_discovered_classes_and_two_image_tasks(spark, tmp_path) -> None:
    conf = own_conf(tmp_path, IMAGES)
    _write_images(tmp_path / "data" / "landing")
    for run in (run_acquire, run_clean, run_integrate):
        run(spark, conf, RUN_DATE)
    pets = {r.record_id: r for r in _gold(spark, conf, "pets").collect()}
    assert len(pets) == 25 and {"cat/0000", "dog/0000", "bird/0000", "stray"} <= set(pets)  # ids from the path: no collisions
    assert {(r.label, r.label_index) for r in pets.values() if r.label} == {("bird", 0), ("cat", 1), ("dog", 2)}  # sorted
    assert pets["cat/0003"].label == "cat" and pets["stray"].split == "unlabelled" and pets["stray"].label is None
    class_map = json.loads((Path(conf.path("gold", "pets")) / f"run_date={RUN_DATE}" / "_class_map.json").read_text())
    assert class_map == {"bird": 0, "cat": 1, "dog": 2}
    shapes = {r.record_id: (r.label, r.label_index) for r in _gold(spark, conf, "shapes").collect()}
    assert shapes == {f"s{i}": (("ring", 0) if i % 2 else ("bar", 1)) for i in range(6)}  # joined by the mapped columns
    orphans = read_partition(spark, conf.path("quarantine", "integrate", "shape_tags"), RUN_DATE, T.QUARANTINE).collect()
    assert [(r.record_id, r.reason) for r in orphans] == [("ghost", "ORPHAN_LABEL")]  # ids as the files': no folder, no extension
    manifest = json.loads(Path(conf.path("manifests", f"run_date={RUN_DATE}", "integrate.json")).read_text())
    pets_table = next(t for t in manifest["tables"] if t["table"] == "gold/pets")
    assert pets_table["extra"]["classes"] == ["bird", "cat", "dog"] and pets_table["extra"]["classes_from"] == "auto"
    _train_and_score_pets(spark, own_conf(tmp_path, IMAGES, *TRAIN_ONE))


TRAIN_ONE = ("datasets.workers=1", "datasets.min_row_groups_per_worker=1", "train.launcher=local", "train.num_proc=1",
             "tasks.pets.train.epochs=2", "tasks.pets.train.batch_size=8", "tasks.pets.train.lr=0.01", "infer.targets=[pets]")


def _train_and_score_pets(spark, conf: Conf) -> None:
    """The default image model (efficientnet_lite0, frozen) trains on the discovered classes, and scores its gold rows."""
    from deepbatch.datasets.materialize import run_materialize
    from deepbatch.infer.run import run_infer
    from deepbatch.train.launch import run_train_stage

    run_materialize(spark, conf, RUN_DATE, ("pets",))
    manifest = json.loads((Path(conf.path("datasets", "pets", RUN_DATE)) / "_manifest.json").read_text())
    assert manifest["extra"]["classes"] == ["bird", "cat", "dog"] and manifest["extra"]["preprocessing"]["image_size"] == 224
    run_train_stage(spark, conf, RUN_DATE, ("pets",))
    folder = Path(conf.path("models", "pets", RUN_DATE))
    assert json.loads((folder / "label_map.json").read_text()) == {"bird": 0, "cat": 1, "dog": 2}
    assert json.loads((folder / "config.json").read_text())["model_settings"]["model"] == "efficientnet_lite0"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["onnx"]["top1_agreement"] >= 0.99  # the exported graph scores as torch does
    run_infer(spark, conf, RUN_DATE)
    scored = read_partition(spark, conf.path("predictions", "pets"), RUN_DATE, T.PREDICTIONS_TOPK).collect()
    assert len(scored) == 25 and all(r.error is None and r.top_labels[0] in ("bird", "cat", "dog") for r in scored)


def _write_texts(landing: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (landing / "corpus").mkdir(parents=True)
    lines = [json.dumps({"id": i, "body": f"note number {i}", "mood": ["calm", "tense"][i % 2], "speaker": f" s{i % 3} "}) for i in range(10)]
    lines += ['{"id": 10, "body": "no label here", "speaker": "s1"}', '{"id": 11, "body": broken']
    (landing / "corpus" / "notes.jsonl").write_text("\n".join(lines) + "\n")
    (landing / "chats").mkdir()
    rows = "".join(f"c{i},\"line {i}, with a comma\nand a \"\"quoted\"\" line break\",{['Question', 'answer'][i % 2]}\n" for i in range(8))
    (landing / "chats" / "a.csv").write_text("uid,utterance,tag\n" + rows)
    (landing / "chats" / "b.csv").write_text("uid,text,tag\nc9,wrong header,question\n")  # no 'utterance' column
    (landing / "tickets").mkdir()
    table = pa.table({"key": list(range(6)), "content": [f"ticket {i}" for i in range(6)], "y": [1, 2, 1, 2, 1, 2], "queue": ["a"] * 6})
    pq.write_table(table, landing / "tickets" / "t.parquet")
    (landing / "tickets" / "bad.parquet").write_bytes(b"not parquet at all")
    # a readable footer over broken pages: the check of the footer passes, Spark's read of the pages fails
    pages = pa.table({"key": list(range(100, 400)), "content": [f"ticket {i} " * 40 for i in range(300)], "y": [1] * 300, "queue": ["b"] * 300})
    pq.write_table(pages, landing / "tickets" / "pages.parquet", compression="gzip")
    raw = bytearray((landing / "tickets" / "pages.parquet").read_bytes())
    raw[200:1200] = bytes(1000)
    (landing / "tickets" / "pages.parquet").write_bytes(bytes(raw))
    (landing / "speeches").mkdir()
    speeches = [{"n": i, "speech": f"speech {i}\nacross lines", "party": ["left", "right"][i % 2]} for i in range(6)]
    (landing / "speeches" / "all.json").write_text(json.dumps(speeches, indent=2))
    (landing / "speeches" / "broken.json").write_text('[{"n": 9, "speech": "cut off"')


def _reasons(spark, conf: Conf, source: str) -> dict[str, int]:
    rows = read_partition(spark, conf.path("quarantine", "clean", source), RUN_DATE, T.QUARANTINE).collect()
    out: dict[str, int] = {}
    for r in rows:
        out[r.reason] = out.get(r.reason, 0) + 1
    return out


def test_a_text_only_run_reads_jsonl_csv_and_parquet_by_their_own_field_names(spark, tmp_path) -> None:
    conf = own_conf(tmp_path, TEXTS)
    _write_texts(tmp_path / "data" / "landing")  # no image, video or photo folders at all
    for run in (run_acquire, run_clean, run_integrate):
        run(spark, conf, RUN_DATE)
    notes = {r.record_id: r for r in _gold(spark, conf, "mood").collect()}
    assert sorted(notes, key=int) == [str(i) for i in range(10)] and notes["3"].text == "note number 3"
    assert notes["4"].speaker == "s1" and {r.label for r in notes.values()} == {"calm", "tense"}  # metadata trimmed
    assert _reasons(spark, conf, "notes") == {"MISSING_LABEL": 1, "MALFORMED_RECORD": 1}
    chats = {r.record_id: (r.label, r.text) for r in _gold(spark, conf, "chat").collect()}
    assert chats == {f"c{i}": (["question", "answer"][i % 2], f'line {i}, with a comma and a "quoted" line break') for i in range(8)}
    assert _reasons(spark, conf, "chats") == {"SCHEMA_MISMATCH": 1}
    detail = read_partition(spark, conf.path("quarantine", "clean", "chats"), RUN_DATE, T.QUARANTINE).first().detail
    assert "'utterance' (sources.chats.fields.text)" in detail
    tickets = {r.record_id: (r.label, r.label_index, r.queue) for r in _gold(spark, conf, "ticket").collect()}
    assert tickets == {f"t.parquet:{i + 1}": (str(1 + i % 2), i % 2, "a") for i in range(6)}  # numbers read as strings; classes auto
    assert _reasons(spark, conf, "tickets") == {"UNREADABLE_FILE": 2}
    broken = read_partition(spark, conf.path("quarantine", "clean", "tickets"), RUN_DATE, T.QUARANTINE).where("source_path like '%pages.parquet'")
    assert broken.first().detail.startswith("Spark could not read pages.parquet: ")
    speeches = {r.record_id: (r.text, r.label) for r in _gold(spark, conf, "speech").collect()}
    assert speeches == {str(i): (f"speech {i} across lines", ["left", "right"][i % 2]) for i in range(6)}
    assert _reasons(spark, conf, "speeches") == {"MALFORMED_RECORD": 1}
    for table in ("images", "videos", "photos"):
        assert not Path(conf.path("bronze", table)).exists()


def test_a_text_task_trains_and_scores_a_local_hugging_face_checkpoint(spark, tmp_path) -> None:
    """model: hf:<folder>: a user's own sequence-classification checkpoint, its tokenizer used from materialize to infer."""
    from deepbatch.datasets.materialize import run_materialize
    from deepbatch.infer.run import run_infer
    from deepbatch.train.launch import run_train_stage
    from tests.conftest import tiny_hf_checkpoint

    ckpt = tiny_hf_checkpoint(tmp_path / "my-model", sequence_classification=True)
    declarations = TEXTS.split("  chats:")[0] + f"""tasks:
  mood:
    modality: text
    source: notes
    labels: field
    classes: auto
    model: "hf:{ckpt}"
  mood_as_shipped:        # inference only: the checkpoint's own head and classes, no training
    modality: text
    source: notes
    labels: none
    model: "hf:{ckpt}"
"""
    conf = own_conf(tmp_path, declarations, "datasets.workers=1", "datasets.min_row_groups_per_worker=1", "train.launcher=local",
                    "tasks.mood.train.epochs=2", "tasks.mood.train.batch_size=4")
    _write_texts(tmp_path / "data" / "landing")
    for run in (run_acquire, run_clean, run_integrate):
        run(spark, conf, RUN_DATE)
    run_materialize(spark, conf, RUN_DATE)
    run_train_stage(spark, conf, RUN_DATE, ("mood",))
    folder = Path(conf.path("models", "mood", RUN_DATE))
    assert json.loads((folder / "config.json").read_text())["model_settings"]["encoder_dir"] == str(ckpt)
    assert (folder / "encoder" / "tokenizer.json").is_file() and json.loads((folder / "encoder" / "config.json").read_text())["hidden_size"] == 32
    run_infer(spark, conf, RUN_DATE)
    scored = read_partition(spark, conf.path("predictions", "mood"), RUN_DATE, T.PREDICTIONS_CLASS).collect()
    assert len(scored) == 10 and all(r.error is None and r.predicted in ("calm", "tense") for r in scored)
    shipped = read_partition(spark, conf.path("predictions", "mood_as_shipped"), RUN_DATE, T.PREDICTIONS_CLASS).collect()
    assert len(shipped) == 10 and {r.predicted for r in shipped} <= {"LABEL_0", "LABEL_1", "LABEL_2"} and shipped[0].split is None
    assert not Path(conf.path("models", "mood_as_shipped")).exists()  # nothing trained for it


def test_text_files_in_class_folders_are_documents_labelled_by_their_folder(spark, tmp_path) -> None:
    """The aclImdb layout: landing/reviews/<class>/<n>.txt, one document per file."""
    conf = own_conf(tmp_path, """
sources:
  reviews:
    kind: files
    id: path
tasks:
  sentiment:
    modality: text
    source: reviews
    labels: folder
    classes: auto
""")
    landing = tmp_path / "data" / "landing" / "reviews"
    for label in ("pos", "neg"):
        (landing / label).mkdir(parents=True)
        for i in range(4):
            (landing / label / f"{i}.txt").write_text(f"\ufeffA {label} review,\n number {i}.", encoding="utf-8")
    (landing / "neg" / "bad.txt").write_bytes(b"caf\xe9 au lait")  # Latin-1, not UTF-8
    (landing / "unsorted.txt").write_text("No folder, no label.")
    for run in (run_acquire, run_clean, run_integrate):
        run(spark, conf, RUN_DATE)
    gold = {r.record_id: (r.text, r.label) for r in _gold(spark, conf, "sentiment").collect()}
    assert gold["pos/2"] == ("A pos review, number 2.", "pos") and gold["unsorted"] == ("No folder, no label.", None)
    assert len(gold) == 9 and {label for _, label in gold.values()} == {"pos", "neg", None}
    assert _reasons(spark, conf, "reviews") == {"INVALID_UTF8": 1}
    kept = read_partition(spark, conf.path("quarantine", "clean", "reviews"), RUN_DATE, T.QUARANTINE).first()
    assert bytes(kept.content) == b"caf\xe9 au lait"  # the file's bytes, kept for replay
