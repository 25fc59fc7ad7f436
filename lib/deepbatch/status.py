"""``deepbatch status``: what each stage published for a run date, and whether it still holds.

For every stage it reads the completion record (``manifests/run_date=D/_done/<stage>.json``)
and the stage manifest, and checks the record's outputs against the files on disk (the same
check a pipeline run makes before it skips a stage). A stage is:

- ``ok``: published, outputs present and holding its commit, inputs unchanged since;
- ``outdated``: published, but an upstream stage has published again since;
- ``inconsistent``: an output is missing, replaced or changed;
- ``interrupted``: a commit of the stage was cut off and waits for recovery;
- ``not run``: no record for this run date.

The command exits non-zero unless every stage is ``ok``, so cron and Airflow can alert on it.
"""

from __future__ import annotations

import json
from typing import Any

from deepbatch.commit import verify_outputs
from deepbatch.config import Conf
from deepbatch.pipeline import STAGES, done_record, upstream_commits
from deepbatch.storage import FileStore

OK = "ok"


def run_dates(store: FileStore, conf: Conf) -> list[str]:
    """Every run date with a manifest, oldest first."""
    return sorted(d[len("run_date=") :] for d in store.list_dirs(conf.path("manifests")) if d.startswith("run_date="))


def _pending_commits(store: FileStore, conf: Conf, run_date: str, stage: str) -> list[str]:
    prefix = f"{stage}-{run_date}-"
    names = store.list_names(conf.path("_commits"))
    return sorted(n[: -len(".json")] for n in names if n.startswith(prefix) and n.endswith(".json"))


def _summary(store: FileStore, conf: Conf, run_date: str, stage: str) -> dict[str, Any]:
    path = conf.path("manifests", f"run_date={run_date}", f"{stage}.json")
    try:
        return dict(json.loads(store.read_text(path))) if store.exists(path) else {}
    except ValueError:
        return {}


def stage_counts(summary: dict[str, Any]) -> dict[str, Any]:
    """Records in and out over the stage's data tables (quarantine tables and the file manifest
    only restate them), and everything quarantined or deduplicated, by reason."""
    every = summary.get("tables", [])
    tables = [t for t in every if not t["table"].startswith(("quarantine/", "bronze/_files"))]
    quarantined: dict[str, int] = {}
    for t in every:
        for reason, n in {**t.get("quarantined", {}), **t.get("deduplicated", {})}.items():
            quarantined[reason] = quarantined.get(reason, 0) + int(n)
    return {"tables": len(tables), "records_in": sum(int(t.get("records_in", 0)) for t in tables),
            "records_out": sum(int(t.get("records_out", 0)) for t in tables), "quarantined": dict(sorted(quarantined.items()))}


def _versions(summary: dict[str, Any]) -> dict[str, Any]:
    """Dataset and model versions a materialize or train commit produced."""
    out: dict[str, Any] = {}
    datasets = {t["table"].split("/", 1)[1]: t.get("extra", {}).get("version") for t in summary.get("tables", []) if t["table"].startswith("datasets/")}
    if datasets:
        out["datasets"] = datasets
    predictions = {t["table"].split("/", 1)[1]: _prediction_counts(t) for t in summary.get("tables", [])
                   if t["table"].startswith("predictions/") and not t["table"].endswith("_frames")}
    if predictions:
        out["predictions"] = predictions
    runs = summary.get("runs", [])
    if runs:
        out["models"] = {r["task"]: {"model_dir": r.get("model_dir"), "dataset_version": r.get("dataset_version"),
                                     "test_accuracy": r.get("test_accuracy"), "mlflow_run_id": r.get("mlflow_run_id")} for r in runs}
    return out


def _prediction_counts(table: dict[str, Any]) -> dict[str, Any]:
    extra = table.get("extra", {})
    return {"records": table.get("records_out"), "errors": sum((extra.get("errors_by_reason") or {}).values()),
            "test": (extra.get("accuracy_by_split") or {}).get("test")}


