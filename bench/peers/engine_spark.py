"""Spark local[cores] in the project's venv, three ways:

- ``deepbatch``: deepbatch's own path, as the infer and clean stages run it: the predictor cores in iterator pandas
  UDFs (``series_udf`` with the ImageNet or text core, ONNX Runtime, DCT-scaled decoding) and the image modality's
  ``check_images`` transform (decode probe, NFC ids, duplicate flags), under deepbatch's session factory;
- ``spark-torch``: Spark's documented recipe, ``pyspark.ml.functions.predict_batch_udf`` around the eager torch model
  (EfficientNet-Lite0 from the package that ships it, ``torch.set_num_threads(1)`` per worker);
- ``spark-onnx``: the same recipe around the shared ONNX graph, as a careful Spark user would write it.

The peers' per-row work is ``peer_ops`` (full decode). Every variant reads the input Parquet and writes Parquet.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "lib"))
import peer_ops  # noqa: E402

_SPARK: Any = None
ROWS_PER_TASK = 2000  # deepbatch's infer.rows_per_task default


def spark(cores: int) -> Any:
    global _SPARK
    if _SPARK is None:
        from deepbatch.catalog import load_conf
        from deepbatch.session import get_session

        conf = load_conf(HERE.parents[1] / "conf" / "local.yaml", [f"spark.master=local[{cores}]", "spark.conf.spark.ui.enabled=false",
                                                                  f"data_root={HERE.parents[1] / 'bench' / 'data' / 'peers' / 'spark'}"])
        _SPARK = get_session(conf)
        _SPARK.sparkContext.setLogLevel("ERROR")
    return _SPARK


def _read(path: str, cores: int) -> Any:
    df = spark(cores).read.parquet(path)
    if os.environ.get("PEERS_SPARK_SPLIT") == "files":  # the files' own splits: no shuffle of the content bytes
        return df
    return df.repartition(max(cores, math.ceil(df.count() / ROWS_PER_TASK)) * 2)


# --- deepbatch ---------------------------------------------------------------------------------------------------

def deepbatch_images(path: str, models: dict[str, str], cores: int, out: str) -> None:
    from deepbatch.infer.spark import series_udf
    from deepbatch.modality import CoreSpec
    from deepbatch.schemas.tables import TOPK_FIELDS

    spark(cores).conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
    spec = CoreSpec("imagenet", options=(("batch_size", 64), ("runtime", "auto"), ("top_k", 5)))
    df = _read(path, cores)
    df.select("record_id", series_udf(spec, TOPK_FIELDS)(df["content"]).alias("p")).select("record_id", "p.top_labels") \
        .write.mode("overwrite").parquet(out)


def deepbatch_texts(path: str, models: dict[str, str], cores: int, out: str) -> None:
    from deepbatch.infer.spark import series_udf
    from deepbatch.modality import CoreSpec
    from deepbatch.schemas.tables import CLASS_FIELDS

    spark(cores).conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "512")
    spec = CoreSpec("text", models["text_dir"], (("batch_size", 64), ("runtime", "auto")))
    df = _read(path, cores)
    df.select("record_id", series_udf(spec, CLASS_FIELDS)(df["text"]).alias("p")).select("record_id", "p.predicted") \
        .write.mode("overwrite").parquet(out)


def deepbatch_clean(path: str, models: dict[str, str], cores: int, out: str) -> None:
    from pyspark.sql import functions as F

    from deepbatch.modality.image import check_images
    from deepbatch.quality import REASON

    bronze = (_read(path, cores).withColumn("content_hash", F.sha2("content", 256)).withColumn("source_path", F.col("record_id"))
              .withColumn("modification_time", F.lit("2026-01-01").cast("timestamp")))
    check_images(bronze).where(F.col(REASON).isNull()).select("record_id").write.mode("overwrite").parquet(out)


# --- Spark's recipe: predict_batch_udf ----------------------------------------------------------------------------

def _onnx_images_fn(graph: str) -> Any:
    def make_predict_fn() -> Any:
        scorer = peer_ops.ImageScorer(graph, threads=1)
        return lambda content: scorer.top5(list(content))[0]

    return make_predict_fn


def _torch_images_fn() -> Any:
    def make_predict_fn() -> Any:
        import torch

        from deepbatch.models.builders import efficientnet_lite0

        torch.set_num_threads(1)
        model = efficientnet_lite0(pretrained=True).eval()

        def predict(content: np.ndarray) -> np.ndarray:
            pixels = np.stack([peer_ops.imagenet_pixels(bytes(c)) for c in content])
            with torch.inference_mode():
                logits = model(torch.from_numpy(peer_ops.model_input(pixels)))
            return torch.topk(logits, 5, dim=1).indices.numpy()

        return predict

    return make_predict_fn


def _recipe_images(make_predict_fn: Any, path: str, cores: int, out: str, batch: int) -> None:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, LongType

    udf = predict_batch_udf(make_predict_fn, return_type=ArrayType(LongType()), batch_size=batch)
    df = _read(path, cores)
    df.select("record_id", udf("content").alias("top5")).write.mode("overwrite").parquet(out)


def spark_onnx_images(path: str, models: dict[str, str], cores: int, out: str) -> None:
    _recipe_images(_onnx_images_fn(models["imagenet"]), path, cores, out, 64)


def spark_torch_images(path: str, models: dict[str, str], cores: int, out: str) -> None:
    _recipe_images(_torch_images_fn(), path, cores, out, 64)


def spark_onnx_texts(path: str, models: dict[str, str], cores: int, out: str) -> None:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import LongType

    graph, tokenizer = models["text_graph"], models["tokenizer"]

    def make_predict_fn() -> Any:
        scorer = peer_ops.TextScorer(graph, tokenizer, 128, threads=1)
        return lambda text: np.asarray(scorer.probs([str(t) for t in text]).argmax(1))

    udf = predict_batch_udf(make_predict_fn, return_type=LongType(), batch_size=256)
    df = _read(path, cores)
    df.select("record_id", udf("text").alias("top1")).write.mode("overwrite").parquet(out)


def spark_clean(path: str, models: dict[str, str], cores: int, out: str) -> None:
    """A careful Spark user's J4: a pandas UDF probe, then the first id of each content hash."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    df = _read(path, cores)  # the session first: a DDL return type needs it

    @pandas_udf("boolean")  # type: ignore[call-overload]
    def decodes(content: pd.Series) -> pd.Series:
        return content.map(lambda c: peer_ops.probe_image(bytes(c))[0])

    df = df.withColumn("sha", F.sha2("content", 256)).where(decodes("content"))
    first = F.row_number().over(Window.partitionBy("sha").orderBy("record_id"))
    df.withColumn("_n", first).where("_n = 1").select("record_id").write.mode("overwrite").parquet(out)


