"""The stages on a real Spark standalone cluster: a master and 2 workers as separate JVMs on
localhost, jobs submitted with spark-submit, code and environment shipped as a cluster user
ships them (the deepbatch wheel inside a venv-pack archive, ``--archives env.tar.gz#env``).

The driver runs from a scratch directory, not the repository, and executors run in their
own work directories: the only shared location is the data root. Outputs must match a
local-mode run of the same stages on the same input, row for row.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from chispa import assert_df_equality

from deepbatch.catalog import gold_schema
from deepbatch.infer.run import run_infer
from deepbatch.schemas import tables as T
from deepbatch.stages.run import run_acquire, run_clean, run_integrate
from deepbatch.tables import read_partition
from deepbatch.train.scaffold import write_untrained_model
from tests.conftest import REPO, RUN_DATE, TINY, make_conf

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CLUSTER_CONF = str(REPO / "conf" / "cluster.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_home() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return str(_find_spark_home())


@pytest.fixture(scope="module")
def env_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make package` builds: the deepbatch wheel and the executors' environment around it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
                   check=True, capture_output=True)
    wheel = next(out.glob("deepbatch-*.whl"))
    archive = out / "deepbatch-env.tar.gz"
    subprocess.run([sys.executable, str(REPO / "tools" / "package_env.py"), "--venv", sys.prefix, "--wheel", str(wheel),
                    "--out", str(archive)], check=True)
    return archive


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """spark://127.0.0.1:<port> with 2 registered workers (1 core each); stopped afterwards."""
    home = _spark_home()
    base = tmp_path_factory.mktemp("standalone")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "PYTHONPATH", "SPARK_"))}
    env.update(SPARK_HOME=home, SPARK_LOCAL_IP="127.0.0.1", SPARK_LOG_DIR=str(base / "logs"), SPARK_NO_DAEMONIZE="1")
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(name: str, *args: str) -> None:
        log = open(base / f"{name}.log", "wb")  # closed in teardown
        logs.append(log)
        procs.append(subprocess.Popen([f"{home}/bin/spark-class", *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=base))

    start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui))
    for i in range(2):
        work = base / f"worker-{i}"
        work.mkdir()
        start(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1", "--memory", "3g",
              "--work-dir", str(work), "--webui-port", str(_free_port()), url)
    try:
        deadline = time.monotonic() + 120
        alive = 0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
                    alive = sum(w.get("state") == "ALIVE" for w in json.load(r).get("workers", []))
            except (OSError, ValueError, http.client.HTTPException):  # the UI is still starting
                alive = 0
            if alive == 2:
                break
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(1)
        if alive != 2:
            tails = {p.name: p.read_text(errors="replace")[-2000:] for p in base.glob("*.log")}
            pytest.fail(f"the standalone cluster did not come up with 2 workers: {tails}")
        yield url
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def _submit(url: str, archive: Path, job: str, root: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        f"{_spark_home()}/bin/spark-submit", "--master", url, "--deploy-mode", "client",
        "--archives", f"{archive}#env",
        "--conf", "spark.pyspark.python=./env/bin/python",
        "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--conf", "spark.executor.memory=2g", "--conf", "spark.executor.cores=1", "--conf", "spark.cores.max=2",
        "--conf", "spark.ui.enabled=false", "--driver-memory", "2g",
        str(REPO / "jobs" / f"{job}.py"),
        "--conf", CLUSTER_CONF, "--run-date", RUN_DATE, f"data_root=file://{root}", "spark.conf.spark.sql.shuffle.partitions=4",
        *TINY, *args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "PYTHONPATH"))}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert out.returncode == 0, f"spark-submit {job} failed:\n{out.stderr[-6000:]}"
    return out


