"""The ``deepbatch`` command: one sub-command per stage plus ``pipeline``, ``status``, ``report``, ``recover`` and ``demo-data``.

    deepbatch <command> [--conf conf/local.yaml] [--run-date YYYY-MM-DD] [key.path=value ...]

Exit codes: 0 success; 1 failure; 2 bad config or arguments; 3 quarantine
threshold exceeded; 4 reconciliation failed; 5 a dataset has too few row
groups for the training workers; 6 another live run holds the stage's lock
for that run date.

Every command first recovers the data root: commits interrupted by a crash are
rolled forward (or, if they never reached their commit point, back).
``deepbatch recover`` does only that and prints what it did. ``deepbatch report``
renders the run report page again from the parts the stages published.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

from deepbatch.catalog import load_conf
from deepbatch.config import Conf
from deepbatch.errors import ConfigError, DeepbatchError
from deepbatch.logs import FORMATS, setup_logging, stage_context
from deepbatch.pipeline import STAGES, check_chosen

log = logging.getLogger("deepbatch")



def valid_run_date(text: str) -> bool:
    """Only YYYY-MM-DD: Python 3.11 also parses 20261127, which would name another partition."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="deepbatch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=[*STAGES, "pipeline", "check", "demo-data", "recover", "status", "report"])
    p.add_argument("--conf", default="conf/local.yaml", help="conf YAML (default: conf/local.yaml)")
    p.add_argument("--run-date", default=None, help="YYYY-MM-DD (default: today; for status, the latest run date)")
    p.add_argument("--json", action="store_true", help="status, check: print JSON instead of text")
    p.add_argument("--verify", action="store_true",
                   help="status: also read every published file and check its bytes against the checksums its commit recorded")
    p.add_argument("--task", action="append",
                   help="materialize/train/infer: only this declared task (repeatable; default all; conf key tasks)")
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
    if args.run_date is None and args.command != "status":
        args.run_date = dt.date.today().isoformat()
    if args.run_date is not None and not valid_run_date(args.run_date):
        p.error(f"--run-date must be a calendar date written YYYY-MM-DD (e.g. 2026-11-27), got {args.run_date!r}")
    return args


def recover_data_root(conf: Conf, spark: Any = None) -> dict[str, list[str]]:
    """Roll interrupted commits on the data root forward or back (see deepbatch.commit.recovery)."""
    from deepbatch.commit import LockSettings, recover
    from deepbatch.storage import open_store

    locking = LockSettings(conf.locks.stale_after_s, conf.locks.heartbeat_s)
    report = recover(open_store(conf.data_root, spark), conf.data_root, locking).to_dict()
    if report:
        log.warning("recovery on %s: %s", conf.data_root, json.dumps(report), extra={"event": "recovered", "recovery": report})
    return report


def _skip_or_run(store: Any, conf: Conf, run_date: str, name: str, key: str) -> dict[str, Any] | None:
    """The completion record that lets a pipeline skip ``name``, or None (and the reason logged) when it runs."""
    from deepbatch.pipeline import why_run

    reason, record = why_run(store, conf, run_date, name, key)
    if record is not None:
        log.info("stage %s: skipped: published for run_date=%s as commit %s at %s with the same settings and inputs; "
                 "--force reruns it", name, run_date, record["commit_id"], record.get("finished_at"),
                 extra={"event": "stage_skipped", "stage": name, "run_date": run_date})
        return record
    # A first run is the ordinary case; a rerun says why.
    log.log(logging.DEBUG if (reason or "").startswith("no completion record") else logging.INFO, "stage %s: runs: %s", name, reason)
    return None


