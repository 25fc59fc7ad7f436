#!/usr/bin/env bash
# One-command, idempotent set-up of deepbatch's pinned stack in .venv.
#
#   tools/bootstrap.sh            # what `make setup` runs
#
# Order matters (see README "Pinned stack"): torch alone first, then the rest
# under the lock file, then Horovod built from its sdist with C++17 and cached
# in a user-level wheel cache so fresh clones on the same machine reuse it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
VENV="${DEEPBATCH_VENV:-$root/.venv}"
PY_BOOT="${PYTHON:-python3}"
LOCK="$root/requirements/constraints.txt"
TORCH_VERSION="$(sed -n 's/^torch==//p' "$LOCK")"
HOROVOD_VERSION="$(sed -n 's/^horovod==//p' "$LOCK")"
if [ -z "$TORCH_VERSION" ] || [ -z "$HOROVOD_VERSION" ]; then
  echo "ERROR: $LOCK must pin torch==X and horovod==Y." >&2
  exit 2
fi
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/deepbatch/wheels"
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
t0=$(date +%s)

# --- Java -----------------------------------------------------------------
if ! command -v java >/dev/null 2>&1; then
  echo "ERROR: Java is not installed. Spark 4 needs Java 17+: install it, e.g. 'apt-get install openjdk-17-jre-headless'." >&2
  exit 2
fi
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
if [ "${java_major:-0}" -lt 17 ]; then
  echo "ERROR: Java ${java_major} found; Spark 4 needs Java 17+. Install openjdk-17-jre-headless and put it first on PATH (or set JAVA_HOME)." >&2
  exit 2
fi

# --- PostgreSQL server and JDBC driver (the jdbc source tests), where this machine lets us install them ---
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ ! -f /usr/share/java/postgresql.jar ]; then
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; }; then
    log "installing Debian packages postgresql and libpostgresql-jdbc-java (for the jdbc source tests)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql libpostgresql-jdbc-java >/dev/null; } \
      || log "could not install PostgreSQL: the jdbc source tests will be skipped, and say why"
  else
    log "PostgreSQL is not installed and cannot be here: the jdbc source tests will be skipped, and say why"
  fi
fi

# --- stamp: skip everything when nothing changed ----------------------------
AF_VENV="${DEEPBATCH_AIRFLOW_VENV:-$root/.venv-airflow}"
AF_LOCK="$root/requirements/airflow-constraints.txt"
stamp_src=$(cat "$LOCK" "$AF_LOCK" requirements/*.in tools/bootstrap.sh setup.py | sha256sum | cut -c1-16)
stamp="$VENV/.deepbatch-setup-$stamp_src"
if [ -f "$stamp" ] && [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -x "$AF_VENV/bin/python" ]; then
  log "environment up to date ($VENV)"
  exit 0
fi

# --- Debian data package ----------------------------------------------------
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  log "installing Debian package dataset-fashion-mnist"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

# --- venv + torch (alone) ---------------------------------------------------
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY_BOOT" -m venv "$VENV"; }
PIP=(pip_quiet "$VENV/bin/python" -m pip --disable-pip-version-check -q)
# pip's known-harmless lines (missing find-links locations, the two-step torch/setuptools
# note, setuptools' editable-install banner) are filtered; see tools/quiet_pip.awk.
pip_quiet() { "$@" > >(awk -f "$root/tools/quiet_pip.awk") 2> >(awk -f "$root/tools/quiet_pip.awk" >&2); }
"${PIP[@]}" install -U "pip>=24" >/dev/null
if ! "$VENV/bin/python" -c "import torch,sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION (CPU wheel)"
  "${PIP[@]}" install "torch==$TORCH_VERSION"
fi

# --- the rest of the stack, under the lock ---------------------------------------
log "installing pinned stack"
grep -v -e '^torch==' -e '^horovod==' "$LOCK" > "$VENV/.constraints-no-torch.txt"
"${PIP[@]}" install -c "$VENV/.constraints-no-torch.txt" -r requirements/base.in -r requirements/dev.in
"${PIP[@]}" install --no-deps -c "$VENV/.constraints-no-torch.txt" -r requirements/data.in

# --- Horovod, built once per (horovod, torch, python) and cached ------------------
pytag=$("$VENV/bin/python" -c 'import sys;print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
hv_cache="$CACHE/horovod-$HOROVOD_VERSION-torch$TORCH_VERSION-$pytag"
if ! "$VENV/bin/python" -c "import horovod.torch" 2>/dev/null; then
  if ! ls "$hv_cache"/horovod-*.whl >/dev/null 2>&1; then
    log "building horovod $HOROVOD_VERSION with Gloo against torch $TORCH_VERSION (about 5-10 min, once)"
    work=$(mktemp -d)
    "${PIP[@]}" download --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$work"
    tar -xzf "$work"/horovod-*.tar.gz -C "$work"
    src=$(ls -d "$work"/horovod-*/ | head -1)
    # torch >= 2.1 headers need C++17; horovod 0.28.1 asks CMake for C++14.
    sed -i 's/CMAKE_CXX_STANDARD 14/CMAKE_CXX_STANDARD 17/' "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
    mkdir -p "$hv_cache"
    HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
    HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" \
      "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$hv_cache" "$src"
    rm -rf "$work"
  else
    log "using cached horovod wheel from $hv_cache"
  fi
  "${PIP[@]}" install --no-deps "$hv_cache"/horovod-*.whl
  # horovod's runtime deps (cloudpickle, psutil, pyyaml, packaging) under the lock
  "${PIP[@]}" install -c "$VENV/.constraints-no-torch.txt" cloudpickle psutil pyyaml packaging
fi

# --- Airflow, in its own venv: its dependency set differs from the Spark/Petastorm pins ---------
# Only the DAG test uses it (Airflow's DagBag loads jobs/airflow/deepbatch_dag.py).
if ! "$AF_VENV/bin/python" -c "import airflow.providers.apache.spark" 2>/dev/null; then
  log "installing Airflow into $AF_VENV (for the DAG test)"
  [ -x "$AF_VENV/bin/python" ] || "$PY_BOOT" -m venv "$AF_VENV"
  AF_PIP=(pip_quiet "$AF_VENV/bin/python" -m pip --disable-pip-version-check -q)
  "${AF_PIP[@]}" install -U "pip>=24" >/dev/null
  "${AF_PIP[@]}" install -c "$AF_LOCK" -r requirements/airflow.in
fi

# --- deepbatch itself ---------------------------------------------------------
"${PIP[@]}" install --no-deps --no-build-isolation -e "$root"

log "checking imports"
"$VENV/bin/python" -c "import horovod.torch, petastorm, pyspark, transformers, cv2, torch, pyarrow, onnxruntime, numpy; print('stack ok: pyspark', pyspark.__version__, '| torch', torch.__version__, '| pyarrow', pyarrow.__version__, '| transformers', transformers.__version__, '| onnxruntime', onnxruntime.__version__, '| numpy', numpy.__version__)"
rm -f "$VENV"/.deepbatch-setup-*
touch "$stamp"
log "done in $(( $(date +%s) - t0 )) s"
