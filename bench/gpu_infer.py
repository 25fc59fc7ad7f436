"""P2 (CUDA hosts): the image core end to end on Arrow batches of real JPEG bytes, next to the bare model.

    python bench/gpu_infer.py --make-photos bench/data/photos.parquet      # once, where scikit-image is installed
    python bench/gpu_infer.py --photos bench/data/photos.parquet [--rows 8192] [--batch 256]
                              [--models resnet50,efficientnet_lite0] [--pre-resize 256] [--device cuda]

No Spark: the script reads the Parquet file with pyarrow, replicates its photos
to ``--rows`` rows, and feeds the image core (``ImageNetClassifier``) Arrow
batches converted to pandas exactly as Spark's pandas UDFs receive them. For
each model it prints, from the same run:

- the bare model: random uint8 batches already on the device, normalised, bf16,
  channels_last (what the DESIGN.md figures measure);
- the core end to end: JPEG bytes -> nvJPEG decode (torchvision, when present;
  OpenCV otherwise) -> resize/crop -> bf16 forward -> top-5 on the host;
- their ratio, and how many images nvJPEG decoded.

``--pre-resize 256`` re-encodes the photos at 256×256 first (what the clean or
materialise stage can store), so decode is cheaper and resize becomes a crop.
ResNet-50 comes from transformers with random weights (the DESIGN.md figures
used random weights too); EfficientNet-Lite0 is the real pretrained model.
Runs on the CPU as well (``--device cpu``) to check the wiring.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn


def make_photos(out: Path) -> None:
    import cv2

    from deepbatch.demo.sources import photo_files

    rows = []
    for p in photo_files():
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        rows.append((p.stem, cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()))
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"record_id": [r for r, _ in rows], "content": [c for _, c in rows]}), out)
    print(f"wrote {len(rows)} photos to {out}")


def load_rows(path: Path, rows: int, pre_resize: int) -> pa.Table:
    t = pq.read_table(path, columns=["content"])
    photos = t.column("content").to_pylist()
    if pre_resize:
        import cv2

        def shrink(b: bytes) -> bytes:
            img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
            img = cv2.resize(img, (pre_resize, pre_resize), interpolation=cv2.INTER_AREA)
            return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()

        photos = [shrink(b) for b in photos]
    return pa.table({"content": pa.array([photos[i % len(photos)] for i in range(rows)], type=pa.binary())})


class _Logits(nn.Module):
    """transformers' image classifiers return an output object; the core wants logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def build(name: str) -> nn.Module:
    if name == "resnet50":
        from transformers import ResNetConfig, ResNetForImageClassification

        cfg = ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], num_labels=1000)
        return _Logits(ResNetForImageClassification(cfg))
    if name == "efficientnet_lite0":
        from deepbatch.models.builders import efficientnet_lite0

        return efficientnet_lite0(pretrained=True)
    raise SystemExit(f"unknown model {name!r}: resnet50 | efficientnet_lite0")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_rate(model: nn.Module, device: torch.device, batch: int, seconds: float) -> float:
    cuda = device.type == "cuda"
    m = model.eval().to(device)
    if cuda:
        m = m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8, device=device)

    def step() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            y = x.float().div(255.0).sub(0.5).div(0.5)
            if cuda:
                y = y.contiguous(memory_format=torch.channels_last)
            torch.topk(torch.softmax(m(y).float(), 1), 5, dim=1)

    for _ in range(3):
        step()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += batch
    sync(device)
    return n / (time.perf_counter() - t0)


def core_rate(core: Any, table: pa.Table, batch: int, arrow_batch: int) -> float:
    batches = table.to_batches(max_chunksize=arrow_batch)
    core.predict(batches[0].to_pandas()["content"].head(batch))  # warm-up: cuDNN autotune, nvJPEG handles
    sync(core.device)
    t0 = time.perf_counter()
    for b in batches:
        out = core.predict(b.to_pandas()["content"])
        if out["error"].notna().any():
            raise SystemExit(f"the core reported errors: {out['error'].dropna().unique()[:3]}")
    sync(core.device)
    return table.num_rows / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-photos", type=Path)
    ap.add_argument("--photos", type=Path, default=Path("bench/data/photos.parquet"))
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--arrow-batch", type=int, default=2048)
    ap.add_argument("--models", default="resnet50,efficientnet_lite0")
    ap.add_argument("--pre-resize", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.make_photos:
        make_photos(args.make_photos)
        return
    from deepbatch.cores.image import ImageNetClassifier

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    table = load_rows(args.photos, args.rows, args.pre_resize)
    mb = sum(len(b) for b in table.column("content").to_pylist()[:1000]) / min(1000, table.num_rows) * table.num_rows / 2**20
    resized = f", pre-resized to {args.pre_resize}" if args.pre_resize else ""
    print(f"{table.num_rows} JPEGs ({mb:.0f} MB{resized}), batch {args.batch}")
    print(f"\nP2  {'model':<20} {'bare img/s':>11} {'core img/s':>11} {'core/bare':>10} {'nvJPEG':>8}")
    for name in args.models.split(","):
        model = build(name)
        bare = bare_rate(model, device, args.batch, args.seconds)
        core = ImageNetClassifier(top_k=5, batch_size=args.batch, device=str(device), model=model)
        e2e = core_rate(core, table, args.batch, args.arrow_batch)
        print(f"P2  {name:<20} {bare:11.0f} {e2e:11.0f} {e2e / bare:10.3f} {core.decoded_on_gpu:8d}", flush=True)


if __name__ == "__main__":
    main()