def run_stages(conf: Conf, run_date: str, stages: list[str], tasks: tuple[str, ...] | None = None,
               skip_done: bool = False) -> list[dict[str, Any]]:
    """Recover the data root, then run ``stages`` in order. With ``skip_done`` (pipeline runs without
    --force), leading stages whose completion record still holds are skipped; once one runs, all later ones do."""
    from deepbatch.pipeline import SPECS, mark_done, stage_hash, upstream_commits
    from deepbatch.session import get_session
    from deepbatch.storage import open_store

    spark = get_session(conf)
    spark.sparkContext.setLogLevel("WARN")
    store = open_store(conf.data_root, spark)
    recover_data_root(conf, spark)
    results: list[dict[str, Any]] = []
    running = not skip_done
    for name in stages:
        key = stage_hash(conf, name, tasks, spark)  # before the stage reads: acquire's landing fingerprint
        if not running:
            record = _skip_or_run(store, conf, run_date, name, key)
            if record is not None:
                results.append({"stage": name, "skipped": True, "tables": [], "record": record})
                continue
            running = True
        inputs = upstream_commits(store, conf, run_date, name)
        t0 = time.monotonic()
        log.debug("stage %s: start (run_date=%s, conf=%s)", name, run_date, conf.hash(),
                 extra={"event": "stage_start", "stage": name, "run_date": run_date})
        with stage_context(name, run_date):
            manifest = SPECS[name].run(spark, conf, run_date, tasks)
        duration = time.monotonic() - t0
        mark_done(store, conf, run_date, name, tasks, key, manifest, inputs, duration)
        log.info("stage %s: done in %.1f s: %s (commit %s)", name, duration, _counts_text(manifest), manifest.get("commit_id"),
                 extra={"event": "stage_done", "stage": name, "run_date": run_date, "duration_s": round(duration, 1),
                        "tables": _counts(manifest)})
        results.append(manifest)
    return results


def _counts_text(manifest: dict[str, Any]) -> str:
    """Records in, out and set aside over a stage's data tables, for its one console line."""
    from deepbatch.status import stage_counts

    c = stage_counts(manifest)
    if not c["tables"]:
        return f"{len(manifest.get('runs', []))} model(s) trained" if manifest.get("runs") else "published"
    aside = sum(c["quarantined"].values())
    return f"{c['records_in']:,} records in, {c['records_out']:,} out" + (f", {aside:,} quarantined or deduplicated" if aside else "")


