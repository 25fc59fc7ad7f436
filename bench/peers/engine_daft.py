"""Daft, as its docs recommend for model inference: ``@daft.cls`` with a ``@daft.method.batch`` method, one instance
per worker process (``max_concurrency`` = cores, ``use_process``), reading and writing Parquet natively."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import daft
import numpy as np
from daft import col

sys.path.insert(0, str(Path(__file__).resolve().parent))
import os  # noqa: E402

import peer_ops  # noqa: E402

CORES = int(os.environ.get("PEERS_CORES", "2"))
BATCH = {"images_small": 64, "images_phone": 64, "texts": 256, "images_clean": 64}
SETTINGS = {job: {"udf": "@daft.cls + @daft.method.batch", "batch_size": b, "max_concurrency": CORES, "use_process": True,
                  "onnxruntime_threads": 1} for job, b in BATCH.items()}


@daft.cls(max_concurrency=CORES, use_process=True)
class Images:
    def __init__(self, graph: str):
        self.scorer = peer_ops.ImageScorer(graph, threads=1)

    @daft.method.batch(return_dtype=daft.DataType.list(daft.DataType.int64()), batch_size=BATCH["images_small"])
    def top5(self, content: daft.Series) -> list[list[int]]:
        idx, _ = self.scorer.top5(content.to_pylist())
        return idx.tolist()


@daft.cls(max_concurrency=CORES, use_process=True)
class Texts:
    def __init__(self, graph: str, tokenizer: str):
        self.scorer = peer_ops.TextScorer(graph, tokenizer, 128, threads=1)

    @daft.method.batch(return_dtype=daft.DataType.int64(), batch_size=BATCH["texts"])
    def top1(self, text: daft.Series) -> list[int]:
        return np.asarray(self.scorer.probs([str(t) for t in text.to_pylist()]).argmax(1)).tolist()


@daft.func(return_dtype=daft.DataType.struct({"ok": daft.DataType.bool(), "width": daft.DataType.int64(),
                                               "height": daft.DataType.int64(), "sha": daft.DataType.string()}))
def probe(content: bytes) -> dict[str, Any]:
    ok, w, h, sha = peer_ops.probe_image(content)
    return {"ok": ok, "width": w, "height": h, "sha": sha}


def images(path: str, models: dict[str, str], cores: int, out: str) -> None:
    df = daft.read_parquet(f"{path}/*.parquet")
    df.select(col("record_id"), Images(models["imagenet"]).top5(col("content")).alias("top5")).write_parquet(out)


def texts(path: str, models: dict[str, str], cores: int, out: str) -> None:
    df = daft.read_parquet(f"{path}/*.parquet")
    df.select(col("record_id"), Texts(models["text_graph"], models["tokenizer"]).top1(col("text")).alias("top1")).write_parquet(out)


def clean(path: str, models: dict[str, str], cores: int, out: str) -> None:
    df = daft.read_parquet(f"{path}/*.parquet").with_column("p", probe(col("content")))
    ok = df.where(col("p")["ok"]).select(col("record_id"), col("p")["sha"].alias("sha"))
    ok.groupby("sha").agg(col("record_id").min().alias("record_id")).select("record_id").write_parquet(out)


if __name__ == "__main__":
    raise SystemExit(peer_ops.run_engine("daft", {"images_small": images, "images_phone": images, "texts": texts, "images_clean": clean},
                                         SETTINGS))