@pytest.fixture(scope="module")
def runs(spark, landing_conf, cluster, env_archive, tmp_path_factory) -> tuple[Path, Path, dict]:
    """The same input through local mode and through the cluster."""
    local, remote, scratch = (tmp_path_factory.mktemp(n) for n in ("local", "remote", "driver_cwd"))
    shutil.copytree(Path(landing_conf.data_root) / "landing", local / "landing", copy_function=shutil.copy2)
    lconf = make_conf(local)
    run_acquire(spark, lconf, RUN_DATE)
    shutil.copytree(local / "bronze", remote / "bronze")  # identical input for both
    for root in (local, remote):
        write_untrained_model(lconf, "image_cls", root / "models" / "image_cls" / "v1")
    run_clean(spark, lconf, RUN_DATE)
    run_integrate(spark, lconf, RUN_DATE)
    run_infer(spark, make_conf(local, "infer.model_version=v1"), RUN_DATE, ("image_cls",))
    t0 = time.monotonic()
    _submit(cluster, env_archive, "clean", remote, scratch)
    _submit(cluster, env_archive, "pipeline", remote, scratch, "--from", "integrate", "--to", "infer", "--task", "image_cls",
            "infer.model_version=v1", "train.launcher=horovod", "train.num_proc=2", "datasets.workers=2")
    return local, remote, {"cluster_seconds": time.monotonic() - t0}


def test_clean_on_the_cluster_matches_local_mode(spark, runs) -> None:
    local, remote, _ = runs
    for source, schema in (("images", T.SILVER_IMAGES), ("text", T.silver_text(("movie",))), ("videos", T.SILVER_VIDEOS),
                           ("image_labels", T.SILVER_LABELS), ("photos", T.SILVER_IMAGES)):
        a = read_partition(spark, f"file://{local}/silver/{source}", RUN_DATE, schema)
        b = read_partition(spark, f"file://{remote}/silver/{source}", RUN_DATE, schema)
        assert_df_equality(b, a, ignore_row_order=True, ignore_nullable=True)
        q = read_partition(spark, f"file://{remote}/quarantine/clean/{source}", RUN_DATE, T.QUARANTINE).count()
        assert q == read_partition(spark, f"file://{local}/quarantine/clean/{source}", RUN_DATE, T.QUARANTINE).count()


def test_integrate_and_image_inference_on_the_cluster_match_local_mode(spark, runs) -> None:
    local, remote, _ = runs
    conf = make_conf(local)
    for task in ("image_cls", "text_cls", "video_cls"):
        a = read_partition(spark, f"file://{local}/gold/{task}", RUN_DATE, gold_schema(conf, task))
        b = read_partition(spark, f"file://{remote}/gold/{task}", RUN_DATE, gold_schema(conf, task))
        assert_df_equality(b, a, ignore_row_order=True, ignore_nullable=True)
    cols = ["record_id", "split", "label", "top_labels", "error", "model_version"]
    a = read_partition(spark, f"file://{local}/predictions/image_cls", RUN_DATE, T.PREDICTIONS_TOPK).select(*cols)
    b = read_partition(spark, f"file://{remote}/predictions/image_cls", RUN_DATE, T.PREDICTIONS_TOPK).select(*cols)
    assert_df_equality(b, a, ignore_row_order=True, ignore_nullable=True)
    manifest = json.loads((remote / "manifests" / f"run_date={RUN_DATE}" / "infer.json").read_text())
    workers = manifest["tables"][0]["extra"]["workers"]
    assert workers["model_loads_per_worker"] == [1] and workers["python_workers"] == 2  # one per executor


def test_horovod_trains_with_two_processes_on_the_executors(runs) -> None:
    _, remote, _ = runs
    model_dir = remote / "models" / "image_cls" / RUN_DATE
    summary = json.loads((model_dir / "_train_manifest.json").read_text())
    assert summary["launcher"] == "horovod" and summary["num_proc"] == 2
    assert len(summary["weights_checksums"]) == 2 and len(set(summary["weights_checksums"])) == 1
    assert (model_dir / "model.safetensors").is_file()