def _counts(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("table", "records_in", "records_out", "quarantined", "deduplicated")
    return [{k: t.get(k) for k in keys} for t in manifest.get("tables", [])]


def log_tables(manifests: list[dict[str, Any]]) -> None:
    """One line per table a stage published, and per model it trained."""
    for m in manifests:
        for t in m.get("tables", []):
            log.info("%-10s %-32s in=%-7s out=%-7s quarantined=%s deduplicated=%s", m["stage"], t["table"], t["records_in"],
                     t["records_out"], t["quarantined"] or "{}", t["deduplicated"] or "{}")
        for r in m.get("runs", []):
            log.info("train      %-10s test_accuracy=%s epochs=%s launcher=%s model=%s",
                     r["task"], r["test_accuracy"], r["epochs_done"], r["launcher"], r["model_dir"])


def print_run_summary(conf: Conf, run_date: str) -> None:
    """The end of a pipeline run: every stage's standing (deepbatch status) and where the report is."""
    from deepbatch.status import render, run_date_status
    from deepbatch.storage import open_store

    report = run_date_status(open_store(conf.data_root, _session_if_remote(conf)), conf, run_date)
    print(render(report))
    print(f"report: {conf.path('reports', run_date, 'report.html')}")


def _session_if_remote(conf: Conf) -> Any:
    from deepbatch.storage import is_local

    if is_local(conf.data_root):
        return None
    from deepbatch.session import get_session

    return get_session(conf)


def show_status(conf: Conf, run_date: str | None, as_json: bool, verify: bool = False) -> int:
    """Print the standing of every stage for a run date; 0 only when every stage is ok."""
    from deepbatch.status import render, run_date_status, run_dates
    from deepbatch.storage import open_store

    store = open_store(conf.data_root, _session_if_remote(conf))
    dates = run_dates(store, conf)
    if run_date is None and not dates:
        print(f"no run has published anything under {conf.data_root} yet")
        return 1
    report = run_date_status(store, conf, run_date or dates[-1], content=verify)
    print(json.dumps(report, indent=2) if as_json else render(report))
    return 0 if report["ok"] else 1


def run_check(conf: Conf, as_json: bool) -> int:
    """deepbatch check: the dry run of the declared sources and tasks; 2 when it finds a problem."""
    from deepbatch.check import check_conf, render

    report = check_conf(conf)
    print(json.dumps(report.to_dict(), indent=2) if as_json else render(report))
    return 2 if report.problems else 0


def check_before_pipeline(conf: Conf, stages: list[str]) -> None:
    """pipeline runs deepbatch check first: a problem stops it before any Spark job, with every message."""
    from deepbatch.check import check_conf

    report = check_conf(conf, training="materialize" in stages)
    for f in report.findings:
        log.debug("check %s [%s] %s", f.level, f.key, f.message)
    if report.problems:
        raise ConfigError("deepbatch check found problem(s) in the declared sources and tasks; nothing ran:\n"
                          + "\n".join(f"  [{f.key}] {f.message}" for f in report.problems))
    warnings = len(report.findings)
    log.info("check: %d source(s), %d task(s) fit the landing zone%s", len(report.sources), len(report.tasks),
             f"; {warnings} warning(s), shown by `deepbatch check`" if warnings else "")


def render_report_page(conf: Conf, run_date: str) -> int:
    """Render reports/<run_date>/report.html again from the parts published for that run date."""
    from deepbatch.report.publish import publish_run_report

    spark = _session_if_remote(conf)
    recover_data_root(conf, spark)
    print(f"report: {publish_run_report(spark, conf, run_date)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    setup_logging(args.verbose, args.log_format)
    try:
        conf = load_conf(Path(args.conf), [*args.overrides, *(["train.resume=true"] if args.resume else [])])
        if args.command == "demo-data" and conf.demo.example:
            from deepbatch.demo.build import local_landing_dir
            from deepbatch.demo.examples import land_example

            landed = land_example(conf.demo.example, local_landing_dir(conf))
            log.info("example %s landed in %s from %s", conf.demo.example, landed["landing"], landed["source"])
            return 0
        if args.command == "demo-data":
            from deepbatch.demo.build import build_landing_zone

            d = build_landing_zone(conf).to_dict()
            counts = ", ".join(f"{k} {v:,}" for k, v in d.items() if isinstance(v, int))
            log.info("demo landing zone %s: %s; %d bad records planted (the clean stage must quarantine each; "
                     "listed in %s/_demo.json)", d["landing"], counts, len(d["bad_records"]), d["landing"])
            return 0
        if args.command == "status":
            return show_status(conf, args.run_date, args.json, args.verify)
        if args.command == "recover":
            print(json.dumps(recover_data_root(conf, _session_if_remote(conf)), indent=2))
            return 0
        if args.command == "report":
            return render_report_page(conf, args.run_date)
        if args.command == "check":
            return run_check(conf, args.json)
        if args.command == "pipeline":
            from deepbatch.pipeline import select

            stages = select(args.from_stage, args.to_stage)
            if "acquire" in stages:
                check_before_pipeline(conf, stages)
        else:
            stages = [args.command]
        tasks = tuple(args.task) if args.task else None
        check_chosen(conf, tasks)
        manifests = run_stages(conf, args.run_date, stages, tasks, skip_done=args.command == "pipeline" and not args.force)
        if args.command == "pipeline":
            print_run_summary(conf, args.run_date)
        else:
            log_tables(manifests)
        return 0
    except ConfigError as e:
        log.error("config error: %s", e)
        return e.exit_code
    except DeepbatchError as e:
        log.error("%s: %s", type(e).__name__, e)
        return e.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
