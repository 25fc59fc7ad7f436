"""A fourth modality defined only here, as a team would ship it in its own package: WAV clips, classified by their
spectrum. It is registered through the entry point group deepbatch.modalities (tests/e2e/test_plugin_modality.py
writes the distribution metadata) and runs acquire to infer with nothing in lib/ changed for it.

Features: the log energy of BANDS frequency bands of the first SAMPLES samples (mono, any rate). Model: a small MLP.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from deepbatch.modality import InferPlan, ModalityContract, modality_settings

BANDS = 32
SAMPLES = 4096


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float samples in [-1, 1] and the sample rate; ValueError when the bytes are not 16-bit PCM WAV."""
    try:
        with wave.open(io.BytesIO(bytes(data))) as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{8 * w.getsampwidth()}-bit samples; 16-bit PCM expected")
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
            samples = raw.reshape(-1, w.getnchannels()).mean(axis=1)
            return samples, w.getframerate()
    except (wave.Error, EOFError) as e:
        raise ValueError(f"not a WAV file: {e}") from e


def spectrum_features(data: bytes) -> np.ndarray:
    """BANDS log band energies of the first SAMPLES samples (zero-padded)."""
    samples, _ = decode_wav(data)
    if samples.size == 0:
        raise ValueError("no samples")
    window = np.zeros(SAMPLES, dtype=np.float32)
    window[: min(SAMPLES, samples.size)] = samples[:SAMPLES]
    power = np.abs(np.fft.rfft(window)) ** 2
    bands = np.array_split(power[1:], BANDS)
    return np.log1p(np.array([b.sum() for b in bands], dtype=np.float32))


AUDIO_PROBE_FIELDS = ("sample_rate", "duration_s", "reason", "detail")


def _probe(data: bytes | None) -> dict[str, Any]:
    if not data:
        return {"sample_rate": None, "duration_s": None, "reason": "EMPTY_FILE", "detail": "no bytes"}
    try:
        samples, rate = decode_wav(data)
    except ValueError as e:
        return {"sample_rate": None, "duration_s": None, "reason": "UNDECODABLE_AUDIO", "detail": str(e)}
    if samples.size == 0:
        return {"sample_rate": rate, "duration_s": 0.0, "reason": "UNDECODABLE_AUDIO", "detail": "no samples"}
    return {"sample_rate": rate, "duration_s": float(samples.size / rate), "reason": None, "detail": None}


def probe_schema() -> Any:
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

    return StructType([StructField("sample_rate", IntegerType()), StructField("duration_s", DoubleType()),
                       StructField("reason", StringType()), StructField("detail", StringType())])