SETTINGS = {
    "deepbatch": {"images": {"udf": "deepbatch series_udf (iterator pandas UDF)", "arrow_batch": 64, "forward_batch": 16,
                             "runtime": "onnxruntime (auto)", "decode": "DCT-scaled", "threads_per_task": 1},
                  "texts": {"udf": "deepbatch series_udf", "arrow_batch": 512, "batch_size": 64, "runtime": "onnxruntime (auto)"},
                  "clean": {"transform": "deepbatch.modality.image.check_images"}},
    "spark-onnx": {"images": {"udf": "predict_batch_udf", "batch_size": 64, "forward_batch": 16, "onnxruntime_threads": 1},
                   "texts": {"udf": "predict_batch_udf", "batch_size": 256, "onnxruntime_threads": 1},
                   "clean": {"udf": "pandas_udf probe + sha2 + row_number window"}},
    "spark-torch": {"images": {"udf": "predict_batch_udf", "batch_size": 64, "torch_threads": 1, "model": "eager, fp32"}},
}

ENGINES = {
    "deepbatch": {"images_small": deepbatch_images, "images_phone": deepbatch_images, "texts": deepbatch_texts, "images_clean": deepbatch_clean},
    "spark-onnx": {"images_small": spark_onnx_images, "images_phone": spark_onnx_images, "texts": spark_onnx_texts, "images_clean": spark_clean},
    "spark-torch": {"images_small": spark_torch_images, "images_phone": spark_torch_images},
}


KIND = {"images_small": "images", "images_phone": "images", "texts": "texts", "images_clean": "clean"}


def settings_by_job(engine: str) -> dict[str, dict[str, Any]]:
    return {job: SETTINGS[engine][KIND[job]] for job in ENGINES[engine] if KIND[job] in SETTINGS[engine]}


if __name__ == "__main__":
    engine = sys.argv.pop(1)
    raise SystemExit(peer_ops.run_engine(engine, ENGINES[engine], settings_by_job(engine)))
