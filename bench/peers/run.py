"""deepbatch against the engines a team would pick instead, on the same work, in one command (``make bench-peers``).

    .venv/bin/python bench/peers/run.py [--jobs images_small,images_phone,texts,images_clean]
                                        [--engines deepbatch,spark-onnx,spark-torch,ray,daft]
                                        [--images 1024] [--phone 256] [--texts 8000] [--clean 1000] [--cores 2]

Jobs (inputs from bench/peers/data.py, the same Parquet files for every engine):

- ``images_small`` / ``images_phone`` (J1): ImageNet top-5 of JPEG photos, small and phone-sized;
- ``texts`` (J2): class probabilities of Rotten Tomatoes snippets (MiniLM encoder + head);
- ``images_clean`` (J4): decode-check every image and keep the first of each content hash, as clean does.

Engines, each in its own process (and virtualenv, for Ray and Daft: bench/peers/setup.sh), each run the job twice
in that process: the first run gives the end-to-end time (from launch, so start-up is in it), the second the warm
rate. Peak memory is the largest sum of resident memory over the process and all its children (JVM, Python
workers, Ray's raylet and actors, Daft's UDF processes), sampled every 0.2 s. Top-1 agreement is with deepbatch's
own output (for J4: the share of deepbatch's kept ids each engine keeps too, and no others).

The video job (J3) is not here yet: see bench/peers/cost.py for the per-clip cost, before and after.
Not part of CI (minutes per engine). The runner fails when an engine's row is missing from the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(HERE))

VENVS = Path(os.environ.get("PEERS_VENVS", REPO / ".venv-peers"))
ENGINES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "deepbatch": ([str(REPO / ".venv/bin/python"), str(HERE / "engine_spark.py"), "deepbatch"], ("images_small", "images_phone", "texts", "images_clean")),
    "spark-onnx": ([str(REPO / ".venv/bin/python"), str(HERE / "engine_spark.py"), "spark-onnx"], ("images_small", "images_phone", "texts", "images_clean")),
    "spark-torch": ([str(REPO / ".venv/bin/python"), str(HERE / "engine_spark.py"), "spark-torch"], ("images_small", "images_phone")),
    "ray": ([str(VENVS / "ray/bin/python"), str(HERE / "engine_ray.py")], ("images_small", "images_phone", "texts", "images_clean")),
    "daft": ([str(VENVS / "daft/bin/python"), str(HERE / "engine_daft.py")], ("images_small", "images_phone", "texts", "images_clean")),
}


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def launch(engine: str, job: str, inputs: dict[str, str], models_json: Path, out: Path, cores: int, timeout_s: float) -> dict[str, Any]:
    """One engine on one job in its own process: its result.json plus launch time, exit code and peak tree RSS."""
    cmd = [*ENGINES[engine][0], "--job", job, "--input", inputs[job], "--models", str(models_json), "--out", str(out), "--cores", str(cores)]
    env = {**os.environ, "PYTHONPATH": str(HERE), "PEERS_CORES": str(cores), "RAY_AUTH_MODE": "disabled"}
    out.mkdir(parents=True, exist_ok=True)
    t0, peak = time.time(), 0
    with (out / "log.txt").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            peak = max(peak, tree_rss(ps))
            if time.time() - t0 > timeout_s:
                proc.kill()
                break
            time.sleep(0.2)
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").is_file() and proc.returncode == 0 else {}
    return {**result, "launched": t0, "returncode": proc.returncode, "peak_rss": peak, "log": str(out / "log.txt")}


def top1_names(job: str, rows_dir: str, classes: dict[str, list[str]]) -> dict[str, str]:
    """record_id -> the top-1 class name, whatever the engine's column (names from deepbatch, indices from the peers)."""
    t = pq.read_table(rows_dir).to_pandas()
    names = classes["imagenet" if job.startswith("images_") else "text"]
    if "top_labels" in t:
        return {r: (v[0] if v is not None and len(v) else "") for r, v in zip(t["record_id"], t["top_labels"], strict=True)}
    if "predicted" in t:
        return dict(zip(t["record_id"], t["predicted"].fillna(""), strict=True))
    if "top5" in t:
        return {r: (names[int(v[0])] if v is not None and len(v) and int(v[0]) >= 0 else "") for r, v in zip(t["record_id"], t["top5"], strict=True)}
    return {r: names[int(v)] for r, v in zip(t["record_id"], t["top1"], strict=True)}


