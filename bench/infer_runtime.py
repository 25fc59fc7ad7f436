"""Inference runtimes side by side: eager torch against ONNX Runtime fp32 and int8, bare and under Spark.

    .venv/bin/python bench/infer_runtime.py [--images 256] [--texts 2000] [--clips 24] [--only bare,images,text,video]
                                            [--models data/models]

One process, the same rows and cores for every runtime; ratios are what to read (shared
machines are noisy).

1. Bare models, one process with every core:
   - EfficientNet-Lite0, batch 32 at 224x224: torch eager, torch channels_last, ONNX Runtime
     fp32, ONNX Runtime int8 (static, QDQ, calibrated on other photos);
   - the MiniLM-L6 text model (encoder + head), batch 64, sequence 64: torch, ONNX Runtime fp32,
     ONNX Runtime int8 (dynamic).
2. The Spark UDF path per modality and runtime (the predictor cores as the infer stage runs them):
   the bare core in one process per core (torch and ONNX Runtime each at 1 thread), then
   Spark local[cores] (a cold run, then the warm run that is timed), and the warm Spark rate
   over the bare core's (P1) and over the torch UDF's (the speed-up).

Images: real photos re-encoded as JPEG, scored by the ImageNet core. Text and video: the model
folders under --models (trained by `make run`; with int8 when it ran with infer.quantize=dynamic)
or, by default, folders with freshly initialised heads (the same compute), exported here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer_spark import CORES, REPO, bare_rate, clips_table, photos_table, session, spark_run, text_table  # noqa: E402

from deepbatch.catalog import load_conf  # noqa: E402
from deepbatch.config import Conf  # noqa: E402
from deepbatch.infer.spark import frames_fn, series_udf  # noqa: E402
from deepbatch.logs import setup_logging  # noqa: E402
from deepbatch.modality import MODALITIES, CoreSpec  # noqa: E402
from deepbatch.schemas.tables import CLASS_FIELDS, TOPK_FIELDS, VIDEO_INFER_ROWS  # noqa: E402


def rate(fn: Callable[[], Any], items: int, repeats: int = 3) -> float:
    fn()  # warm-up (graph optimisation, allocator)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return items / best


def bare_efficientnet(root: Path) -> dict[str, float]:
    from deepbatch.cores.image import ImageNetClassifier, imagenet_preprocess
    from deepbatch.cores.runtime import OrtGraph, export_graph, model_input
    from deepbatch.infer.export import _quantize

    core = ImageNetClassifier(runtime="torch")
    photos = photos_table(48)["content"].tolist()
    x = model_input(np.stack([imagenet_preprocess(b) for b in photos[:32]]))
    calib = [model_input(np.stack([imagenet_preprocess(b) for b in photos[32:48]]))]
    spec = core.graph_spec()
    model = spec.module.eval()
    graph = export_graph(spec, root / "effnet")
    _quantize(graph, root / "effnet" / "model.int8.onnx", "static", calib)
    fp32, int8 = OrtGraph(graph), OrtGraph(root / "effnet" / "model.int8.onnx")
    xt = torch.from_numpy(x)
    xcl = xt.contiguous(memory_format=torch.channels_last)
    cl = ImageNetClassifier(runtime="torch").model  # channels_last weights
    with torch.inference_mode():
        out = {"torch eager": rate(lambda: model(xt), 32), "torch channels_last": rate(lambda: cl(xcl), 32)}
        ref = model(xt).numpy()
    out["ONNX Runtime fp32"] = rate(lambda: fp32.run(x), 32)
    out["ONNX Runtime int8 (static)"] = rate(lambda: int8.run(x), 32)
    same = (int8.run(x)[0].argmax(1) == ref.argmax(1)).mean()
    print(f"[bare] EfficientNet-Lite0 int8 top-1 equal to fp32 on {same:.0%} of 32 photos", flush=True)
    return out


def bare_minilm(text_dir: Path) -> dict[str, float]:
    from deepbatch.cores.runtime import OrtGraph
    from deepbatch.cores.text import TrainedTextClassifier

    core = TrainedTextClassifier(str(text_dir), runtime="torch")
    texts = text_table(64)["text"].tolist()
    enc = core.tokenizer(texts, truncation=True, max_length=64, padding="max_length", return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    fp32, int8 = OrtGraph(text_dir / "model.onnx"), OrtGraph(text_dir / "model.int8.onnx")
    with torch.inference_mode():
        out = {"torch eager": rate(lambda: core.model(input_ids=ids, attention_mask=mask), 64)}
    out["ONNX Runtime fp32"] = rate(lambda: fp32.run(ids.numpy(), mask.numpy()), 64)
    out["ONNX Runtime int8 (dynamic)"] = rate(lambda: int8.run(ids.numpy(), mask.numpy()), 64)
    a, b = fp32.run(ids.numpy(), mask.numpy())[0], int8.run(ids.numpy(), mask.numpy())[0]
    print(f"[bare] MiniLM int8 logits: top-1 equal to fp32 on {(a.argmax(1) == b.argmax(1)).mean():.0%} of 64 texts", flush=True)
    return out


def prepare_models(conf: Conf, root: Path, models: str) -> dict[str, Path]:
    """Text and video model folders with their ONNX graphs (and the text model's int8 graph)."""
    from deepbatch.infer.export import _quantize, export_folder
    from deepbatch.train.scaffold import write_untrained_model

    out = {}
    for task, kind in (("text_cls", "text"), ("video_cls", "video")):
        if models:
            src = sorted(p for p in (Path(models) / task).glob("*") if (p / "model.safetensors").is_file())[-1]
            folder = Path(shutil.copytree(src, root / "models" / task / src.name))
        else:
            folder = write_untrained_model(conf, task, root / "models" / task / "bench")
        if not (folder / "model.onnx").is_file():
            opts = {"frames_per_clip": 8, "every_n": 0, "max_frames": 64, "imagenet_top1": False} if kind == "video" else {}
            export_folder(MODALITIES[kind], folder, **opts)
        if kind == "text" and not (folder / "model.int8.onnx").is_file():
            _quantize(folder / "model.onnx", folder / "model.int8.onnx", "dynamic", [])
        out[kind] = folder
    return out


def spark_variants(spark: Any, name: str, variants: dict[str, CoreSpec], df: pd.DataFrame, column: str | None, path: str,
                   arrow_batch: int, build: Callable[[CoreSpec], Callable[[Any, Any], Any]]) -> dict[str, dict[str, float]]:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(arrow_batch))
    # A multiple of the cores, so no task runs alone at the end of the job (that would measure the tail, not the path).
    partitions = CORES * max(1, len(df) // max(arrow_batch * 4 * CORES, 1))
    out = {}
    for runtime, spec in variants.items():
        one = bare_rate(spec, df, column, arrow_batch, 1)
        many = bare_rate(spec, df, column, arrow_batch, CORES)
        spark_run(spark, path, build(spec), partitions)  # cold: worker start and model load
        warm_s, _ = spark_run(spark, path, build(spec), partitions)
        warm = len(df) / warm_s
        out[runtime] = {"bare": max(one, many), "spark": warm, "p1": warm / max(one, many)}
        print(f"[{name}] {runtime:<18} bare 1x{CORES}: {one:8.1f}/s  bare {CORES}x1: {many:8.1f}/s  Spark warm: {warm:8.1f}/s  "
              f"P1 {warm / max(one, many):.3f}", flush=True)
    return out


def _spec(kind: str, model_dir: str, **options: Any) -> CoreSpec:
    return CoreSpec(kind, model_dir, tuple(sorted(options.items())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--only", default="bare,images,text,video")
    ap.add_argument("--models", default="", help="a models/ folder with trained text_cls and video_cls (default: fresh heads)")
    args = ap.parse_args()
    setup_logging()
    only = set(args.only.split(","))
    torch.set_num_threads(CORES)
    with tempfile.TemporaryDirectory(prefix="deepbatch-bench-runtime-") as tmp:
        root = Path(tmp)
        os.environ["DEEPBATCH_CACHE"] = str(root / "cache")  # the ImageNet graph is exported here, not into the user's cache
        conf = load_conf(REPO / "conf" / "local.yaml", [f"data_root={root}", f"spark.master=local[{CORES}]", "spark.conf.spark.ui.enabled=false"])
        folders = prepare_models(conf, root, args.models)
        bare: dict[str, dict[str, float]] = {}
        if "bare" in only:
            bare["EfficientNet-Lite0 (img/s, batch 32, 224x224)"] = bare_efficientnet(root)
            bare["MiniLM-L6 text model (seq/s, batch 64, length 64)"] = bare_minilm(folders["text"])
        spark = session(conf)
        b, results = conf.infer.batch_size, {}
        if "images" in only:
            variants = {rt: _spec("imagenet", "", batch_size=b, top_k=5, runtime=rt) for rt in ("torch", "onnxruntime")}
            results["images"] = spark_variants(spark, "images", variants, photos_table(args.images), "content", str(root / "i.parquet"), conf.infer.arrow_batch,
                                               lambda s: lambda df, st: df.select(series_udf(s, TOPK_FIELDS, st)(df["content"]).alias("p")))
        if "text" in only:
            t = str(folders["text"])
            variants = {"torch": _spec("text", t, batch_size=b, runtime="torch"), "onnxruntime": _spec("text", t, batch_size=b, runtime="onnxruntime"),
                        "onnxruntime int8": _spec("text", t, batch_size=b, runtime="onnxruntime", quantized=True)}
            results["text"] = spark_variants(spark, "text", variants, text_table(args.texts), "text", str(root / "t.parquet"), conf.infer.arrow_batch,
                                             lambda s: lambda df, st: df.select(series_udf(s, CLASS_FIELDS, st)(df["text"]).alias("p")))
        if "video" in only:
            v, vd = conf.infer.video, str(folders["video"])
            common = {"frames_per_clip": v.frames_per_clip, "every_n": v.every_n, "max_frames": v.max_frames, "imagenet_top1": v.imagenet_top1,
                      "imagenet_size": v.imagenet_size, "batch_size": b}
            variants = {rt: _spec("video", vd, runtime=rt, **common) for rt in ("torch", "onnxruntime")}
            schema = VIDEO_INFER_ROWS[: len(VIDEO_INFER_ROWS.fields) - 2]
            results["video"] = spark_variants(spark, "video", variants, clips_table(args.clips, root), None, str(root / "v.parquet"), v.arrow_batch,
                                              lambda s: lambda df, st: df.mapInPandas(frames_fn(s, st), schema))
        spark.stop()
        report(bare, results)


def report(bare: dict[str, dict[str, float]], results: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"\nbare models, 1 process x {CORES} threads")
    for model, rates in bare.items():
        base = next(iter(rates.values()))
        print(f"  {model}: " + " | ".join(f"{k} {r:.1f} ({r / base:.2f}x)" for k, r in rates.items()))
    print(f"\n{'modality':<8} {'runtime':<18} {'bare/s':>9} {'Spark/s':>9} {'P1 Spark/bare':>14} {'Spark vs torch Spark':>21}")
    for name, by_rt in results.items():
        torch_spark = by_rt["torch"]["spark"]
        for rt, r in by_rt.items():
            print(f"{name:<8} {rt:<18} {r['bare']:9.1f} {r['spark']:9.1f} {r['p1']:14.3f} {r['spark'] / torch_spark:20.2f}x")


if __name__ == "__main__":
    main()
