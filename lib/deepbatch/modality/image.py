"""Images: what the image modality's stages do (see :mod:`deepbatch.modality`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def silver_schema(metadata: tuple[str, ...]) -> Any:
    from deepbatch.schemas import tables as T

    return T.SILVER_IMAGES


def gold_schema(metadata: tuple[str, ...]) -> Any:
    from deepbatch.schemas import tables as T

    return T.GOLD_IMAGE_CLS


def check(df: Any, conf: Any, classes: list[str] | None, metadata: tuple[str, ...] = (), labelled: bool = False) -> Any:
    from deepbatch.stages import clean as C

    return C.check_images(df, conf.quality.max_image_pixels)


def profile(df: Any) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from deepbatch.stages.analyse import count_by

    return {"image_sizes": count_by(df.withColumn("size", F.concat_ws("x", "width", "height")), "size"), "channels": count_by(df, "channels")}


def unischema(d: Any, prep: dict[str, Any]) -> Any:
    from deepbatch.schemas import petastorm as P

    return P.image_cls_schema(int(prep["image_size"]), int(prep["channels"]))


def encode_rows(rows: Iterable[Any], schema: Any, d: Any, tokenizer_dir: str | None, prep: dict[str, Any]) -> Iterator[Any]:
    """Gold images through the model's preprocessing (the one the predictor core applies), as Petastorm rows."""
    from petastorm.unischema import dict_to_spark_row

    from deepbatch.infer.image import preprocess_image

    for r in rows:
        img = preprocess_image(r.content, prep)
        img = img[:, :, 0] if img.shape[2] == 1 else img
        yield dict_to_spark_row(schema, {"record_id": r.record_id, "label_index": r.label_index, "image": img})


def dataset_extra(spark: Any, urls: list[str]) -> dict[str, Any]:
    return {}


def to_inputs(batch: dict[str, Any], device: Any) -> tuple[tuple[Any, ...], Any]:
    y = batch["label_index"].long().to(device, non_blocking=True)
    x = batch["image"].to(device, non_blocking=True).float().div_(255.0).sub_(0.5).div_(0.5)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return (x.contiguous(),), y


def settings(conf: Any, hp: Any, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """compact_cnn: small images at datasets.image_size/image_channels, squashed. efficientnet_lite0: the pretrained
    ImageNet backbone's own preprocessing (224x224 RGB, shorter side to 256 then centre crop, as the ImageNet core)."""
    from deepbatch.infer.image import IMAGENET_SIZE, RESIZE_SHORTER

    if model == "efficientnet_lite0":
        return ({"model": model, "freeze_encoder": hp.freeze_encoder, "dropout": hp.dropout, "pretrained": True},
                {"image_size": IMAGENET_SIZE, "channels": 3, "resize": "shorter_crop", "shorter": RESIZE_SHORTER, "scale": "x/255",
                 "mean": 0.5, "std": 0.5})  # fmt: skip
    d = conf.datasets
    return ({"in_channels": d.image_channels, "width": hp.width, "dropout": hp.dropout},
            {"image_size": d.image_size, "channels": d.image_channels, "scale": "x/255", "mean": 0.5, "std": 0.5})  # fmt: skip


def build(num_classes: int, settings: dict[str, Any]) -> Any:
    from deepbatch.models.builders import CompactCNN, ImageTransfer

    if settings.get("model") == "efficientnet_lite0":
        return ImageTransfer.efficientnet_lite0(num_classes, bool(settings.get("freeze_encoder", True)), float(settings.get("dropout", 0.2)),
                                                bool(settings.get("pretrained", True)))  # fmt: skip
    return CompactCNN(int(settings.get("in_channels", 1)), num_classes, int(settings.get("width", 32)), float(settings.get("dropout", 0.25)))


def save_assets(folder: Path, params: dict[str, Any], model: Any) -> None:
    return None


def core_options(conf: Any, classes: list[str]) -> dict[str, Any]:
    return {"top_k": len(classes), "batch_size": conf.infer.batch_size}
