"""Spark wrappers for the predictor cores: iterator-style pandas UDFs and mapInPandas.

The core is built on the executor the first time a Python worker needs it and
kept in a per-process cache keyed by its spec, so it is loaded once per worker
and reused across batches and tasks (Spark reuses Python workers by default,
``spark.python.worker.reuse``). The device is chosen there too, never on the
driver. Each task reports, through an accumulator, its worker's process id,
how many times that worker built the core, the rows it scored and the worker's
peak resident memory; the infer stage records these in its manifest.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
from pyspark.accumulators import AccumulatorParam
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import StructField, StructType

from deepbatch.modality import CoreSpec
from deepbatch.schemas import tables as T

_CORES: dict[tuple[Any, ...], Any] = {}
_LOADS: dict[tuple[Any, ...], int] = {}


def cached_core(key: tuple[Any, ...], build: Callable[[], Any]) -> tuple[Any, int]:
    """The core for ``key`` in this Python process, built on first use; (core, times built)."""
    if key not in _CORES:
        _CORES[key] = build()
        _LOADS[key] = _LOADS.get(key, 0) + 1
    return _CORES[key], _LOADS[key]


class WorkerStatsParam(AccumulatorParam):  # type: ignore[type-arg]
    """Merges per-worker reports: {pid: {loads, rows, batches, model_s, peak_rss_mb}}."""

    def zero(self, value: dict[int, dict[str, float]]) -> dict[int, dict[str, float]]:
        return {}

    def addInPlace(self, a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> dict[int, dict[str, float]]:
        for pid, s in b.items():
            if pid not in a:
                a[pid] = dict(s)
                continue
            cur = a[pid]
            for k in ("loads", "peak_rss_mb"):
                cur[k] = max(cur[k], s[k])
            for k in ("rows", "batches", "model_s"):
                cur[k] += s[k]
        return a


def summarise_workers(stats: dict[int, dict[str, float]]) -> dict[str, Any]:
    """The manifest's view of the accumulator: workers, loads per worker, rows, peak memory."""
    return {
        "python_workers": len(stats),
        "model_loads_per_worker": sorted({int(s["loads"]) for s in stats.values()}),
        "rows_scored": int(sum(s["rows"] for s in stats.values())),
        "model_seconds": round(sum(s["model_s"] for s in stats.values()), 2),
        "peak_worker_rss_mb": round(max((s["peak_rss_mb"] for s in stats.values()), default=0.0), 1),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def _worker_setup(spec: CoreSpec) -> tuple[Any, int]:
    from pyspark import TaskContext

    from deepbatch.cores.common import set_threads

    ctx = TaskContext.get()
    set_threads(spec.threads or (ctx.cpus() if ctx is not None else 1))
    return cached_core(spec.key, spec.build)


class _Reporter:
    """Per task: counts rows and model time, adds one report to the accumulator at the end."""

    def __init__(self, stats: Any, loads: int):
        self.stats, self.loads = stats, loads
        self.rows, self.batches, self.model_s = 0, 0, 0.0

    def add(self, rows: int, seconds: float) -> None:
        self.rows += rows
        self.batches += 1
        self.model_s += seconds

    def close(self) -> None:
        if self.stats is not None:
            self.stats.add({os.getpid(): {"loads": self.loads, "rows": self.rows, "batches": self.batches,
                                          "model_s": self.model_s, "peak_rss_mb": peak_rss_mb()}})


def _score(spec: CoreSpec, stats: Any, batches: Iterator[Any]) -> Iterator[tuple[Any, pd.DataFrame]]:
    """The worker loop shared by both wrappers: (input batch, its predictions stamped with model version,
    time and per-row model milliseconds), reporting to ``stats`` when the task ends."""
    core, loads = _worker_setup(spec)
    report = _Reporter(stats, loads)
    try:
        for batch in batches:
            t0 = time.perf_counter()
            out = core.predict(batch)
            dt = time.perf_counter() - t0
            report.add(len(batch), dt)
            out["model_version"] = str(core.version)
            out["inferred_at"] = pd.Timestamp.now(tz="UTC")
            out["infer_ms"] = 1000.0 * dt / max(len(batch), 1)
            yield batch, out.reset_index(drop=True)
    finally:
        report.close()


def series_udf(spec: CoreSpec, prediction_fields: list[StructField], stats: Any = None) -> Any:
    """pandas UDF over one column (image bytes or text) -> struct(prediction fields, error, model_version, inferred_at, infer_ms)."""
    schema = StructType(T.nullable([*prediction_fields, *T.PREDICTION_META]))

    @pandas_udf(schema)  # type: ignore[call-overload]
    def predict(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for _, out in _score(spec, stats, batches):
            yield out

    return predict


def frames_fn(spec: CoreSpec, stats: Any = None, passthrough: tuple[str, ...] | list[str] = ()) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """mapInPandas function: clip rows -> frame rows (the video core's columns, model_version, inferred_at,
    infer_ms, and the input's ``passthrough`` columns joined on record_id)."""
    keep = ["record_id", *passthrough]

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for clips, out in _score(spec, stats, batches):
            yield out.merge(clips[keep], on="record_id", how="left", validate="many_to_one") if passthrough else out

    return run
