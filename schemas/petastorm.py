"""Petastorm Unischemas, one per training set (petastorm's examples/mnist/schema.py style).

Built by functions because the tensor shapes come from config (image size,
token length, frames per clip). Installed as ``deepbatch.schemas.petastorm``.
"""

from __future__ import annotations

import numpy as np
from petastorm.codecs import CompressedImageCodec, NdarrayCodec, ScalarCodec
from petastorm.unischema import Unischema, UnischemaField
from pyspark.sql.types import BooleanType, IntegerType, StringType


def _common() -> list[UnischemaField]:
    return [
        UnischemaField("record_id", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("label_index", np.int32, (), ScalarCodec(IntegerType()), False),
    ]


def image_cls_schema(size: int, channels: int) -> Unischema:
    """Images as lossless PNG (small on disk, decoded by the reader's workers).

    Petastorm's image codec takes H×W (greyscale) or H×W×3 (RGB) arrays.
    """
    shape = (size, size) if channels == 1 else (size, size, 3)
    return Unischema("ImageClsSchema", [*_common(), UnischemaField("image", np.uint8, shape, CompressedImageCodec("png"), False)])


def text_cls_schema(max_length: int) -> Unischema:
    """Token ids and attention mask from the MiniLM tokenizer, padded to max_length."""
    return Unischema(
        "TextClsSchema",
        [
            *_common(),
            UnischemaField("input_ids", np.int32, (max_length,), NdarrayCodec(), False),
            UnischemaField("attention_mask", np.int8, (max_length,), NdarrayCodec(), False),
            UnischemaField("truncated", np.bool_, (), ScalarCodec(BooleanType()), False),
        ],
    )


def video_cls_schema(frames: int, size: int) -> Unischema:
    """Per-clip tensors of uniformly sampled RGB frames (frames × size × size × 3)."""
    return Unischema(
        "VideoClsSchema",
        [*_common(), UnischemaField("frames", np.uint8, (frames, size, size, 3), NdarrayCodec(), False)],
    )
