"""The pipeline as data: each stage's conf sections, upstream stages and runner, and the skip records.

Stages run in the order of :data:`STAGE_TABLE`. After a stage commits, a completion record
``manifests/run_date=D/_done/<stage>.json`` names:

- the stage's settings hash: only the conf sections it reads (so ``infer.batch_size`` does
  not retrain), the tasks it covered, and for acquire a fingerprint of the landing zone
  taken *before* the stage read it;
- the commit it published and each output's path, file count and bytes;
- the commits of its upstream stages at the time it ran.

A later pipeline run skips a stage only when all three still hold: same settings hash,
the same upstream commits (new upstream data reruns it), and every output present and
still holding that commit. Anything else runs the stage, and the log says why. Once one
stage runs, every later stage runs too. ``--force`` reruns every selected stage; ``--from``
and ``--to`` select a range.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from deepbatch.config import Conf
from deepbatch.errors import ConfigError
from deepbatch.storage import FileStore

log = logging.getLogger(__name__)


def chosen_trained(conf: Conf, chosen: tuple[str, ...] | None) -> tuple[str, ...]:
    """--task narrowed to the tasks that train a model (None: all of them)."""
    from deepbatch.catalog import trained_tasks

    trained = trained_tasks(conf)
    return tuple(t for t in chosen if t in trained) if chosen else trained


def check_chosen(conf: Conf, chosen: tuple[str, ...] | None) -> None:
    """Every --task names a declared task."""
    for name in chosen or ():
        conf.task(name)


# How a stage's runner takes --task: not at all, narrowed to the trainable tasks, or as given (infer targets).
_TASK_ARGS: dict[str, Callable[[Conf, tuple[str, ...] | None], tuple[Any, ...]]] = {
    "none": lambda conf, chosen: (),
    "trained": lambda conf, chosen: (chosen_trained(conf, chosen),),
    "chosen": lambda conf, chosen: (chosen,),
}


# A stage-hash section: every task's declaration without its training settings (tasks.<name>.train), so a
# change of epochs reruns train, not clean.
TASK_DECLARATIONS = "tasks:declared"


@dataclass(frozen=True)
class StageSpec:
    name: str
    sections: tuple[str, ...]  # the conf sections (or section.key) it reads, besides data_root
    upstream: tuple[str, ...]  # the stages whose outputs for the same run date it reads
    runner: str  # "module:function", imported when the stage runs (keeps Spark and torch out of the CLI's import)
    tasks: str = "none"  # how the runner takes --task (see _TASK_ARGS)
    reads_window: bool = False  # it also reads earlier run dates' gold (datasets.window): their commits are inputs too

    def run(self, spark: Any, conf: Conf, run_date: str, chosen: tuple[str, ...] | None) -> dict[str, Any]:
        module, function = self.runner.split(":")
        fn = getattr(importlib.import_module(module), function)
        return dict(fn(spark, conf, run_date, *_TASK_ARGS[self.tasks](conf, chosen)))


STAGE_TABLE: tuple[StageSpec, ...] = (
    StageSpec("acquire", ("acquire", "sources"), (), "deepbatch.stages.run:run_acquire"),
    StageSpec("clean", ("sources", TASK_DECLARATIONS, "quality"), ("acquire",), "deepbatch.stages.run:run_clean"),
    StageSpec("integrate", ("sources", TASK_DECLARATIONS, "split"), ("clean",), "deepbatch.stages.run:run_integrate"),
    StageSpec("analyse", ("sources", TASK_DECLARATIONS, "report"), ("clean", "integrate"), "deepbatch.stages.analyse:run_analyse"),
    StageSpec("materialize", (TASK_DECLARATIONS, "datasets"), ("integrate",), "deepbatch.datasets.materialize:run_materialize", "trained",
              reads_window=True),
    # train also exports ONNX graphs and, with infer.quantize, the int8 graph it checks against the test split.
    StageSpec("train", ("tasks", "datasets", "train", "infer.quantize", "infer.max_quantized_accuracy_drop"), ("materialize",),
              "deepbatch.train.launch:run_train_stage", "trained"),
    StageSpec("infer", ("sources", TASK_DECLARATIONS, "infer", "report"), ("clean", "integrate", "train"), "deepbatch.infer.run:run_infer",
              "chosen"),
)
STAGES = tuple(s.name for s in STAGE_TABLE)
SPECS = {s.name: s for s in STAGE_TABLE}


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


def _setting(conf: dict[str, Any], key: str) -> Any:
    """A conf section (``train``), one key of it (``infer.quantize``), or the tasks without their training settings."""
    if key == TASK_DECLARATIONS:
        return {name: {k: v for k, v in task.items() if k != "train"} for name, task in conf["tasks"].items()}
    value: Any = conf
    for part in key.split("."):
        value = value[part]
    return value


def stage_hash(conf: Conf, stage: str, tasks: tuple[str, ...] | None, spark: Any = None) -> str:
    """Hash of what determines a stage's output: its conf sections, the tasks, and for acquire (whose
    input is not another stage's output) each source's fingerprint (a landing folder's file listing: path,
    size, mtime; a table's row count and newest updated_at). A source that cannot prove it is unchanged
    makes the hash new every time, so acquire runs, and the log says why.

    Call it before the stage runs: files that land while acquire reads then change the next hash."""
    d = conf.to_dict()
    # Not the data root itself: the record lives under it, and a root copied elsewhere holds the same outputs.
    key = {"stage": stage, "tasks_run": sorted(tasks) if tasks else None,
           **{s: _setting(d, s) for s in SPECS[stage].sections}}
    if stage == "acquire":
        from deepbatch.catalog import sources

        key["landing"] = {src.name: _fingerprint(spark, conf, src) for src in sources(conf)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _fingerprint(spark: Any, conf: Conf, src: Any) -> str:
    from deepbatch.sources import reader_of

    found = reader_of(src).fingerprint(spark, conf, src)
    if found.value is None:
        log.info("acquire runs for source %s: %s", src.name, found.why)
        return f"unproven-{uuid.uuid4().hex}"
    return found.value


def _record_path(conf: Conf, run_date: str, stage: str) -> str:
    return conf.path("manifests", f"run_date={run_date}", "_done", f"{stage}.json")


def done_record(store: FileStore, conf: Conf, run_date: str, stage: str) -> dict[str, Any] | None:
    path = _record_path(conf, run_date, stage)
    if not store.exists(path):
        return None
    try:
        return dict(json.loads(store.read_text(path)))
    except ValueError:
        log.warning("stage %s: completion record %s is unreadable; the stage will run", stage, path)
        return None


def upstream_commits(store: FileStore, conf: Conf, run_date: str, stage: str) -> dict[str, str | None]:
    """The commit each upstream stage last published for this run date (None: no record), and for a stage
    that reads a training window, the commit of each earlier gold partition in it."""
    out: dict[str, str | None] = {}
    for up in SPECS[stage].upstream:
        record = done_record(store, conf, run_date, up)
        out[up] = record.get("commit_id") if record else None
    if SPECS[stage].reads_window:
        out.update(window_commits(store, conf, run_date))
    return out


def window_commits(store: FileStore, conf: Conf, run_date: str) -> dict[str, str | None]:
    """The commit each earlier gold partition in the training window holds (``gold/<task>@<run date>``)."""
    from deepbatch.catalog import trained_tasks
    from deepbatch.datasets.window import partition_commit, window_run_dates

    return {f"gold/{task}@{day}": partition_commit(store, conf.path("gold", task), day)
            for task in trained_tasks(conf) for day in window_run_dates(store, conf, task, run_date) if day != run_date}


def mark_done(store: FileStore, conf: Conf, run_date: str, stage: str, tasks: tuple[str, ...] | None, key: str,
              manifest: dict[str, Any], inputs: dict[str, str | None], duration_s: float) -> None:
    record = {
        "stage": stage,
        "run_date": run_date,
        "stage_hash": key,
        "conf_hash": conf.hash(),
        "tasks": sorted(tasks) if tasks else None,
        "commit_id": manifest.get("commit_id"),
        "outputs": manifest.get("outputs", []),
        "inputs": inputs,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 1),
    }
    store.write_text(_record_path(conf, run_date, stage), json.dumps(record, indent=2))


def why_run(store: FileStore, conf: Conf, run_date: str, stage: str, key: str) -> tuple[str | None, dict[str, Any] | None]:
    """(None, record) when the stage may be skipped; otherwise (the reason it must run, None)."""
    from deepbatch.commit import verify_outputs

    record = done_record(store, conf, run_date, stage)
    if record is None:
        return "no completion record for this run date", None
    if record.get("stage_hash") != key:
        return f"its settings or input files changed (stage hash {record.get('stage_hash')} -> {key})", None
    if not record.get("commit_id"):
        return "its completion record names no commit (written by an older deepbatch)", None
    now = upstream_commits(store, conf, run_date, stage)
    changed = [f"{u} {record.get('inputs', {}).get(u)} -> {c}" for u, c in now.items() if record.get("inputs", {}).get(u) != c]
    if changed:
        return f"its inputs were republished ({'; '.join(changed)})", None
    problems = verify_outputs(store, conf.data_root, record["commit_id"], record.get("outputs", []))
    if problems:
        return f"its outputs do not match commit {record['commit_id']}: {'; '.join(problems)}", None
    return None, record
