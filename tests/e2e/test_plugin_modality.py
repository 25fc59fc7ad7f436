"""A modality from outside the package: registered through the entry point group deepbatch.modalities, defined only
in tests/plugins/audio_modality.py, it runs check and then the whole pipeline (acquire to infer) through the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, RUN_DATE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ENTRY_POINT = "audio = tests.plugins.audio_modality:MODALITY"
PER_CLASS = 30


def tone(freq: float, rng: np.random.Generator, rate: int = 8000, seconds: float = 0.3) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    wave_ = rng.uniform(0.3, 0.9) * np.sin(2 * np.pi * freq * t + rng.uniform(0, np.pi)) + rng.normal(0, 0.02, t.size)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(wave_, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def land_tones(landing: Path) -> None:
    """landing/tones/<low|high>/*.wav, one WAV that is not audio, and one clip outside any class folder (inference input)."""
    rng = np.random.default_rng(11)
    for label, lo, hi in (("low", 150, 400), ("high", 1500, 3500)):
        folder = landing / "tones" / label
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            (folder / f"{label}_{i:02d}.wav").write_bytes(tone(rng.uniform(lo, hi), rng))
    (landing / "tones" / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    (landing / "tones" / "unsorted.wav").write_bytes(tone(300, rng))


def plugin_site(root: Path) -> Path:
    """A distribution's metadata, as `pip install` of a modality package would leave it: its entry point names the module."""
    info = root / "deepbatch_audio_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepbatch-audio-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[deepbatch.modalities]\n{ENTRY_POINT}\n")
    return root


CONF = f"""extends: {REPO / "conf" / "base.yaml"}
spark:
  master: "local[2]"
  conf: {{spark.sql.shuffle.partitions: "4", spark.ui.enabled: "false", spark.ui.showConsoleProgress: "false"}}
quality: {{max_quarantine_fraction: 0.2}}
datasets: {{workers: 1}}
train: {{launcher: local}}
modalities:
  audio: {{hidden: 12}}     # the plugin's own section, checked by its settings model
sources:
  tones: {{kind: files, path: tones}}
tasks:
  pitch:
    modality: audio
    source: tones
    labels: folder
    classes: auto
    model: spectrum_mlp
    train: {{epochs: 25, batch_size: 8, lr: 0.01, width: 16, patience: 25}}
"""


def _cli(args: list[str], site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "PYSPARK_PYTHON": sys.executable}
    return subprocess.run([sys.executable, "-m", "deepbatch.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _tables(root: Path, stage: str) -> dict[str, dict]:
    manifest = json.loads((root / "manifests" / f"run_date={RUN_DATE}" / f"{stage}.json").read_text())
    return {t["table"]: t for t in manifest["tables"]}


def test_a_modality_shipped_as_its_own_package_runs_from_acquire_to_infer(tmp_path) -> None:
    root, site = tmp_path / "data", plugin_site(tmp_path / "site")
    land_tones(root / "landing")
    conf = tmp_path / "audio.yaml"
    conf.write_text(CONF)
    args = ["--conf", str(conf), "--run-date", RUN_DATE, f"data_root={root}"]
    checked = _cli(["check", *args], site)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "62 file(s)" in checked.stdout
    run = _cli(["pipeline", *args], site)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert _tables(root, "acquire")["bronze/tones"]["records_out"] == 2 * PER_CLASS + 2
    silver = _tables(root, "clean")["silver/tones"]
    assert silver["quarantined"] == {"UNDECODABLE_AUDIO": 1} and silver["records_out"] == 2 * PER_CLASS + 1
    gold = _tables(root, "integrate")["gold/pitch"]
    assert gold["records_out"] == 2 * PER_CLASS + 1 and gold["extra"]["classes"] == ["high", "low"]
    model = root / "models" / "pitch" / RUN_DATE
    assert (model / "model.onnx").is_file()  # exported through the plugin core's graph_spec and checked against torch
    assert json.loads((model / "config.json").read_text())["model_settings"] == {"hidden": 12}  # from modalities.audio
    assert json.loads((model / "metrics.json").read_text())["onnx"]["top1_agreement"] >= 0.99
    predictions = _tables(root, "infer")["predictions/pitch"]
    assert predictions["records_out"] == gold["records_out"] and predictions["extra"]["errors_by_reason"] == {}
    assert predictions["extra"]["accuracy_by_split"]["test"]["accuracy"] >= 0.75  # low and high tones are far apart
    assert json.loads((root / "predictions" / "pitch" / f"run_date={RUN_DATE}" / "_classes.json").read_text()) == ["high", "low"]