def _detail_lines(s: dict[str, Any]) -> list[str]:
    """Under a stage's line: the datasets, models and predictions it published, then its problems."""
    lines = []
    for task, m in s.get("models", {}).items():
        acc = f"{m['test_accuracy']:.4f}" if isinstance(m.get("test_accuracy"), float) else m.get("test_accuracy")
        lines.append(f"  model {task}: {m['model_dir']} (dataset {m['dataset_version']}, test accuracy {acc}, mlflow {m['mlflow_run_id']})")
    for task, v in s.get("datasets", {}).items():
        lines.append(f"  dataset {task}: version {v}")
    for target, p in s.get("predictions", {}).items():
        test = f"test accuracy {p['test']['accuracy']:.4f} on {p['test']['n']} rows" if p.get("test") else "no labelled test rows"
        lines.append(f"  predictions {target}: {p['records']} records, {p['errors']} record errors, {test}")
    return lines + [f"  {s['stage']}: {p}" for p in s["problems"]]


def stage_status(store: FileStore, conf: Conf, run_date: str, stage: str, content: bool = False) -> dict[str, Any]:
    """One stage's standing for a run date (see the module docstring for the states)."""
    record = done_record(store, conf, run_date, stage)
    pending = _pending_commits(store, conf, run_date, stage)
    out: dict[str, Any] = {"stage": stage, "status": "not run", "problems": []}
    if record is not None:
        summary = _summary(store, conf, run_date, stage)
        out.update({"commit_id": record.get("commit_id"), "finished_at": record.get("finished_at"),
                    "duration_s": record.get("duration_s"), **stage_counts(summary), **_versions(summary)})
        problems = verify_outputs(store, conf.data_root, record.get("commit_id") or "", record.get("outputs", []), content)
        if not record.get("commit_id"):
            problems = ["its record names no commit (written by an older deepbatch): rerun the stage"]
        changed = [u for u, c in upstream_commits(store, conf, run_date, stage).items() if record.get("inputs", {}).get(u) != c]
        out["problems"] = problems
        out["status"] = "inconsistent" if problems else ("outdated" if changed else OK)
        if changed and not problems:
            out["problems"] = [f"upstream {', '.join(changed)} published again since; rerun the pipeline"]
    if pending:
        out["status"] = "interrupted"
        out["problems"] = [*out["problems"], f"interrupted commit(s) {', '.join(pending)}: run `deepbatch recover`"]
    return out


def run_date_status(store: FileStore, conf: Conf, run_date: str, content: bool = False) -> dict[str, Any]:
    """Every stage's standing; ``content`` (status --verify): every published file's bytes checked against its checksum."""
    stages = [stage_status(store, conf, run_date, s, content) for s in STAGES]
    return {"run_date": run_date, "data_root": conf.data_root, "ok": all(s["status"] == OK for s in stages), "stages": stages,
            "verified_content": content}


def _line(s: dict[str, Any]) -> str:
    q = ", ".join(f"{k}={v}" for k, v in s.get("quarantined", {}).items()) or "-"
    dur = f"{s['duration_s']:.1f} s" if s.get("duration_s") is not None else "-"
    counts = f"{s['records_in']:>9} {s['records_out']:>9}" if s.get("tables") else f"{'-':>9} {'-':>9}"
    return f"{s['stage']:<12} {s['status']:<13} {s.get('commit_id') or '-':<36} {s.get('finished_at') or '-':<26} {dur:>9} {counts}  {q}"


def render(report: dict[str, Any]) -> str:
    """A table a person reads in a terminal: one line per stage, then versions and problems."""
    head = f"{'stage':<12} {'status':<13} {'commit':<36} {'finished':<26} {'duration':>9} {'in':>9} {'out':>9}  quarantined/deduplicated"
    lines = [f"run date {report['run_date']} ({report['data_root']}): {'ok' if report['ok'] else 'NOT OK'}", head]
    lines += [_line(s) for s in report["stages"]]
    for s in report["stages"]:
        lines += _detail_lines(s)
    return "\n".join(lines)
