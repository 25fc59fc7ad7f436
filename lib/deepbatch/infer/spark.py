"""Spark wrappers for the predictor cores: iterator-style pandas UDFs, model cached per worker.

The core is built on the executor the first time a Python worker needs it and
kept in a per-process cache keyed by its settings, so it is loaded once per
worker and reused across batches and tasks (Spark reuses Python workers by
default, ``spark.python.worker.reuse``). The device is chosen there too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import ArrayType, FloatType, IntegerType, StringType, StructField, StructType

IMAGE_PREDICTION = StructType(
    [
        StructField("labels", ArrayType(StringType())),
        StructField("probs", ArrayType(FloatType())),
        StructField("error", StringType()),
        StructField("worker_pid", IntegerType()),
        StructField("model_loads", IntegerType()),
    ]
)

_CORES: dict[tuple[Any, ...], Any] = {}
_LOADS: dict[tuple[Any, ...], int] = {}


def cached_core(key: tuple[Any, ...], build: Callable[[], Any]) -> tuple[Any, int]:
    """The core for ``key`` in this Python process, built on first use; (core, times built)."""
    if key not in _CORES:
        _CORES[key] = build()
        _LOADS[key] = _LOADS.get(key, 0) + 1
    return _CORES[key], _LOADS[key]


def imagenet_udf(top_k: int = 5, batch_size: int = 64) -> Any:
    """pandas UDF: encoded image bytes -> struct(labels, probs, error, worker_pid, model_loads)."""

    @pandas_udf(IMAGE_PREDICTION)  # type: ignore[call-overload]
    def predict(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from deepbatch.infer.image import ImageNetClassifier

        key = ("imagenet", top_k, batch_size)
        core, loads = cached_core(key, lambda: ImageNetClassifier(top_k=top_k, batch_size=batch_size))
        pid = os.getpid()
        for images in batches:
            out = core.predict(images)
            out["worker_pid"] = pid
            out["model_loads"] = loads
            yield out.reset_index(drop=True)

    return predict
