"""The image predictor core under Spark: same predictions, model loaded once per worker."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from deepbatch.infer.image import ImageNetClassifier
from deepbatch.infer.spark import imagenet_udf

pytestmark = pytest.mark.integration

PHOTOS = Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0]) / "data"
NAMES = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg"]


def test_udf_matches_the_core_and_loads_the_model_once_per_worker(spark) -> None:
    rows = [(n, (PHOTOS / n).read_bytes()) for n in NAMES if (PHOTOS / n).is_file()]
    rows.append(("empty", b""))
    df = spark.createDataFrame(rows, "record_id string, content binary").repartition(2)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "2")  # several batches per task
    try:
        got = df.withColumn("p", imagenet_udf(top_k=3, batch_size=2)(F.col("content"))).select("record_id", "p.*").cache()
        got.count()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    core = ImageNetClassifier(top_k=3)
    expected_pd = core.predict(pd.Series([c for _, c in rows]))
    expected = spark.createDataFrame(
        [(rid, e.labels, e.error) for (rid, _), e in zip(rows, expected_pd.itertuples(), strict=True)],
        "record_id string, labels array<string>, error string",
    )
    assert_df_equality(got.select("record_id", "labels", "error"), expected, ignore_row_order=True, ignore_nullable=True)
    loads = got.groupBy("worker_pid").agg(F.max("model_loads").alias("loads")).collect()
    assert loads and all(r.loads == 1 for r in loads)
    assert got.filter("record_id = 'empty'").first().error.startswith("EMPTY_INPUT")
