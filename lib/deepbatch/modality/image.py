"""Images: what the image modality's stages do (see :mod:`deepbatch.modality`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def profile(df: Any) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from deepbatch.stages.analyse import count_by

    return {"image_sizes": count_by(df.withColumn("size", F.concat_ws("x", "width", "height")), "size"), "channels": count_by(df, "channels")}


def unischema(d: Any) -> Any:
    from deepbatch.schemas import petastorm as P

    return P.image_cls_schema(d.image_size, d.image_channels)


def encode_rows(rows: Iterable[Any], schema: Any, d: Any, tokenizer_dir: str | None) -> Iterator[Any]:
    from petastorm.unischema import dict_to_spark_row

    from deepbatch.media.image import image_to_array

    for r in rows:
        img = image_to_array(r.content, d.image_size, d.image_channels)
        img = img[:, :, 0] if d.image_channels == 1 else img
        yield dict_to_spark_row(schema, {"record_id": r.record_id, "label_index": r.label_index, "image": img})


def dataset_extra(spark: Any, urls: list[str]) -> dict[str, Any]:
    return {}


def to_inputs(batch: dict[str, Any], device: Any) -> tuple[tuple[Any, ...], Any]:
    y = batch["label_index"].long().to(device, non_blocking=True)
    x = batch["image"].to(device, non_blocking=True).float().div_(255.0).sub_(0.5).div_(0.5)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return (x.contiguous(),), y


def settings(conf: Any, hp: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    d = conf.datasets
    return ({"in_channels": d.image_channels, "width": hp.width, "dropout": hp.dropout},
            {"image_size": d.image_size, "channels": d.image_channels, "scale": "x/255", "mean": 0.5, "std": 0.5})  # fmt: skip


def build(num_classes: int, settings: dict[str, Any]) -> Any:
    from deepbatch.models.builders import CompactCNN

    return CompactCNN(int(settings.get("in_channels", 1)), num_classes, int(settings.get("width", 32)), float(settings.get("dropout", 0.25)))


def save_assets(folder: Path, params: dict[str, Any], model: Any) -> None:
    return None


def core_options(conf: Any, classes: list[str]) -> dict[str, Any]:
    return {"top_k": len(classes), "batch_size": conf.infer.batch_size}
