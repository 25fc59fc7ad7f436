"""Text: what the text modality's stages do (the contract is :class:`deepbatch.modality.ModalityContract`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from deepbatch.modality import InferPlan, ModalityContract

TEXT_BIN_CHARS = 20
TOKENIZE_BATCH = 256
HF_PREFIX = "hf:"


def documents() -> Any:
    """Bronze files of a text source (a document per file) in the shape of text records: the file's text (its bytes
    as UTF-8, else INVALID_UTF8), no label of its own (it comes from the folder or a label table), line 0."""
    from pyspark.sql import functions as F

    from deepbatch.media.udfs import utf8_udf

    def _(df: Any) -> Any:
        text = utf8_udf(F.col("content"))
        error = F.when(F.col("content").isNotNull() & text.isNull(), F.lit("INVALID_UTF8: the file is not valid UTF-8 text"))
        return df.drop("parse_error").select("*", text.alias("text"), F.lit(None).cast("string").alias("label"), F.col("content").alias("raw_bytes"),
                         text.alias("raw_record"), error.alias("parse_error"), F.lit(0).cast("long").alias("source_line"))

    return _


def check_text(bronze: Any, classes: list[str] | None, min_chars: int, metadata: tuple[str, ...] = (), labelled: bool = True) -> Any:
    """Parse errors, ids, empty text and unknown labels; normalise text and labels; dedup."""
    from pyspark.sql import functions as F

    from deepbatch.media.udfs import normalised_text_udf
    from deepbatch.quality import (
        RECORD_ORDER,
        adopt_ids,
        checked_labels,
        flag_duplicates,
        flag_missing_id,
        flag_parse_errors,
        flag_when,
        start_checks,
        trimmed,
    )

    return (
        bronze.transform(start_checks())
        .transform(flag_parse_errors())
        .withColumn("_norm", normalised_text_udf(F.col("text"), F.col("record_id")))
        .withColumn("text", F.col("_norm.text"))
        .transform(adopt_ids(F.col("_norm.record_id")))
        .drop("_norm")
        .transform(flag_missing_id())
        .withColumn("text_chars", F.coalesce(F.length("text"), F.lit(0)).cast("int"))
        .transform(
            flag_when(F.col("text_chars") < min_chars, "EMPTY_TEXT", f"text is empty or shorter than {min_chars} chars after normalisation")
        )
        .transform(checked_labels("label", classes) if labelled else (lambda df: df))
        .transform(trimmed(metadata))
        # Duplicates are judged on the normalised text, so whitespace variants collapse.
        .withColumn("content_hash", F.sha2(F.coalesce(F.col("text"), F.lit("")), 256))
        .transform(flag_duplicates("record_id", "DUPLICATE_ID", RECORD_ORDER))
        .transform(flag_duplicates("content_hash", "DUPLICATE_CONTENT", RECORD_ORDER))
    )


def _encode_batch(tok: Any, batch: list[Any], schema: Any, d: Any) -> Iterator[Any]:
    import numpy as np
    from petastorm.unischema import dict_to_spark_row

    enc = tok([r.text for r in batch], max_length=d.text_max_length, truncation=True, padding="max_length",
              return_overflowing_tokens=False, return_length=False)
    full = tok([r.text for r in batch], truncation=False, verbose=False)["input_ids"]  # counted for the truncation figure only
    for r, ids, mask, whole in zip(batch, enc["input_ids"], enc["attention_mask"], full, strict=True):
        yield dict_to_spark_row(schema, {
            "record_id": r.record_id, "label_index": r.label_index,
            "input_ids": np.asarray(ids, dtype=np.int32), "attention_mask": np.asarray(mask, dtype=np.int8),
            "truncated": bool(len(whole) > d.text_max_length),
        })


def hf_classes(folder: str) -> list[str]:
    """A sequence-classification checkpoint's class order, read from its config.json (no model load)."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    id2label = cfg.get("id2label") or {str(i): f"LABEL_{i}" for i in range(int(cfg.get("num_labels", 2)))}
    return [str(id2label[str(i)]) for i in range(len(id2label))]


def _trained_core(model_dir: str, device: str, **options: Any) -> Any:
    from deepbatch.cores.text import TrainedTextClassifier

    return TrainedTextClassifier(model_dir, device=device, **options)


def _hf_core(model_dir: str, device: str, **options: Any) -> Any:
    from deepbatch.cores.text import HFSequenceClassifier

    return HFSequenceClassifier(model_dir, device=device, **options)


def _plan(kind: str, folder: str, options: dict[str, Any], classes: list[str]) -> InferPlan:
    from deepbatch.schemas import tables as T

    return InferPlan(kind, folder, options, "text", fields=tuple(T.CLASS_FIELDS), schema=T.PREDICTIONS_CLASS, classes=classes)


