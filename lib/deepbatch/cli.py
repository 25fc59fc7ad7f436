"""The ``deepbatch`` command: one sub-command per stage plus ``pipeline`` and ``demo-data``.

    deepbatch <command> [--conf conf/local.yaml] [--run-date YYYY-MM-DD] [key.path=value ...]

Exit codes: 0 success; 1 failure; 2 bad config or arguments; 3 quarantine
threshold exceeded; 4 reconciliation failed; 5 a dataset has too few row
groups for the training workers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepbatch.config import INFER_TARGETS, TASKS, Conf, load_conf
from deepbatch.errors import ConfigError, DeepbatchError

log = logging.getLogger("deepbatch")

STAGES = ("acquire", "clean", "integrate", "analyse", "materialize", "train", "infer")


def _stage_fn(name: str, chosen: tuple[str, ...] | None) -> Callable[..., dict[str, Any]]:
    """The stage's runner; ``chosen`` is --task (None: every task, or infer.targets for infer)."""
    from deepbatch.stages import run

    tasks = tuple(t for t in chosen if t in TASKS) if chosen else TASKS

    if name == "analyse":
        from deepbatch.stages.analyse import run_analyse

        return run_analyse
    if name == "materialize":
        from deepbatch.datasets.materialize import run_materialize

        return lambda spark, conf, run_date: run_materialize(spark, conf, run_date, tasks)
    if name == "train":
        from deepbatch.train.launch import run_train

        return lambda spark, conf, run_date: {"stage": "train", "tables": [], "runs": [run_train(spark, conf, run_date, t) for t in tasks]}
    if name == "infer":
        from deepbatch.infer.run import run_infer

        return lambda spark, conf, run_date: run_infer(spark, conf, run_date, chosen)
    fn: Callable[..., dict[str, Any]] = getattr(run, f"run_{name}")
    return fn


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="deepbatch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=[*STAGES, "pipeline", "demo-data"])
    p.add_argument("--conf", default="conf/local.yaml", help="conf YAML (default: conf/local.yaml)")
    p.add_argument("--run-date", default=dt.date.today().isoformat(), help="YYYY-MM-DD (default: today)")
    p.add_argument("--task", action="append", choices=INFER_TARGETS,
                   help="materialize/train/infer: only this task (repeatable; default all); infer also takes imagenet")
    p.add_argument("--resume", action="store_true", help="train: continue from the last checkpoint")
    p.add_argument("overrides", nargs="*", help="key.path=value conf overrides, e.g. demo.images=500")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_intermixed_args(argv)
    if args.task and "imagenet" in args.task and args.command not in ("infer", "pipeline"):
        p.error("--task imagenet is an inference target only (deepbatch infer --task imagenet)")
    try:
        dt.date.fromisoformat(args.run_date)
    except ValueError:
        p.error(f"--run-date must be YYYY-MM-DD, got {args.run_date!r}")
    return args


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("py4j", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stages(conf: Conf, run_date: str, stages: list[str], tasks: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    from deepbatch.session import get_session

    spark = get_session(conf)
    spark.sparkContext.setLogLevel("WARN")
    results = []
    for name in stages:
        t0 = time.monotonic()
        log.info("stage %s: start (run_date=%s, conf=%s)", name, run_date, conf.hash())
        manifest = _stage_fn(name, tasks)(spark, conf, run_date)
        log.info("stage %s: done in %.1f s", name, time.monotonic() - t0)
        results.append(manifest)
    return results


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    setup_logging(args.verbose)
    try:
        conf = load_conf(Path(args.conf), [*args.overrides, *(["train.resume=true"] if args.resume else [])])
        if args.command == "demo-data":
            from deepbatch.demo.build import build_landing_zone

            summary = build_landing_zone(conf)
            print(json.dumps(summary.to_dict(), indent=2))
            return 0
        stages = list(STAGES) if args.command == "pipeline" else [args.command]
        manifests = run_stages(conf, args.run_date, stages, tuple(args.task) if args.task else None)
        for m in manifests:
            for t in m.get("tables", []):
                log.info(
                    "%-10s %-32s in=%-7s out=%-7s quarantined=%s deduplicated=%s",
                    m["stage"], t["table"], t["records_in"], t["records_out"],
                    t["quarantined"] or "{}", t["deduplicated"] or "{}",
                )  # fmt: skip
            for r in m.get("runs", []):
                log.info("train      %-10s test_accuracy=%s epochs=%s launcher=%s model=%s",
                         r["task"], r["test_accuracy"], r["epochs_done"], r["launcher"], r["model_dir"])  # fmt: skip
        return 0
    except ConfigError as e:
        log.error("config error: %s", e)
        return e.exit_code
    except DeepbatchError as e:
        log.error("%s: %s", type(e).__name__, e)
        return e.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
