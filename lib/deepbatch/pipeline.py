"""Which stages a ``deepbatch pipeline`` run executes, and the records that let it skip the rest.

Stages run in dependency order. After a stage publishes, a completion record is
written to ``manifests/run_date=D/_done/<stage>.json`` holding the stage's
settings hash: the hash of only the conf sections that stage reads (so changing
``infer.batch_size`` does not retrain) plus the tasks it covered, and for acquire
a fingerprint of the landing zone's files (a rebuilt or grown landing zone is
new input). A later
pipeline run for the same run date skips a stage whose record carries the same
hash, and logs the skip. Once one stage runs, every later stage runs too: its
input may have changed. ``--force`` reruns every selected stage; ``--from`` and
``--to`` select a range.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import Any

from deepbatch.config import Conf
from deepbatch.errors import ConfigError

log = logging.getLogger(__name__)

STAGES = ("acquire", "clean", "integrate", "analyse", "materialize", "train", "infer")

# The conf sections each stage reads (besides data_root, which every stage reads).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "acquire": ("acquire",),
    "clean": ("tasks", "quality"),
    "integrate": ("tasks", "split"),
    "analyse": ("tasks",),
    "materialize": ("tasks", "datasets"),
    "train": ("tasks", "datasets", "train"),
    "infer": ("tasks", "infer"),
}
assert set(STAGE_SECTIONS) == set(STAGES)


def select(start: str | None = None, end: str | None = None) -> list[str]:
    """The stages from ``start`` to ``end`` inclusive, in dependency order."""
    for name in (start, end):
        if name is not None and name not in STAGES:
            raise ConfigError(f"unknown stage {name!r}; stages in order: {', '.join(STAGES)}")
    i = STAGES.index(start) if start else 0
    j = STAGES.index(end) if end else len(STAGES) - 1
    if i > j:
        raise ConfigError(f"--from {start} comes after --to {end}; stages in order: {', '.join(STAGES)}")
    return list(STAGES[i : j + 1])


def stage_hash(conf: Conf, stage: str, tasks: tuple[str, ...] | None) -> str:
    """Hash of what determines a stage's output: its conf sections, the tasks, and for acquire (whose
    input is not another stage's output) the landing zone's file listing (path, size, mtime)."""
    from deepbatch.io import fingerprint

    d = conf.to_dict()
    key = {"stage": stage, "data_root": conf.data_root, "tasks_run": sorted(tasks) if tasks else None,
           **{s: d[s] for s in STAGE_SECTIONS[stage]}}  # fmt: skip
    if stage == "acquire":
        key["landing"] = fingerprint(conf.path("landing"))
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _record_path(conf: Conf, run_date: str, stage: str) -> str:
    return conf.path("manifests", f"run_date={run_date}", "_done", f"{stage}.json")


def done_record(storage: Any, conf: Conf, run_date: str, stage: str) -> dict[str, Any] | None:
    path = _record_path(conf, run_date, stage)
    if not storage.exists(path):
        return None
    try:
        return dict(json.loads(storage.read_text(path)))
    except ValueError:
        log.warning("stage %s: completion record %s is unreadable; the stage will run", stage, path)
        return None


def mark_done(storage: Any, conf: Conf, run_date: str, stage: str, tasks: tuple[str, ...] | None, duration_s: float) -> None:
    record = {
        "stage": stage,
        "run_date": run_date,
        "stage_hash": stage_hash(conf, stage, tasks),
        "conf_hash": conf.hash(),
        "tasks": sorted(tasks) if tasks else None,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 1),
    }
    storage.write_text(_record_path(conf, run_date, stage), json.dumps(record, indent=2))


def should_skip(storage: Any, conf: Conf, run_date: str, stage: str, tasks: tuple[str, ...] | None) -> dict[str, Any] | None:
    """The completion record that lets ``stage`` be skipped, or None when it must run."""
    record = done_record(storage, conf, run_date, stage)
    if record is not None and record.get("stage_hash") == stage_hash(conf, stage, tasks):
        return record
    return None
