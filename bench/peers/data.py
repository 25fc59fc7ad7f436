"""The peer benchmark's inputs and models, written once into a work folder (project venv: it uses deepbatch).

- ``images_small.parquet``: JPEGs of the real scikit-image photos (about 300 to 600 pixels a side), each row a
  different random crop, flip and quality, so no two rows hold the same bytes;
- ``images_phone.parquet``: the same kind of rows scaled to phone size (2000x1500, quality 90);
- ``texts.parquet``: Rotten Tomatoes snippets, cycled to the row count;
- ``images_clean.parquet`` (J4): small photos plus exact duplicates (1 in 10) and undecodable bytes (1 in 50);
- ``models/imagenet.onnx``: the pretrained EfficientNet-Lite0 graph deepbatch scores with;
- ``models/text_cls/``: a deepbatch text model folder (MiniLM encoder, seeded untrained head: the same compute as a
  trained one) with its ``model.onnx`` and ``encoder/tokenizer.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from deepbatch.catalog import load_conf
from deepbatch.cores.image import pretrained_imagenet_graph
from deepbatch.demo.sources import load_rotten_tomatoes, photo_files
from deepbatch.infer.export import export_folder
from deepbatch.modality import MODALITIES
from deepbatch.train.scaffold import write_untrained_model

REPO = Path(__file__).resolve().parents[2]


def _photos() -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in photo_files()]


def _variant(img: np.ndarray, rng: np.random.Generator, phone: bool) -> bytes:
    h, w = img.shape[:2]
    f = rng.uniform(0.8, 1.0)
    ch, cw = int(h * f), int(w * f)
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = img[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if phone:
        out = cv2.resize(out, (2000, 1500) if cw >= ch else (1500, 2000), interpolation=cv2.INTER_CUBIC)
    quality = 90 if phone else int(rng.integers(85, 96))
    return cv2.imencode(".jpg", np.ascontiguousarray(out), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def image_table(n: int, phone: bool, seed: int) -> pd.DataFrame:
    rng, photos = np.random.default_rng(seed), _photos()
    return pd.DataFrame({"record_id": [f"img-{i:07d}" for i in range(n)],
                         "content": [_variant(photos[i % len(photos)], rng, phone) for i in range(n)]})


def clean_table(n: int) -> pd.DataFrame:
    """J4's input: every 10th row repeats the row before it, every 50th is cut bytes that no decoder reads."""
    base = image_table(n, False, 7)
    content = base["content"].tolist()
    for i in range(n):
        if i % 50 == 49:
            content[i] = b"\xff\xd8\xff\xe0 not really a jpeg"
        elif i % 10 == 9:
            content[i] = content[i - 1]
    return base.assign(content=content)


def text_table(n: int) -> pd.DataFrame:
    texts = load_rotten_tomatoes()["text"].tolist()
    return pd.DataFrame({"record_id": [f"txt-{i:07d}" for i in range(n)], "text": [texts[i % len(texts)] for i in range(n)]})


def write(df: pd.DataFrame, path: Path, rows_per_file: int) -> None:
    """Several Parquet files per input, so every engine can split the work across its workers."""
    path.mkdir(parents=True, exist_ok=True)
    for k, s in enumerate(range(0, len(df), rows_per_file)):
        pq.write_table(pa.Table.from_pandas(df.iloc[s : s + rows_per_file], preserve_index=False), path / f"part-{k:04d}.parquet",
                       row_group_size=64)


def models(root: Path) -> dict[str, str]:
    folder = root / "models"
    folder.mkdir(parents=True, exist_ok=True)
    graph = pretrained_imagenet_graph()
    shutil.copyfile(graph, folder / "imagenet.onnx")
    text = folder / "text_cls"
    if not (text / "model.onnx").is_file():
        shutil.rmtree(text, ignore_errors=True)
        conf = load_conf(REPO / "conf" / "local.yaml", [f"data_root={root}"])
        write_untrained_model(conf, "text_cls", text, classes=["fresh", "rotten"])
        export_folder(MODALITIES["text"], text)
    return {"imagenet": str(folder / "imagenet.onnx"), "text_dir": str(text), "text_graph": str(text / "model.onnx"),
            "tokenizer": str(text / "encoder" / "tokenizer.json")}


def build(root: Path, images: int, phone: int, texts: int, clean: int) -> dict[str, str]:
    """Every input (re)written when its row count changed; returns {job input name: folder} plus the model paths."""
    wanted = {"images_small": (lambda: image_table(images, False, 1), images), "images_phone": (lambda: image_table(phone, True, 2), phone),
              "texts": (lambda: text_table(texts), texts), "images_clean": (lambda: clean_table(clean), clean)}
    out = {}
    for name, (make, n) in wanted.items():
        path = root / f"{name}-{n}"
        if not path.is_dir():
            df = make()
            write(df, path, max(1, len(df) // 8))
        out[name] = str(path)
    return {**out, **models(root)}
