"""P4: ETL scaling. acquire + clean + integrate on 1× and k× the demo data, the k× zone made by
replicating the 1× zone's real records under new ids (deepbatch.demo.replicate).

    .venv/bin/python bench/etl_scaling.py [--images 1000] [--texts 1000] [--clips 24] [--factor 10]

Prints each stage's seconds at both sizes, the k×/1× time ratio (linear scaling gives <= k)
for clean + integrate, and each stage's fixed cost: the intercept of the two-point line
through (records, seconds). A warm-up pass at 1× runs first (JVM, Python workers). Local
mode; timings on shared machines are noisy, so compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from deepbatch.catalog import load_conf
from deepbatch.demo.build import build_landing_zone
from deepbatch.demo.replicate import replicate_landing
from deepbatch.logs import setup_logging
from deepbatch.session import get_session
from deepbatch.stages.run import run_acquire, run_clean, run_integrate

REPO = Path(__file__).resolve().parents[1]
STAGES = (("acquire", run_acquire), ("clean", run_clean), ("integrate", run_integrate))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--factor", type=int, default=10)
    args = ap.parse_args()
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="deepbatch-bench-etl-") as tmp:
        roots = {1: Path(tmp) / "x1", args.factor: Path(tmp) / f"x{args.factor}"}
        demo = [f"demo.images={args.images}", f"demo.texts={args.texts}", f"demo.synthetic_clips={args.clips}"]
        confs = {k: load_conf(REPO / "conf" / "local.yaml", [f"data_root={root}", *demo]) for k, root in roots.items()}
        build_landing_zone(confs[1])
        t0 = time.perf_counter()
        made = replicate_landing(roots[1] / "landing", roots[args.factor] / "landing", args.factor)
        print(f"replicated the landing zone {args.factor}x in {time.perf_counter() - t0:.1f} s: {made}", flush=True)
        spark = get_session(confs[1])
        spark.sparkContext.setLogLevel("ERROR")
        timings: dict[int, dict[str, float]] = {}
        records: dict[int, int] = {}
        for k in (1, 1, args.factor):  # the first 1x pass only warms the JVM and the Python workers
            timings[k] = {}
            for name, fn in STAGES:
                t0 = time.perf_counter()
                manifest = fn(spark, confs[k], "2026-11-27")
                timings[k][name] = time.perf_counter() - t0
                if name == "acquire":
                    records[k] = sum(t["records_out"] for t in manifest["tables"])
            print(f"{k:>3}x: {records[k]:,} bronze records, " + ", ".join(f"{n} {s:.1f} s" for n, s in timings[k].items()), flush=True)
        spark.stop()
    n1, nk = records[1], records[args.factor]
    print(f"\nP4  {'stage':<10} {'1x s':>8} {f'{args.factor}x s':>8} {'ratio':>7} {'fixed s':>8}")
    fixed = {}
    for name, _ in STAGES:
        a, b = timings[1][name], timings[args.factor][name]
        fixed[name] = a - (b - a) / (nk - n1) * n1
        print(f"P4  {name:<10} {a:8.1f} {b:8.1f} {b / a:7.2f} {fixed[name]:8.1f}")
    ci1 = timings[1]["clean"] + timings[1]["integrate"]
    cik = timings[args.factor]["clean"] + timings[args.factor]["integrate"]
    print(f"P4  clean+integrate: {ci1:.1f} s -> {cik:.1f} s for {nk / n1:.1f}x the records: ratio {cik / ci1:.2f} "
          f"(bar <= {args.factor}); fixed cost per stage under 15 s: {all(fixed[s] < 15 for s in ('clean', 'integrate'))}")
    print(json.dumps({"records": records, "timings_s": timings, "fixed_s": fixed}, default=lambda x: round(x, 2)))


if __name__ == "__main__":
    main()
