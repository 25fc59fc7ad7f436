"""Video: what the video modality's stages do (the contract is :class:`deepbatch.modality.ModalityContract`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from deepbatch.modality import InferPlan, ModalityContract

CLIP_CHECK_ROWS = {"val": 16, "test": 200, "train": 8}  # clips are dear to score twice: fewer rows check the export


def check_videos(bronze: Any, max_frames: int) -> Any:
    """Open each clip, read its first frame, count frames, and deduplicate."""
    from pyspark.sql import functions as F

    from deepbatch.media.udfs import probe_videos_udf
    from deepbatch.quality import adopt_ids, apply_probe, flag_duplicates, flag_missing_id, flag_when, start_checks

    probe = probe_videos_udf(max_frames)
    return (
        bronze.transform(start_checks())
        .withColumn("_probe", probe(F.col("content"), F.col("record_id")))
        .transform(adopt_ids(F.col("_probe.record_id")))
        .transform(flag_missing_id())
        .transform(apply_probe("_probe"))
        .select("*", *[F.col("_probe")[c].alias(c) for c in ("width", "height", "channels", "fps", "frame_count", "frame_count_capped")])
        .drop("_probe")
        .transform(flag_when(F.col("frame_count") <= 0, "UNDECODABLE_VIDEO", "no decodable frames"))
        .transform(flag_duplicates("record_id", "DUPLICATE_ID"))
        .transform(flag_duplicates("content_hash", "DUPLICATE_CONTENT"))
    )


def _clip_core(model_dir: str, device: str, **options: Any) -> Any:
    from deepbatch.cores.video import Sampling, VideoClipClassifier

    sampling = Sampling(options.pop("frames_per_clip"), options.pop("every_n"), options.pop("max_frames"))
    return VideoClipClassifier(model_dir, sampling, device=device, **options)


def _uncapped_count(row: Any) -> int | None:
    """The probe's frame count when it is the whole clip's (not stopped at quality.max_video_probe_frames)."""
    fields = row.asDict() if hasattr(row, "asDict") else {}
    count, capped = fields.get("frame_count"), fields.get("frame_count_capped")
    if count is None or capped or (capped is None and "frame_count_capped" in fields):
        return None  # unknown or a lower bound: sample_frames counts the frames itself
    return int(count)


class VideoModality:
    name = "video"
    petastorm_fields = ("frames", "label_index")
    models = ("efficientnet_lite0",)
    pretrained: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    uses_tokenizer = False
    default_glob = "*.{mp4,avi,mov,mkv,webm,m4v}"
    reads_records = False
    core_kind = "video"
    cores = {"video": _clip_core}
    export_check_rows = CLIP_CHECK_ROWS
    quantized_graph = "frames"  # the per-frame CNN: the temporal head is small
    settings_model = None  # its settings keep their historical keys under datasets and infer

    def silver_schema(self, metadata: tuple[str, ...]) -> Any:
        from deepbatch.schemas import tables as T

        return T.SILVER_VIDEOS

    def gold_schema(self, metadata: tuple[str, ...]) -> Any:
        from deepbatch.schemas import tables as T

        return T.GOLD_VIDEO_CLS

    def check(self, df: Any, conf: Any, classes: list[str] | None, metadata: tuple[str, ...] = (), labelled: bool = False) -> Any:
        return check_videos(df, conf.quality.max_video_probe_frames)

    def profile(self, df: Any) -> dict[str, Any]:
        from pyspark.sql import functions as F

        from deepbatch.profiling import count_by, summary_stats

        return {
            "frame_count": summary_stats(df, "frame_count"),
            "fps": summary_stats(df, "fps"),
            "frame_sizes": count_by(df.withColumn("size", F.concat_ws("x", "width", "height")), "size"),
            "by_collection": count_by(df, "collection"),
            "frame_count_hist": dict(sorted((int(k), v) for k, v in count_by(df, "frame_count").items())),
        }

    def samples_per_class(self, per_class: int) -> int:
        return min(per_class, 1)  # one clip per class, shown as a strip of its frames

    def report_samples(self, by_class: dict[str, list[bytes]]) -> tuple[str, bytes | None]:
        from deepbatch.report.data import clip_sheet

        return "sampled frames of one clip per class", clip_sheet(by_class)

    @property
    def preview(self) -> Callable[[bytes | None], bytes | None]:
        from deepbatch.report.thumbs import clip_preview

        return clip_preview

    def unischema(self, d: Any, prep: dict[str, Any]) -> Any:
        from deepbatch.schemas import petastorm as P

        return P.video_cls_schema(d.video_frames, d.video_size)

    def encode_rows(self, rows: Iterable[Any], schema: Any, d: Any, tokenizer_dir: str | None, prep: dict[str, Any]) -> Iterator[Any]:
        from petastorm.unischema import dict_to_spark_row

        from deepbatch.media.video import sample_frames

        for r in rows:
            frames = sample_frames(r.content, d.video_frames, d.video_size, frame_count=_uncapped_count(r))
            yield dict_to_spark_row(schema, {"record_id": r.record_id, "label_index": r.label_index, "frames": frames})

    def dataset_extra(self, spark: Any, urls: list[str]) -> dict[str, Any]:
        return {}

    def to_inputs(self, batch: dict[str, Any], device: Any) -> tuple[tuple[Any, ...], Any]:
        y = batch["label_index"].long().to(device, non_blocking=True)
        # B×T×H×W×C uint8 -> B×T×C×H×W in [-1, 1] (EfficientNet-Lite: mean = std = 0.5)
        x = batch["frames"].to(device, non_blocking=True).float().div_(255.0).sub_(0.5).div_(0.5)
        return (x.permute(0, 1, 4, 2, 3).contiguous(),), y

    def settings(self, conf: Any, hp: Any, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
        d = conf.datasets
        return ({"pooling": hp.pooling, "pretrained": True, "dropout": hp.dropout},
                {"frames": d.video_frames, "size": d.video_size, "colour": "RGB", "scale": "x/255", "mean": 0.5, "std": 0.5})

    def build(self, num_classes: int, settings: dict[str, Any]) -> Any:
        from deepbatch.models.builders import build_clip_model

        return build_clip_model(num_classes, settings)

    def save_assets(self, folder: Path, params: dict[str, Any], model: Any) -> None:
        return None

    def core_options(self, conf: Any, classes: list[str]) -> dict[str, Any]:
        v = conf.infer.video
        return {"frames_per_clip": v.frames_per_clip, "every_n": v.every_n, "max_frames": v.max_frames, "imagenet_top1": False,
                "batch_size": conf.infer.batch_size}

    def score_rows(self, core: Any, rows: Any) -> Any:
        """One row per clip: a clip's frame rows share its prediction."""
        frames = core.predict(rows[["record_id", "content", "source_path", "frame_count"]])
        return frames.groupby("record_id", sort=False).first().reindex(rows["record_id"])

    def int8_mode(self, requested: str) -> str:
        return requested

    def infer_plan(self, conf: Any, task: str, model_dir: str) -> InferPlan:
        """Sampled frames -> per-frame features (and ImageNet top-1) -> the clip model; larger clips read from source_path."""
        from deepbatch.schemas import tables as T

        v = conf.infer.video
        options = {"frames_per_clip": v.frames_per_clip, "every_n": v.every_n, "max_frames": v.max_frames, "imagenet_top1": v.imagenet_top1,
                   "imagenet_size": v.imagenet_size, "batch_size": conf.infer.batch_size, "runtime": conf.infer.runtime,
                   "quantized": conf.infer.quantize != "none"}
        from deepbatch.cores.common import ModelFolder

        return InferPlan("video", model_dir, options, "content", shape="clips", schema=T.PREDICTIONS_VIDEO_CLIPS,
                         frame_schema=T.PREDICTIONS_VIDEO_FRAMES, classes=ModelFolder.open(model_dir).classes, arrow_batch=v.arrow_batch,
                         rows_per_task=v.clips_per_task, inline_max_bytes=int(v.max_inline_mb * (1 << 20)),
                         extra={"sampling": {"frames_per_clip": v.frames_per_clip, "every_n": v.every_n, "max_frames": v.max_frames}})

    def pretrained_plan(self, conf: Any, task: str, model: str) -> InferPlan:
        from deepbatch.errors import ConfigError

        raise ConfigError(f"conf key 'tasks.{task}.model': video has no pretrained clip model ({model!r}); train one (labels)")


MODALITY: ModalityContract = VideoModality()  # mypy holds the class to the contract
