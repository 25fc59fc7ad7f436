"""Training feed benchmark: Petastorm reader vs the same tensors from memory, side by side.

    .venv/bin/python bench/loader_feed.py [--dataset data/datasets/image_cls/<version>/train] [--batch 128]

Prints, from one run:
- samples/s through petastorm.pytorch.DataLoader alone;
- training steps/s (CompactCNN, CPU or CUDA) fed by each;
- feed / consumption ratio: the reader's samples/s over the model's samples/s when fed from
  memory (the goal is >= 3, so the feed is never the bottleneck).
Spark-free, so it runs on a GPU host with only the Python stack.
"""

from __future__ import annotations

import argparse
import glob
import time
import warnings
from pathlib import Path

import torch
from torch import nn

warnings.filterwarnings("ignore")


def reader_batches(url: str, batch: int, workers: int):
    from petastorm import make_reader
    from petastorm.pytorch import DataLoader

    reader = make_reader(url, schema_fields=["image", "label_index"], num_epochs=None, workers_count=workers, shuffle_rows=True, seed=1)
    return DataLoader(reader, batch_size=batch, shuffling_queue_capacity=4 * batch), reader


def to_xy(b: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loop's own batch conversion, so both paths do the same work."""
    from deepbatch.train.data import to_inputs

    (x,), y = to_inputs("image", b, device)
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default=None, help="a Petastorm image_cls split (default: newest under data/datasets/image_cls)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    path = args.dataset or sorted(glob.glob("data/datasets/image_cls/*/train"))[-1]
    url = path if "://" in path else "file://" + str(Path(path).resolve())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from deepbatch.models.builders import CompactCNN

    loader, reader = reader_batches(url, args.batch, args.workers)
    it = iter(loader)
    cached = [next(it) for _ in range(8)]  # warm-up, and the in-memory copy
    n = args.steps * args.batch

    t0 = time.perf_counter()
    for _ in range(args.steps):
        next(it)
    feed_reader = n / (time.perf_counter() - t0)

    mem = [to_xy(b, device) for b in cached]

    model = CompactCNN(1, 10, width=16).to(device)  # the image_cls default (conf tasks.image_cls.train.width)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for x, y in mem[:3]:
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(*mem[i % len(mem)])
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_memory = n / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(*to_xy(next(it), device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_reader = n / (time.perf_counter() - t0)
    reader.stop()
    reader.join()

    print(f"dataset {url} | device {device} | batch {args.batch} | {args.steps} steps each")
    print(f"feed only     : petastorm {feed_reader:10.0f} samples/s (decoded, batched tensors)")
    print(f"train step    : petastorm {train_reader:10.0f} samples/s   memory {train_memory:10.0f} samples/s   ratio {train_reader / train_memory:.3f}")
    print(f"feed / model consumption: {feed_reader / train_memory:.2f}x (goal >= 3)")


if __name__ == "__main__":
    main()
