"""Video: what the video modality's stages do (see :mod:`deepbatch.modality`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def silver_schema(metadata: tuple[str, ...]) -> Any:
    from deepbatch.schemas import tables as T

    return T.SILVER_VIDEOS


def gold_schema(metadata: tuple[str, ...]) -> Any:
    from deepbatch.schemas import tables as T

    return T.GOLD_VIDEO_CLS


def check(df: Any, conf: Any, classes: list[str] | None, metadata: tuple[str, ...] = (), labelled: bool = False) -> Any:
    from deepbatch.stages import clean as C

    return C.check_videos(df, conf.quality.max_video_probe_frames)


def profile(df: Any) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from deepbatch.stages.analyse import count_by, summary_stats

    return {
        "frame_count": summary_stats(df, "frame_count"),
        "fps": summary_stats(df, "fps"),
        "frame_sizes": count_by(df.withColumn("size", F.concat_ws("x", "width", "height")), "size"),
        "by_collection": count_by(df, "collection"),
        "frame_count_hist": dict(sorted((int(k), v) for k, v in count_by(df, "frame_count").items())),
    }


def unischema(d: Any, prep: dict[str, Any]) -> Any:
    from deepbatch.schemas import petastorm as P

    return P.video_cls_schema(d.video_frames, d.video_size)


def encode_rows(rows: Iterable[Any], schema: Any, d: Any, tokenizer_dir: str | None, prep: dict[str, Any]) -> Iterator[Any]:
    from petastorm.unischema import dict_to_spark_row

    from deepbatch.media.video import sample_frames

    for r in rows:
        frames = sample_frames(r.content, d.video_frames, d.video_size)
        yield dict_to_spark_row(schema, {"record_id": r.record_id, "label_index": r.label_index, "frames": frames})


def dataset_extra(spark: Any, urls: list[str]) -> dict[str, Any]:
    return {}


def to_inputs(batch: dict[str, Any], device: Any) -> tuple[tuple[Any, ...], Any]:
    y = batch["label_index"].long().to(device, non_blocking=True)
    # B×T×H×W×C uint8 -> B×T×C×H×W in [-1, 1] (EfficientNet-Lite: mean = std = 0.5)
    x = batch["frames"].to(device, non_blocking=True).float().div_(255.0).sub_(0.5).div_(0.5)
    return (x.permute(0, 1, 4, 2, 3).contiguous(),), y


def settings(conf: Any, hp: Any, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    d = conf.datasets
    return ({"pooling": hp.pooling, "pretrained": True, "dropout": hp.dropout},
            {"frames": d.video_frames, "size": d.video_size, "colour": "RGB", "scale": "x/255", "mean": 0.5, "std": 0.5})  # fmt: skip


def build(num_classes: int, settings: dict[str, Any]) -> Any:
    from deepbatch.models.builders import ClipClassifier, EfficientNetFeatures, efficientnet_lite0

    backbone = EfficientNetFeatures(efficientnet_lite0(bool(settings.get("pretrained", True))))
    return ClipClassifier(backbone, 1280, num_classes, str(settings.get("pooling", "mean")), float(settings.get("dropout", 0.2)))


def save_assets(folder: Path, params: dict[str, Any], model: Any) -> None:
    return None


def core_options(conf: Any, classes: list[str]) -> dict[str, Any]:
    v = conf.infer.video
    return {"frames_per_clip": v.frames_per_clip, "every_n": v.every_n, "max_frames": v.max_frames, "imagenet_top1": False,
            "batch_size": conf.infer.batch_size}  # fmt: skip
