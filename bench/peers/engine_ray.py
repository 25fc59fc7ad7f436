"""Ray Data, as its batch-inference docs recommend: ``read_parquet`` -> ``map_batches`` with a callable class on an
actor pool (one actor per core, ``num_cpus=1`` each) -> ``write_parquet``. ``ray.init(num_cpus=cores + 1)``: with
exactly ``cores`` CPUs the actors take them all and the read tasks wait forever (seen with Ray 2.60 on 2 CPUs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
from ray.data import ActorPoolStrategy
from ray.data.expressions import col

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_ops  # noqa: E402

BATCH = {"images_small": 64, "images_phone": 64, "texts": 256, "images_clean": 64}
SETTINGS = {job: {"udf": "map_batches(callable class, compute=ActorPoolStrategy(size=cores), num_cpus=1)", "batch_size": b,
                  "batch_format": "pandas", "read_parquet": "then repartition(4 x cores)", "ray_init_num_cpus": "cores + 1",
                  "onnxruntime_threads": 1} for job, b in BATCH.items()}


class Images:
    def __init__(self, graph: str):
        self.scorer = peer_ops.ImageScorer(graph, threads=1)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        idx, _ = self.scorer.top5(batch["content"].tolist())
        return pd.DataFrame({"record_id": batch["record_id"].to_numpy(), "top5": list(idx)})


class Texts:
    def __init__(self, graph: str, tokenizer: str):
        self.scorer = peer_ops.TextScorer(graph, tokenizer, 128, threads=1)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        top1 = np.asarray(self.scorer.probs([str(t) for t in batch["text"]]).argmax(1))
        return pd.DataFrame({"record_id": batch["record_id"].to_numpy(), "top1": top1})


def probe(batch: pd.DataFrame) -> pd.DataFrame:
    probed = [peer_ops.probe_image(c) for c in batch["content"]]
    return pd.DataFrame({"record_id": batch["record_id"].to_numpy(), "ok": [p[0] for p in probed], "sha": [p[3] for p in probed]})


def _start(cores: int) -> None:
    if not ray.is_initialized():
        ray.init(num_cpus=cores + 1, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})


def _read(path: str, cores: int) -> Any:
    # Ray 2.60's Parquet reader makes one block of these 8 files whatever override_num_blocks says, and one block feeds
    # one actor (Ray's own warning says so): repartition into 4 blocks per core keeps every actor fed.
    return ray.data.read_parquet(path).repartition(4 * cores)


def images(path: str, models: dict[str, str], cores: int, out: str) -> None:
    _start(cores)
    ds = _read(path, cores)
    ds.map_batches(Images, fn_constructor_args=(models["imagenet"],), compute=ActorPoolStrategy(size=cores), num_cpus=1, batch_size=BATCH["images_small"],
                   batch_format="pandas").write_parquet(out)


def texts(path: str, models: dict[str, str], cores: int, out: str) -> None:
    _start(cores)
    ds = _read(path, cores)
    ds.map_batches(Texts, fn_constructor_args=(models["text_graph"], models["tokenizer"]), compute=ActorPoolStrategy(size=cores), num_cpus=1,
                   batch_size=BATCH["texts"], batch_format="pandas").write_parquet(out)


def clean(path: str, models: dict[str, str], cores: int, out: str) -> None:
    _start(cores)
    ds = _read(path, cores).map_batches(probe, batch_size=BATCH["images_clean"], batch_format="pandas", num_cpus=1)
    kept = ds.filter(expr=col("ok")).groupby("sha").min("record_id")
    kept.rename_columns({"min(record_id)": "record_id"}).select_columns(["record_id"]).write_parquet(out)


if __name__ == "__main__":
    raise SystemExit(peer_ops.run_engine("ray", {"images_small": images, "images_phone": images, "texts": texts, "images_clean": clean},
                                         SETTINGS))
