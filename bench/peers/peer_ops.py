"""The work every peer engine does, written once, with nothing but numpy, OpenCV, ONNX Runtime and tokenizers.

Each engine's runner (Spark's ``predict_batch_udf``, Ray Data, Daft) imports this file from its own virtualenv,
so the engines differ only in how they move the rows, not in what they compute per row. The preprocessing is what
a careful user writes: OpenCV's full decode, the shorter side to 256 with area interpolation, a 224 centre crop,
x/255 normalised to [-1, 1] (EfficientNet-Lite's mean = std = 0.5). deepbatch's own path differs only by its
levers (DCT-scaled decoding), and top-1 agreement with it is part of the table.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SIZE, SHORTER, FORWARD_BATCH = 224, 256, 16


def imagenet_pixels(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> 224x224x3 RGB uint8: full decode, shorter side to 256 (area), centre crop."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("undecodable image")
    h, w = img.shape[:2]
    scale = SHORTER / min(h, w)
    nh, nw = max(SIZE, round(h * scale)), max(SIZE, round(w * scale))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR)
    top, left = (nh - SIZE) // 2, (nw - SIZE) // 2
    return np.ascontiguousarray(cv2.cvtColor(img[top : top + SIZE, left : left + SIZE], cv2.COLOR_BGR2RGB))


def model_input(pixels: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)
    x *= 2.0 / 255.0
    x -= 1.0
    return x


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def session(graph: str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    return ort.InferenceSession(graph, sess_options=opts, providers=["CPUExecutionProvider"])


class ImageScorer:
    """ImageNet top-5 of encoded images with the shared ONNX graph (forward batches of 16, as deepbatch's CPU default)."""

    def __init__(self, graph: str, threads: int = 1):
        self.session = session(graph, threads)

    def top5(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(N×5 class indices, N×5 probabilities); an undecodable image gets -1 and zeros."""
        idx, probs = np.full((len(images), 5), -1, np.int64), np.zeros((len(images), 5), np.float32)
        ok, pixels = [], []
        for i, data in enumerate(images):
            try:
                pixels.append(imagenet_pixels(data))
                ok.append(i)
            except Exception:  # noqa: BLE001 - that row's result stays empty
                continue
        for s in range(0, len(ok), FORWARD_BATCH):
            rows = ok[s : s + FORWARD_BATCH]
            p = softmax(self.session.run(None, {"pixels": model_input(np.stack(pixels[s : s + FORWARD_BATCH]))})[0])
            best = np.argsort(-p, axis=1, kind="stable")[:, :5]
            idx[rows], probs[rows] = best, np.take_along_axis(p, best, axis=1)
        return idx, probs


class TextScorer:
    """Class probabilities of texts with the shared graph and tokenizer (rows sorted by length, padded per batch)."""

    def __init__(self, graph: str, tokenizer_json: str, max_length: int, threads: int = 1, batch: int = 64):
        from tokenizers import Tokenizer

        self.session = session(graph, threads)
        self.tokenizer = Tokenizer.from_file(tokenizer_json)
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        self.batch = batch

    def probs(self, texts: list[str]) -> np.ndarray:
        enc = [e.ids for e in self.tokenizer.encode_batch(texts)]
        out = None
        order = np.argsort([len(e) for e in enc], kind="stable")
        for s in range(0, len(order), self.batch):
            rows = order[s : s + self.batch]
            width = max(len(enc[r]) for r in rows)
            ids, mask = np.zeros((len(rows), width), np.int64), np.zeros((len(rows), width), np.int64)
            for j, r in enumerate(rows):
                ids[j, : len(enc[r])], mask[j, : len(enc[r])] = enc[r], 1
            p = softmax(self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
            out = np.zeros((len(texts), p.shape[1]), np.float32) if out is None else out
            out[rows] = p
        return out if out is not None else np.zeros((0, 0), np.float32)


def probe_image(data: bytes) -> tuple[bool, int, int, str]:
    """J4, what clean does per image: (decodes, width, height, content hash)."""
    digest = hashlib.sha256(data).hexdigest()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return False, 0, 0, digest
    return True, int(img.shape[1]), int(img.shape[0]), digest


def write_result(out: Path, **fields: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(fields, indent=1, default=float))


def run_engine(engine: str, jobs: dict[str, Any], settings: dict[str, dict[str, Any]], argv: list[str] | None = None) -> int:
    """The runner every engine script shares: the job twice in one process (cold, then warm), its rows written as
    Parquet by the engine, then ``result.json`` (run times, when the first run ended, the settings used)."""
    import argparse
    import time

    ap = argparse.ArgumentParser()
    ap.add_argument("--job", required=True, choices=sorted(jobs))
    ap.add_argument("--input", required=True)
    ap.add_argument("--models", required=True, help="JSON of model paths (bench/peers/data.py)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    out, models = Path(args.out), json.loads(Path(args.models).read_text())
    runs, first_done = [], 0.0
    for r in range(args.repeat):
        shutil.rmtree(out / f"rows-{r}", ignore_errors=True)  # some engines add files to a folder that exists
        t0 = time.perf_counter()
        jobs[args.job](args.input, models, args.cores, str(out / f"rows-{r}"))
        runs.append(time.perf_counter() - t0)
        first_done = first_done or time.time()
    write_result(out, engine=engine, job=args.job, runs_s=runs, first_done=first_done, settings=settings.get(args.job, {}),
                 rows_dir=str(out / f"rows-{args.repeat - 1}"))
    return 0
