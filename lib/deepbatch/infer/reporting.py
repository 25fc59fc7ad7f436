"""infer's part of the run report: the Spark side (small aggregates and a few rows to the driver)."""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from deepbatch.report.page import Part
from deepbatch.report.predictions import CONFIDENCE_BIN, Preview, ScoredSample, predictions_part

PREVIEW_MAX_BYTES = 16 << 20  # larger inputs are shown as a placeholder, not collected to the driver


def top_prediction(df: DataFrame) -> tuple[Column, Column]:
    """The top label and its probability, for top-k tables and for class-probability tables."""
    if "top_labels" in df.columns:
        return F.col("top_labels").getItem(0), F.col("top_probs").getItem(0)
    return F.col("predicted"), F.col("predicted_prob")


def confidence_bins(scored: DataFrame, confidence: Column) -> dict[float, int]:
    edge = (F.least(F.floor(confidence / CONFIDENCE_BIN), F.lit(int(1 / CONFIDENCE_BIN) - 1)) * CONFIDENCE_BIN).alias("bin")
    rows = scored.where(confidence.isNotNull()).groupBy(edge).count().orderBy("bin").collect()
    return {round(float(r["bin"]), 4): int(r["count"]) for r in rows}


def _samples(picked: DataFrame, source: DataFrame, column: str) -> list[ScoredSample]:
    """Join the few picked rows with their input (bytes or text) and turn them into samples."""
    value = F.col(column)
    if dict(source.dtypes)[column] == "binary":
        value = F.when(F.length(value) <= PREVIEW_MAX_BYTES, value)
    joined = picked.join(source.select("record_id", value.alias("_input")), "record_id", "left").orderBy(F.desc("_conf"), "record_id")
    out = []
    for r in joined.collect():
        top = list(zip(r["top_labels"], r["top_probs"], strict=False)) if "top_labels" in joined.columns and r["top_labels"] else []
        raw = r["_input"]
        out.append(ScoredSample(r["record_id"], r["label"], r["_pred"], None if r["_conf"] is None else float(r["_conf"]),
                                [(str(lbl), float(p)) for lbl, p in top],
                                bytes(raw) if isinstance(raw, (bytes, bytearray)) else None,
                                raw if isinstance(raw, str) else None))
    return out


def prediction_part(scored: DataFrame, source: DataFrame, column: str, target: str, preview: Preview | None, stats: dict[str, Any],
                    n: int) -> Part:
    """The target's part: its figures, confidence histogram, most confident errors, or a sample when unlabelled."""
    predicted, confidence = top_prediction(scored)
    ok = scored.where(F.col("error").isNull()).withColumn("_pred", predicted).withColumn("_conf", confidence)
    wrong = ok.where(F.col("label").isNotNull() & (F.col("_pred") != F.col("label")))
    errors = _samples(wrong.orderBy(F.desc("_conf"), "record_id").limit(n), source, column) if n else []
    labelled = bool(stats.get("accuracy_by_split"))
    showcase = [] if labelled or not n else _samples(ok.orderBy(F.xxhash64("record_id"), "record_id").limit(n), source, column)
    return predictions_part(target, preview, stats, confidence_bins(ok, F.col("_conf")), errors, showcase)