def probe_audio_udf() -> Any:
    from pyspark.sql.functions import pandas_udf

    schema = probe_schema()

    def probe(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for content in batches:
            yield pd.DataFrame([_probe(b) for b in content], columns=list(AUDIO_PROBE_FIELDS))

    return pandas_udf(probe, schema)  # type: ignore[call-overload]


def _silver_fields() -> list[Any]:
    from pyspark.sql.types import BinaryType, DoubleType, IntegerType, LongType, StringType, StructField

    return [StructField("record_id", StringType(), False), StructField("collection", StringType(), True),
            StructField("content", BinaryType(), False), StructField("sample_rate", IntegerType(), False),
            StructField("duration_s", DoubleType(), False), StructField("content_hash", StringType(), False),
            StructField("source_path", StringType(), False), StructField("file_size", LongType(), True)]


class AudioMLP:
    """The model builder (a class so torch is imported only when a model is built)."""

    @staticmethod
    def build(num_classes: int, hidden: int) -> Any:
        import torch

        return torch.nn.Sequential(torch.nn.Linear(BANDS, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))


class AudioCore:
    """A trained audio model folder: WAV bytes in a pandas Series -> every class's probability (torch or ONNX Runtime)."""

    def __init__(self, model_dir: str, device: str = "cpu", runtime: str = "torch", quantized: bool = False, batch_size: int = 64):
        import torch

        from deepbatch.cores.common import ModelFolder
        from deepbatch.cores.runtime import OrtGraph, choose_runtime

        folder = ModelFolder.open(model_dir)
        self.classes, self.version, self.batch_size = folder.classes, folder.version, batch_size
        self.model = folder.load_weights(AudioMLP.build(len(folder.classes), int(folder.model_settings["hidden"])))
        graph = folder.graph(quantized)
        self.ort = OrtGraph(graph) if choose_runtime(runtime, torch.device("cpu"), graph) == "onnxruntime" else None

    def graph_spec(self) -> Any:
        import torch

        from deepbatch.cores.runtime import MODEL_ONNX, GraphSpec

        return GraphSpec(MODEL_ONNX, self.model.cpu(), (torch.zeros(2, BANDS),), ["features"], ["logits"],
                         {"features": {0: "batch"}, "logits": {0: "batch"}})

    def calibration_batches(self, rows: pd.DataFrame) -> list[np.ndarray]:
        return [np.stack([spectrum_features(b) for b in rows["content"]])] if len(rows) else []

    def _probs(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self.ort is not None:
            logits = self.ort.run(x)[0]
        else:
            with torch.inference_mode():
                logits = self.model(torch.from_numpy(x)).numpy()
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def predict(self, content: pd.Series) -> pd.DataFrame:
        n = len(content)
        out: dict[str, list[Any]] = {"predicted": [None] * n, "predicted_prob": [None] * n, "class_probs": [None] * n, "error": [None] * n}
        feats, ok = [], []
        for i, b in enumerate(content):
            try:
                feats.append(spectrum_features(b))
                ok.append(i)
            except (ValueError, TypeError) as e:
                out["error"][i] = f"UNDECODABLE_AUDIO: {e}"
        for start in range(0, len(ok), self.batch_size):
            rows = ok[start : start + self.batch_size]
            p = self._probs(np.stack(feats[start : start + self.batch_size]))
            for row, i in enumerate(rows):
                best = int(p[row].argmax())
                out["predicted"][i], out["predicted_prob"][i] = self.classes[best], float(p[row, best])
                out["class_probs"][i] = [float(v) for v in p[row]]
        return pd.DataFrame(out, index=content.index)


def _audio_core(model_dir: str, device: str, **options: Any) -> AudioCore:
    return AudioCore(model_dir, device, **options)


class AudioSettings(BaseModel):
    """The modality's own conf section, modalities.audio: its keys, defaults and checks in one place."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    hidden: int = 16  # units of the MLP's hidden layer


class AudioModality:
    name = "audio"
    settings_model = AudioSettings
    petastorm_fields = ("features", "label_index")
    models = ("spectrum_mlp",)
    pretrained: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    uses_tokenizer = False
    default_glob = "*.wav"
    reads_records = False
    core_kind = "audio"
    cores = {"audio": _audio_core}
    export_check_rows = {"val": 64, "test": 256, "train": 32}
    quantized_graph = "model"
    preview = None  # predictions are listed, not pictured

    def silver_schema(self, metadata: tuple[str, ...]) -> Any:
        from pyspark.sql.types import StructType

        return StructType(_silver_fields())

    def gold_schema(self, metadata: tuple[str, ...]) -> Any:
        from pyspark.sql.types import IntegerType, StringType, StructField, StructType

        keep = [f for f in _silver_fields() if f.name not in ("collection", "file_size")]
        return StructType([*keep, StructField("label", StringType(), True), StructField("label_index", IntegerType(), True),
                           StructField("split", StringType(), False)])

    def check(self, df: Any, conf: Any, classes: list[str] | None, metadata: tuple[str, ...] = (), labelled: bool = False) -> Any:
        from pyspark.sql import functions as F

        from deepbatch.quality import apply_probe, flag_duplicates, flag_missing_id, start_checks

        probe = probe_audio_udf()
        return (df.transform(start_checks()).withColumn("_probe", probe(F.col("content"))).transform(flag_missing_id())
                .transform(apply_probe("_probe")).select("*", F.col("_probe.sample_rate"), F.col("_probe.duration_s")).drop("_probe")
                .transform(flag_duplicates("record_id", "DUPLICATE_ID")).transform(flag_duplicates("content_hash", "DUPLICATE_CONTENT")))

    def profile(self, df: Any) -> dict[str, Any]:
        from deepbatch.profiling import count_by, summary_stats

        return {"duration_s": summary_stats(df, "duration_s"), "sample_rates": count_by(df, "sample_rate")}

    def samples_per_class(self, per_class: int) -> int:
        return 0

    def report_samples(self, by_class: dict[str, list[bytes]]) -> tuple[str, bytes | None]:
        return "", None

    def unischema(self, d: Any, prep: dict[str, Any]) -> Any:
        from petastorm.codecs import NdarrayCodec, ScalarCodec
        from petastorm.unischema import Unischema, UnischemaField
        from pyspark.sql.types import IntegerType, StringType

        return Unischema("AudioClsSchema", [UnischemaField("record_id", np.str_, (), ScalarCodec(StringType()), False),
                                            UnischemaField("label_index", np.int32, (), ScalarCodec(IntegerType()), False),
                                            UnischemaField("features", np.float32, (BANDS,), NdarrayCodec(), False)])

    def encode_rows(self, rows: Iterable[Any], schema: Any, d: Any, tokenizer_dir: str | None, prep: dict[str, Any]) -> Iterator[Any]:
        from petastorm.unischema import dict_to_spark_row

        for r in rows:
            yield dict_to_spark_row(schema, {"record_id": r.record_id, "label_index": r.label_index, "features": spectrum_features(r.content)})

    def dataset_extra(self, spark: Any, urls: list[str]) -> dict[str, Any]:
        return {}

    def to_inputs(self, batch: dict[str, Any], device: Any) -> tuple[tuple[Any, ...], Any]:
        return (batch["features"].float().to(device),), batch["label_index"].long().to(device)

    def settings(self, conf: Any, hp: Any, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"hidden": modality_settings(conf, self.name).hidden}, {"bands": BANDS, "samples": SAMPLES}

    def build(self, num_classes: int, settings: dict[str, Any]) -> Any:
        return AudioMLP.build(num_classes, int(settings["hidden"]))

    def save_assets(self, folder: Path, params: dict[str, Any], model: Any) -> None:
        return None

    def core_options(self, conf: Any, classes: list[str]) -> dict[str, Any]:
        return {"batch_size": conf.infer.batch_size}

    def score_rows(self, core: Any, rows: Any) -> Any:
        return core.predict(rows["content"].reset_index(drop=True))

    def int8_mode(self, requested: str) -> str:
        return "dynamic"

    def infer_plan(self, conf: Any, task: str, model_dir: str) -> InferPlan:
        from deepbatch.cores.common import ModelFolder
        from deepbatch.schemas import tables as T

        options = {"batch_size": conf.infer.batch_size, "runtime": conf.infer.runtime, "quantized": conf.infer.quantize != "none"}
        return InferPlan("audio", model_dir, options, "content", fields=tuple(T.CLASS_FIELDS), schema=T.PREDICTIONS_CLASS,
                         classes=ModelFolder.open(model_dir).classes)

    def pretrained_plan(self, conf: Any, task: str, model: str) -> InferPlan:
        from deepbatch.errors import ConfigError

        raise ConfigError(f"conf key 'tasks.{task}.model': audio has no pretrained model ({model!r})")


MODALITY: ModalityContract = AudioModality()
