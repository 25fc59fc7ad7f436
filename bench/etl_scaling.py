"""ETL scaling benchmark: acquire + clean + integrate on N and 10×N demo records.

    .venv/bin/python bench/etl_scaling.py [--images 1000] [--texts 1000] [--factor 10]

Prints per-stage seconds for both sizes, the 10× / 1× time ratio (linear
scaling gives <= factor) and each stage's fixed cost, estimated as the
intercept of the two-point line through (rows, seconds), after a warm-up pass.
Runs in local mode;
timings on shared machines are noisy, so compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from deepbatch.config import load_conf
from deepbatch.demo.build import build_landing_zone
from deepbatch.logs import setup_logging
from deepbatch.session import get_session
from deepbatch.stages.run import run_acquire, run_clean, run_integrate

REPO = Path(__file__).resolve().parents[1]
STAGES = (("acquire", run_acquire), ("clean", run_clean), ("integrate", run_integrate))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--factor", type=int, default=10)
    args = ap.parse_args()
    setup_logging()
    spark = None
    timings: dict[int, dict[str, float]] = {}
    # The first pass at 1x only warms the JVM and the Python workers; it is overwritten.
    for scale in (1, 1, args.factor):
        with tempfile.TemporaryDirectory(prefix="deepbatch-bench-") as root:
            conf = load_conf(
                REPO / "conf" / "local.yaml",
                [f"data_root={root}", f"demo.images={args.images * scale}", f"demo.texts={args.texts * scale}", "demo.real_clips=false"],
            )
            build_landing_zone(conf)
            spark = spark or get_session(conf)
            spark.sparkContext.setLogLevel("ERROR")
            timings[scale] = {}
            for name, fn in STAGES:
                t0 = time.perf_counter()
                fn(spark, conf, "2026-11-27")
                timings[scale][name] = time.perf_counter() - t0
    rows1 = args.images + args.texts
    rowsk = rows1 * args.factor
    print(f"\n{'stage':<10} {'1x s':>8} {f'{args.factor}x s':>8} {'ratio':>7} {'fixed s':>8}")
    for name, _ in STAGES:
        a, b = timings[1][name], timings[args.factor][name]
        fixed = a - (b - a) / (rowsk - rows1) * rows1
        print(f"{name:<10} {a:8.1f} {b:8.1f} {b / a:7.2f} {fixed:8.1f}")
    ta, tb = sum(timings[1].values()), sum(timings[args.factor].values())
    print(f"{'total':<10} {ta:8.1f} {tb:8.1f} {tb / ta:7.2f}   (linear scaling: ratio <= {args.factor})")


if __name__ == "__main__":
    main()