class TextModality:
    name = "text"
    petastorm_fields = ("input_ids", "attention_mask", "label_index")
    models = ("minilm",)
    pretrained: tuple[str, ...] = ()
    prefixes = (HF_PREFIX,)
    uses_tokenizer = True
    default_glob = "*.{txt,text,md}"
    reads_records = True
    core_kind = "text"
    cores = {"text": _trained_core, "hf_text": _hf_core}
    export_check_rows = {"val": 256, "test": 2000, "train": 64}
    quantized_graph = "model"
    settings_model = None  # its settings keep their historical keys under datasets and infer

    def silver_schema(self, metadata: tuple[str, ...]) -> Any:
        from deepbatch.schemas import tables as T

        return T.silver_text(metadata)

    def gold_schema(self, metadata: tuple[str, ...]) -> Any:
        from deepbatch.schemas import tables as T

        return T.gold_text(metadata)

    def check(self, df: Any, conf: Any, classes: list[str] | None, metadata: tuple[str, ...] = (), labelled: bool = False) -> Any:
        if "content" in df.columns:  # a files source: each file one document
            df = df.transform(documents())
        return check_text(df, classes, conf.quality.min_text_chars, metadata, labelled)

    def profile(self, df: Any) -> dict[str, Any]:
        from pyspark.sql import functions as F

        from deepbatch.profiling import count_by, summary_stats

        bins = df.withColumn("bin", (F.floor(F.col("text_chars") / TEXT_BIN_CHARS) * TEXT_BIN_CHARS).cast("int"))
        return {"text_chars": summary_stats(df, "text_chars"),
                "text_chars_hist": dict(sorted((int(k), v) for k, v in count_by(bins, "bin").items()))}

    def samples_per_class(self, per_class: int) -> int:
        return 0  # texts are shown with their predictions, not as pictures

    def report_samples(self, by_class: dict[str, list[bytes]]) -> tuple[str, bytes | None]:
        return "", None

    preview = None  # the report shows a scored record's text in a table, not a picture

    def unischema(self, d: Any, prep: dict[str, Any]) -> Any:
        from deepbatch.schemas import petastorm as P

        return P.text_cls_schema(d.text_max_length)

    def encode_rows(self, rows: Iterable[Any], schema: Any, d: Any, tokenizer_dir: str | None, prep: dict[str, Any]) -> Iterator[Any]:
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

    def dataset_extra(self, spark: Any, urls: list[str]) -> dict[str, Any]:
        """Rows whose text was longer than ``datasets.text_max_length`` tokens, over every split."""
        from pyspark.sql import functions as F

        return {"truncated": sum(spark.read.parquet(u).filter(F.col("truncated")).count() for u in urls)}

    def to_inputs(self, batch: dict[str, Any], device: Any) -> tuple[tuple[Any, ...], Any]:
        y = batch["label_index"].long().to(device, non_blocking=True)
        # Dynamic padding: drop the columns that are padding in every row of this batch.
        mask = batch["attention_mask"]
        width = max(int(mask.sum(1).max()), 1)
        return (batch["input_ids"][:, :width].long().to(device), mask[:, :width].long().to(device)), y

    def settings(self, conf: Any, hp: Any, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """minilm: train.text_encoder with datasets.text_tokenizer; hf:<folder>: a local Hugging Face encoder or
        sequence-classification checkpoint with its own tokenizer (its encoder is used, under a new head)."""
        from deepbatch.models.pretrained import resolve_pretrained, safetensors_folder

        d = conf.datasets
        if model.startswith(HF_PREFIX):
            encoder = tokenizer = str(safetensors_folder(model[len(HF_PREFIX) :], model))
        else:
            encoder, tokenizer = str(resolve_pretrained(conf.train.text_encoder)), str(resolve_pretrained(d.text_tokenizer))
        return ({"encoder_dir": encoder, "freeze_encoder": hp.freeze_encoder, "head_hidden": hp.head_hidden, "dropout": hp.dropout},
                {"tokenizer": tokenizer, "max_length": d.text_max_length, "padding": "max_length", "truncation": True})

    def build(self, num_classes: int, settings: dict[str, Any]) -> Any:
        from deepbatch.models.builders import build_text_model

        return build_text_model(num_classes, settings)

    def save_assets(self, folder: Path, params: dict[str, Any], model: Any) -> None:
        """The tokenizer and the encoder's config, so the folder loads without the package it was trained from."""
        from deepbatch.cores.text import save_text_assets

        save_text_assets(folder, params["preprocessing"]["tokenizer"], model.encoder)

    def core_options(self, conf: Any, classes: list[str]) -> dict[str, Any]:
        return {"batch_size": conf.infer.batch_size}

    def score_rows(self, core: Any, rows: Any) -> Any:
        return core.predict(rows["text"].reset_index(drop=True))

    def int8_mode(self, requested: str) -> str:
        return "dynamic"  # static int8 is for the CNNs; encoders quantise their weights only

    def infer_plan(self, conf: Any, task: str, model_dir: str) -> InferPlan:
        """The task's model folder, or infer.text.hf_model (a local sequence-classification checkpoint) instead."""
        from deepbatch.cores.common import ModelFolder, local_path

        t = conf.infer.text
        if t.hf_model:
            folder = os.path.abspath(local_path(t.hf_model))
            return _plan("hf_text", folder, {"batch_size": conf.infer.batch_size, "max_length": t.max_length}, hf_classes(folder))
        options = {"batch_size": conf.infer.batch_size, "runtime": conf.infer.runtime, "quantized": conf.infer.quantize != "none"}
        return _plan("text", model_dir, options, ModelFolder.open(model_dir).classes)

    def pretrained_plan(self, conf: Any, task: str, model: str) -> InferPlan:
        """model hf:<folder>: a local sequence-classification checkpoint, loaded from safetensors, with its own classes."""
        from deepbatch.models.pretrained import sequence_classifier_folder

        folder = str(sequence_classifier_folder(model[len(HF_PREFIX) :], f"tasks.{task}.model"))
        return _plan("hf_text", folder, {"batch_size": conf.infer.batch_size, "max_length": conf.infer.text.max_length}, hf_classes(folder))


MODALITY: ModalityContract = TextModality()  # mypy holds the class to the contract
