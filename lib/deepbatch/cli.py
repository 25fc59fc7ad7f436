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
from deepbatch.logs import FORMATS, setup_logging, stage_context
from deepbatch.pipeline import STAGES

log = logging.getLogger("deepbatch")



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
    p.add_argument("--force", action="store_true", help="pipeline: rerun stages already published with the same settings")
    p.add_argument("--from", dest="from_stage", choices=STAGES, help="pipeline: first stage to run")
    p.add_argument("--to", dest="to_stage", choices=STAGES, help="pipeline: last stage to run")
    p.add_argument("overrides", nargs="*", help="key.path=value conf overrides, e.g. demo.images=500")
    p.add_argument("--log-format", choices=FORMATS, default=None,
                   help="console (default) or json: one JSON object per line (env DEEPBATCH_LOG_FORMAT)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_intermixed_args(argv)
    if args.command != "pipeline" and (args.force or args.from_stage or args.to_stage):
        p.error("--force, --from and --to apply to `deepbatch pipeline` only (a single stage always runs)")
    if args.task and "imagenet" in args.task and args.command not in ("infer", "pipeline"):
        p.error("--task imagenet is an inference target only (deepbatch infer --task imagenet)")
    try:
        dt.date.fromisoformat(args.run_date)
    except ValueError:
        p.error(f"--run-date must be YYYY-MM-DD, got {args.run_date!r}")
    return args


def run_stages(conf: Conf, run_date: str, stages: list[str], tasks: tuple[str, ...] | None = None,
               skip_done: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Run ``stages`` in order. With ``skip_done`` (pipeline runs without --force), leading stages
    already published for this run date with the same settings are skipped; once one runs, all later ones do."""
    from deepbatch.io import Storage
    from deepbatch.pipeline import mark_done, should_skip
    from deepbatch.session import get_session

    spark = get_session(conf)
    spark.sparkContext.setLogLevel("WARN")
    storage = Storage(spark)
    results: list[dict[str, Any]] = []
    running = not skip_done
    for name in stages:
        if not running:
            record = should_skip(storage, conf, run_date, name, tasks)
            if record is not None:
                log.info("stage %s: skipped: published for run_date=%s with the same settings at %s (stage hash %s); "
                         "--force reruns it", name, run_date, record.get("finished_at"), record["stage_hash"],
                         extra={"event": "stage_skipped", "stage": name, "run_date": run_date})  # fmt: skip
                results.append({"stage": name, "skipped": True, "tables": [], "record": record})
                continue
            running = True
        t0 = time.monotonic()
        log.info("stage %s: start (run_date=%s, conf=%s)", name, run_date, conf.hash(),
                 extra={"event": "stage_start", "stage": name, "run_date": run_date})  # fmt: skip
        with stage_context(name, run_date):
            manifest = _stage_fn(name, tasks)(spark, conf, run_date)
        duration = time.monotonic() - t0
        mark_done(storage, conf, run_date, name, tasks, duration)
        log.info("stage %s: done in %.1f s", name, duration,
                 extra={"event": "stage_done", "stage": name, "run_date": run_date, "duration_s": round(duration, 1),
                        "tables": _counts(manifest)})  # fmt: skip
        results.append(manifest)
    return results


def _counts(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("table", "records_in", "records_out", "quarantined", "deduplicated")
    return [{k: t.get(k) for k in keys} for t in manifest.get("tables", [])]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    setup_logging(args.verbose, args.log_format)
    try:
        conf = load_conf(Path(args.conf), [*args.overrides, *(["train.resume=true"] if args.resume else [])])
        if args.command == "demo-data":
            from deepbatch.demo.build import build_landing_zone

            summary = build_landing_zone(conf)
            print(json.dumps(summary.to_dict(), indent=2))
            return 0
        if args.command == "pipeline":
            from deepbatch.pipeline import select

            stages = select(args.from_stage, args.to_stage)
        else:
            stages = [args.command]
        tasks = tuple(args.task) if args.task else None
        manifests = run_stages(conf, args.run_date, stages, tasks, skip_done=args.command == "pipeline" and not args.force)
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
