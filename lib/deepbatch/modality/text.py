"""Text: what the text modality's stages do (see :mod:`deepbatch.modality`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

TEXT_BIN_CHARS = 20
TOKENIZE_BATCH = 256


def silver_schema(metadata: tuple[str, ...]) -> Any:
    from deepbatch.schemas import tables as T

    return T.silver_text(metadata)


def gold_schema(metadata: tuple[str, ...]) -> Any:
    from deepbatch.schemas import tables as T

    return T.gold_text(metadata)


def check(df: Any, conf: Any, classes: list[str] | None, metadata: tuple[str, ...] = (), labelled: bool = False) -> Any:
    from deepbatch.stages import clean as C

    if "content" in df.columns:  # a files source: each file one document
        df = df.transform(C.documents())
    return C.check_text(df, classes, conf.quality.min_text_chars, metadata, labelled)


def profile(df: Any) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from deepbatch.stages.analyse import count_by, summary_stats

    bins = df.withColumn("bin", (F.floor(F.col("text_chars") / TEXT_BIN_CHARS) * TEXT_BIN_CHARS).cast("int"))
    return {"text_chars": summary_stats(df, "text_chars"), "text_chars_hist": dict(sorted((int(k), v) for k, v in count_by(bins, "bin").items()))}


def unischema(d: Any, prep: dict[str, Any]) -> Any:
    from deepbatch.schemas import petastorm as P

    return P.text_cls_schema(d.text_max_length)


def _encode_batch(tok: Any, batch: list[Any], schema: Any, d: Any) -> Iterator[Any]:
    import numpy as np
    from petastorm.unischema import dict_to_spark_row

    enc = tok([r.text for r in batch], max_length=d.text_max_length, truncation=True, padding="max_length",
              return_overflowing_tokens=False, return_length=False)  # fmt: skip
    full = tok([r.text for r in batch], truncation=False, verbose=False)["input_ids"]  # counted for the truncation figure only
    for r, ids, mask, whole in zip(batch, enc["input_ids"], enc["attention_mask"], full, strict=True):
        yield dict_to_spark_row(schema, {
            "record_id": r.record_id, "label_index": r.label_index,
            "input_ids": np.asarray(ids, dtype=np.int32), "attention_mask": np.asarray(mask, dtype=np.int8),
            "truncated": bool(len(whole) > d.text_max_length),
        })  # fmt: skip


def encode_rows(rows: Iterable[Any], schema: Any, d: Any, tokenizer_dir: str | None, prep: dict[str, Any]) -> Iterator[Any]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    batch: list[Any] = []
    for r in rows:
        batch.append(r)
        if len(batch) == TOKENIZE_BATCH:
            yield from _encode_batch(tok, batch, schema, d)
            batch = []
    if batch:
        yield from _encode_batch(tok, batch, schema, d)


def dataset_extra(spark: Any, urls: list[str]) -> dict[str, Any]:
    """Rows whose text was longer than ``datasets.text_max_length`` tokens, over every split."""
    from pyspark.sql import functions as F

    return {"truncated": sum(spark.read.parquet(u).filter(F.col("truncated")).count() for u in urls)}


def to_inputs(batch: dict[str, Any], device: Any) -> tuple[tuple[Any, ...], Any]:
    y = batch["label_index"].long().to(device, non_blocking=True)
    # Dynamic padding: drop the columns that are padding in every row of this batch.
    mask = batch["attention_mask"]
    width = max(int(mask.sum(1).max()), 1)
    return (batch["input_ids"][:, :width].long().to(device), mask[:, :width].long().to(device)), y


def settings(conf: Any, hp: Any, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """minilm: train.text_encoder with datasets.text_tokenizer; hf:<folder>: a local Hugging Face encoder or
    sequence-classification checkpoint with its own tokenizer (its encoder is used, under a new head)."""
    from deepbatch.models.pretrained import resolve_pretrained, safetensors_folder

    d = conf.datasets
    if model.startswith("hf:"):
        encoder = tokenizer = str(safetensors_folder(model[len("hf:") :], model))
    else:
        encoder, tokenizer = str(resolve_pretrained(conf.train.text_encoder)), str(resolve_pretrained(d.text_tokenizer))
    return ({"encoder_dir": encoder, "freeze_encoder": hp.freeze_encoder, "head_hidden": hp.head_hidden, "dropout": hp.dropout},
            {"tokenizer": tokenizer, "max_length": d.text_max_length, "padding": "max_length", "truncation": True})  # fmt: skip


def build(num_classes: int, settings: dict[str, Any]) -> Any:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from deepbatch.models.builders import TextClassifier

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per rank says nothing a log line would not
    # safetensors only: a local checkpoint is never unpickled (settings() checked the folder has the weights).
    encoder = AutoModel.from_pretrained(settings["encoder_dir"], use_safetensors=True)
    return TextClassifier(encoder, int(encoder.config.hidden_size), num_classes, float(settings.get("dropout", 0.1)),
                          bool(settings.get("freeze_encoder", True)), int(settings.get("head_hidden", 0)))  # fmt: skip


def save_assets(folder: Path, params: dict[str, Any], model: Any) -> None:
    """The tokenizer and the encoder's config, so the folder loads without the package it was trained from."""
    from deepbatch.infer.text import save_text_assets

    save_text_assets(folder, params["preprocessing"]["tokenizer"], model.encoder)


def core_options(conf: Any, classes: list[str]) -> dict[str, Any]:
    return {"batch_size": conf.infer.batch_size}
