#!/usr/bin/env bash
# Builds one virtualenv per peer engine under .venv-peers/ (not the project's venv: each peer installs as its own
# docs say, with its own numpy and pyarrow). The ONNX graphs and inputs are shared; torch is not needed there, since
# the peers score the same ONNX graphs (the Spark torch recipe runs in the project's venv, which has torch).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3.11}"
ROOT="${PEERS_VENVS:-.venv-peers}"
COMMON=(onnxruntime==1.32.0 opencv-python-headless==4.11.0.86 tokenizers==0.23.3 pandas psutil)
declare -A ENGINE=([ray]="ray[data]==2.60.0" [daft]="daft==0.7.26")
for name in ray daft; do
  venv="$ROOT/$name"
  stamp="$venv/.installed-${ENGINE[$name]//[^A-Za-z0-9.=_-]/_}"
  if [[ -f "$stamp" ]]; then
    echo "peers: $venv is ready (${ENGINE[$name]})"
    continue
  fi
  echo "peers: building $venv with ${ENGINE[$name]}"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "${ENGINE[$name]}" "${COMMON[@]}"
  touch "$stamp"
done