def agreement(job: str, rows_dir: str, reference: str, classes: dict[str, list[str]]) -> float:
    if job == "images_clean":
        a, b = set(pq.read_table(rows_dir)["record_id"].to_pylist()), set(pq.read_table(reference)["record_id"].to_pylist())
        return len(a & b) / max(len(a | b), 1)
    mine, ref = top1_names(job, rows_dir, classes), top1_names(job, reference, classes)
    return sum(mine.get(r) == v for r, v in ref.items()) / max(len(ref), 1)


def row_for(engine: str, job: str, r: dict[str, Any], input_rows: int) -> dict[str, Any]:
    """Rates are of input rows (J4 keeps fewer than it reads); ``rows_out`` is what the engine wrote."""
    return {"engine": engine, "job": job, "rows": input_rows, "rows_out": pq.read_table(r["rows_dir"]).num_rows,
            "end_to_end_s": r["first_done"] - r["launched"], "warm_rows_s": input_rows / r["runs_s"][-1],
            "cold_run_s": r["runs_s"][0], "peak_rss_gb": r["peak_rss"] / 2**30, "settings": r["settings"], "rows_dir": r["rows_dir"]}


def print_table(job: str, rows: list[dict[str, Any]]) -> None:
    ref = next((r for r in rows if r["engine"] == "deepbatch"), None)
    print(f"\n{job}  ({rows[0]['rows']} rows in, {ref['rows_out'] if ref else '?'} out)")
    print(f"  {'engine':12} {'end to end s':>12} {'warm rows/s':>12} {'peak RSS GB':>12} {'agree':>7} {'deepbatch x (warm)':>19} {'(e2e)':>7}")
    for r in rows:
        warm = ref["warm_rows_s"] / r["warm_rows_s"] if ref else float("nan")
        e2e = r["end_to_end_s"] / ref["end_to_end_s"] if ref else float("nan")
        print(f"  {r['engine']:12} {r['end_to_end_s']:12.1f} {r['warm_rows_s']:12.1f} {r['peak_rss_gb']:12.2f} {r['agreement']:7.3f} "
              f"{warm:19.2f} {e2e:7.2f}")
    for r in rows:
        print(f"    {r['engine']}: {json.dumps(r['settings'])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="images_small,images_phone,texts,images_clean")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--phone", type=int, default=256)
    ap.add_argument("--texts", type=int, default=8000)
    ap.add_argument("--clean", type=int, default=1000)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--work", default=str(REPO / "bench" / "data" / "peers"))
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per engine and job")
    args = ap.parse_args(argv)
    import data

    from deepbatch.cores.common import ModelFolder
    from deepbatch.cores.image import imagenet_classes

    work = Path(args.work).resolve()
    paths = data.build(work, args.images, args.phone, args.texts, args.clean)
    paths = {k: str(Path(v).resolve()) for k, v in paths.items()}
    models_json = work / "models.json"
    models_json.write_text(json.dumps(paths))
    classes = {"imagenet": imagenet_classes(), "text": ModelFolder.open(paths["text_dir"]).classes}
    engines = [e for e in args.engines.split(",") if e]
    missing, summary = [], []
    for job in args.jobs.split(","):
        done = []
        for engine in ["deepbatch", *[e for e in engines if e != "deepbatch"]] if "deepbatch" in engines else engines:
            if job not in ENGINES[engine][1]:
                continue
            print(f"[{job}] {engine} ...", flush=True)
            r = launch(engine, job, paths, models_json, work / "runs" / job / engine, args.cores, args.timeout)
            if not r.get("runs_s"):
                missing.append(f"{engine}/{job} (exit {r['returncode']}; see {r['log']})")
                continue
            done.append(row_for(engine, job, r, pq.ParquetDataset(paths[job]).read(columns=["record_id"]).num_rows))
        ref = next((d["rows_dir"] for d in done if d["engine"] == "deepbatch"), None)
        for d in done:
            d["agreement"] = agreement(job, d["rows_dir"], ref, classes) if ref else float("nan")
        if done:
            print_table(job, done)
        summary.extend(done)
        (work / "peers-results.json").write_text(json.dumps(summary, indent=1, default=float))  # after every job: a crash keeps the rest
    if missing:
        print("\nmissing from the table: " + "; ".join(missing), file=sys.stderr)
        return 1
    print(f"\nresults: {work / 'peers-results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
