"""Text predictor cores: strings in a pandas Series -> class probabilities and the predicted label.

- ``TrainedTextClassifier``: a ``models/text_cls/<version>/`` folder written by
  ``deepbatch train`` (MiniLM encoder + head). The folder carries its tokenizer
  and encoder config in ``encoder/``, so it loads without the package it was
  trained from.
- ``HFSequenceClassifier``: any local Hugging Face sequence-classification
  checkpoint folder (``AutoModelForSequenceClassification.from_pretrained``);
  its classes come from ``config.id2label``.

Both pad dynamically: each model batch is padded to its longest row, and rows
are sorted by length first so batches hold similar lengths. On CUDA they run in
bf16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from deepbatch.cores.common import ModelFolder, error_text, is_empty, local_path, pick_device
from deepbatch.cores.runtime import MODEL_ONNX, GraphSpec, OrtGraph, choose_runtime, softmax_np
from deepbatch.errors import ConfigError

ENCODER_DIR = "encoder"


class TextCore:
    """Shared batch loop over a tokenizer and a ``logits(input_ids, attention_mask)`` function."""

    def __init__(self, tokenizer: Any, classes: list[str], max_length: int, batch_size: int, device: torch.device, version: str):
        self.tokenizer = tokenizer
        self.classes = classes
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.cuda = device.type == "cuda"
        self.version = version
        self.runtime = "torch"
        self.ort: OrtGraph | None = None

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def use_runtime(self, preference: str, graph: Path | None) -> None:
        self.runtime = choose_runtime(preference, self.device, graph)
        if self.runtime == "onnxruntime" and graph is not None:
            self.ort = OrtGraph(graph)

    def _probs(self, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        if self.ort is not None:
            return softmax_np(self.ort.run(ids.numpy(), mask.numpy())[0])
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            logits = self.logits(ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True))
        return np.asarray(torch.softmax(logits.float(), dim=1).cpu().numpy())

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """N×classes probabilities for non-empty strings, in input order."""
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float32)
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False)["input_ids"]
        order = np.argsort([len(ids) for ids in enc], kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(enc[r]) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, : len(enc[r])] = torch.as_tensor(enc[r])
                mask[j, : len(enc[r])] = 1
            out[rows] = self._probs(ids, mask)
        return out

    def predict(self, texts: pd.Series) -> pd.DataFrame:
        n = len(texts)
        probs: list[Any] = [None] * n
        label: list[str | None] = [None] * n
        prob: list[float | None] = [None] * n
        errors: list[str | None] = [None] * n
        ok = []
        for i, t in enumerate(texts):
            if is_empty(t) or not str(t).strip():
                errors[i] = error_text("EMPTY_INPUT", "no text")
            else:
                ok.append(i)
        if ok:
            p = self.predict_proba([str(texts.iloc[i]) for i in ok])
            best = p.argmax(1)
            for row, i in enumerate(ok):
                probs[i] = [float(v) for v in p[row]]
                label[i] = self.classes[int(best[row])]
                prob[i] = float(p[row, best[row]])
        return pd.DataFrame({"predicted": label, "predicted_prob": prob, "class_probs": probs, "error": errors}, index=texts.index)


def save_text_assets(folder: Path, tokenizer_dir: str, encoder: Any) -> None:
    """Write the tokenizer and the encoder's config into ``<model folder>/encoder`` (weights are in model.safetensors)."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(str(folder / ENCODER_DIR))
    encoder.config.save_pretrained(str(folder / ENCODER_DIR))


class TrainedTextClassifier(TextCore):
    """A ``models/text_cls/<version>/`` folder: probabilities over its classes."""

    def __init__(self, model_dir: str, batch_size: int = 64, device: str | None = None, max_length: int | None = None,
                 runtime: str = "torch", quantized: bool = False):
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from deepbatch.models.builders import TextClassifier

        folder = ModelFolder.open(model_dir)
        assets = folder.path / ENCODER_DIR
        if not (assets / "config.json").is_file():
            # Folders written before the encoder assets were saved point at the encoder they were trained from.
            assets = Path(folder.model_settings.get("encoder_dir", ""))
            if not (assets / "config.json").is_file():
                raise ConfigError(f"{folder.path} has no {ENCODER_DIR}/ folder and its encoder_dir {assets} is gone; retrain the model")
        dev = pick_device(device)
        super().__init__(AutoTokenizer.from_pretrained(str(assets)), folder.classes,
                         int(max_length or folder.preprocessing.get("max_length", 128)), batch_size, dev, folder.version)
        self.use_runtime(runtime, folder.graph(quantized))
        self.model: torch.nn.Module | None = None
        if self.ort is None:  # lean workers: an ONNX Runtime core never builds the torch encoder beside its session
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(assets)))
            s = folder.model_settings
            model = TextClassifier(encoder, int(encoder.config.hidden_size), len(folder.classes), float(s.get("dropout", 0.1)),
                                   True, int(s.get("head_hidden", 0)))
            self.model = folder.load_weights(model).to(dev)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)  # type: ignore[misc]  # torch runtime: built

    def graph_spec(self) -> GraphSpec:
        """Token ids and attention mask in (dynamic batch and sequence length), logits out."""
        if self.model is None:
            raise RuntimeError("this core scores with ONNX Runtime and holds no torch model to export; build it with runtime='torch'")
        ids = torch.ones(2, 16, dtype=torch.long)
        return GraphSpec(MODEL_ONNX, _TokensToLogits(self.model.cpu()), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"],
                         ["logits"], {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                                      "logits": {0: "batch"}})


class _TokensToLogits(torch.nn.Module):
    """Positional (input_ids, attention_mask) for the exporter."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)  # type: ignore[no-any-return]


class HFSequenceClassifier(TextCore):
    """Any local Hugging Face sequence-classification checkpoint (``from_pretrained`` on a folder or file:// URI)."""

    def __init__(self, checkpoint: str, batch_size: int = 64, device: str | None = None, max_length: int = 128):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(local_path(checkpoint))
        if not (path / "config.json").is_file():
            raise ConfigError(f"{checkpoint} is not a Hugging Face checkpoint folder (no config.json)")
        dev = pick_device(device)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path), use_safetensors=True).eval().to(dev)
        id2label = self.model.config.id2label
        classes = [str(id2label[i]) for i in range(int(self.model.config.num_labels))]
        limit = getattr(self.model.config, "max_position_embeddings", max_length)
        super().__init__(AutoTokenizer.from_pretrained(str(path)), classes, min(max_length, int(limit)), batch_size, dev, path.name)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
