"""``deepbatch check``: a dry run of the declared sources and tasks against the landing zone, before any Spark job.

For each source it reports how many files and records acquire would land, the files no source reads,
the fields found against the mapped ones and the labels found against the declared classes; for each
task whether training can run (labelled rows per split, row groups against workers). Every problem
names its conf key and the fix. ``deepbatch pipeline`` runs the same checks first and stops on a problem.

It reads on the driver only: file listings, CSV headers, Parquet footers, and a sample of records
(``SAMPLE_RECORDS`` per source) for fields and labels; record counts are exact (lines, Parquet row counts).
A source that is not files (a table, a database) is connected to through Spark: its rows counted and sampled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deepbatch.catalog import classes_of, label_source, sources, trained_tasks
from deepbatch.config import Conf
from deepbatch.sources import Source, reader_of
from deepbatch.sources.survey import Finding, Sample, SourceCheck
from deepbatch.storage import list_files, listing_base


def _session(conf: Conf) -> Callable[[], Any]:
    """A SparkSession made on first use (a table or database source), then shared with the run that follows."""

    def get() -> Any:
        from deepbatch.session import get_session

        return get_session(conf)

    return get


@dataclass
class TaskCheck:
    name: str
    labelled: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


@dataclass
class CheckReport:
    sources: list[SourceCheck]
    tasks: list[TaskCheck]
    stray: list[str]  # landing files no declared source reads

    @property
    def findings(self) -> list[Finding]:
        stray = [Finding("warning", "sources", f"{len(self.stray)} landing file(s) lie outside every declared source's folder, e.g. "
                         f"{self.stray[0]}: no stage reads them. Declare a source for them or move them")] if self.stray else []
        return [f for s in self.sources for f in s.findings] + [f for t in self.tasks for f in t.findings] + stray

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "problem"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": [{"name": s.name, "kind": s.kind, "folder": s.folder, "files": s.files, "records": s.records,
                         "unmatched": s.unmatched, "fields_found": s.fields_found, "labels": dict(s.labels)} for s in self.sources],
            "tasks": [{"name": t.name, "labelled": t.labelled, "splits": t.splits} for t in self.tasks],
            "stray_files": self.stray,
            "findings": [vars(f) for f in self.findings],
        }


def check_source(conf: Conf, src: Source, all_sources: tuple[Source, ...], spark: Callable[[], Any]) -> tuple[SourceCheck, Sample]:
    """One source through its reader's survey: a landing folder's files, or a table's rows."""
    return reader_of(src).survey(conf, src, all_sources, spark)


def stray_files(conf: Conf, all_sources: tuple[Source, ...]) -> list[str]:
    """Landing files under <data_root>/landing that no declared source's folder holds."""
    folders = [listing_base(s.folder(conf)).rstrip("/") + "/" for s in all_sources if s.reads_files]
    hidden = ("_", ".")  # deepbatch's own markers (landing/_demo.json) and hidden files
    return [f.path for f in list_files(conf.path("landing"))
            if not any(f.path.startswith(d) for d in folders) and not f.path.rsplit("/", 1)[-1].startswith(hidden)]


def _labels_found(conf: Conf, task: str, checks: dict[str, tuple[SourceCheck, Sample]]) -> tuple[Counter[str], float]:
    """The labels the task's labelled content carries (a sample for record sources) and the factor to all records."""
    tc = conf.task(task)
    content, sample = checks[tc.source]
    table = label_source(conf, task)
    if table is not None:
        from deepbatch.catalog import label_id, source

        _, lsample = checks[table]
        src = source(conf, tc.source)
        as_ids = (lambda rid: label_id(rid, src)) if src.role == "files" else (lambda rid: rid)
        return Counter(label for rid, label in lsample.label_of.items() if as_ids(rid) in content.ids), 1.0
    scale = content.records / sample.sampled if tc.labels == "field" and sample.sampled else 1.0
    return content.labels, scale


def _class_findings(task: str, declared: list[str] | None, found: Counter[str]) -> tuple[int, list[Finding]]:
    """Labelled rows among ``found`` and what to say about labels that are not classes, or classes without labels."""
    key = f"tasks.{task}.classes"
    if not found:
        return 0, []  # no labelled records at all: check_task says so
    if declared is None:
        if len(found) < 2:
            return 0, [Finding("problem", key, f"task {task!r} has classes: auto but its labelled rows show {len(found)} distinct label(s) "
                               f"{sorted(found)}; a classifier needs at least 2")]
        return sum(found.values()), []
    canon = {c.strip().lower(): c for c in declared}
    known: Counter[str] = Counter()
    for label, n in found.items():
        if label.strip().lower() in canon:
            known[canon[label.strip().lower()]] += n
    unknown = {k: n for k, n in found.items() if k.strip().lower() not in canon}
    out = []
    if unknown:
        shown = ", ".join(f"{k!r} ({n})" for k, n in sorted(unknown.items(), key=lambda kv: -kv[1])[:8])
        out.append(Finding("warning", key, f"task {task!r}: labels that are not declared classes: {shown}; their records are quarantined "
                           f"(UNKNOWN_LABEL) or left unlabelled. Add them to {key}, or set {key}: auto"))
    empty = [c for c in declared if not known.get(c)]
    if empty:
        out.append(Finding("warning", key, f"task {task!r}: declared classes with no labelled records: {empty}"))
    return sum(known.values()), out


def _shard_findings(conf: Conf, task: str, train_rows: int) -> list[Finding]:
    """Training refuses a rank whose shard holds fewer rows than a batch: say so before any stage runs."""
    bs = conf.task(task).train.batch_size
    workers = 1 if conf.train.launcher == "local" else conf.train.num_proc
    per_rank = train_rows // max(workers, 1)
    if per_rank >= bs:
        return []
    return [Finding("problem", f"tasks.{task}.train.batch_size", f"task {task!r}: about {train_rows} training rows over {workers} "
                    f"training worker(s) (train.launcher={conf.train.launcher}, train.num_proc={conf.train.num_proc}) give each "
                    f"about {per_rank} rows, fewer than tasks.{task}.train.batch_size={bs}: training would stop. Lower the batch "
                    "size, use fewer workers, or add data")]


def _class_split_findings(conf: Conf, task: str, per_class: Counter[str], scale: float) -> list[Finding]:
    """Classes with so few labelled rows that the hash split likely leaves them out of validation or test."""
    split, declared = conf.split_of(task), classes_of(conf, task)
    smallest = min(f for f in (split.train, split.val, split.test) if f > 0)
    known = {c.strip().lower() for c in declared} if declared is not None else None
    rare = {c: int(round(n * scale)) for c, n in per_class.items()
            if n * scale * smallest < 1 and (known is None or c.strip().lower() in known)}
    if not rare:
        return []
    shown = ", ".join(f"{c!r} ({n})" for c, n in sorted(rare.items(), key=lambda kv: kv[1])[:8])
    return [Finding("warning", f"tasks.{task}.split", f"task {task!r}: classes with too few labelled rows to appear in every split "
                    f"(the smallest takes {smallest:.0%}): {shown}. Their accuracy goes unmeasured or they are never learned; add "
                    "rows, or merge or drop the classes")]


def check_task(conf: Conf, task: str, checks: dict[str, tuple[SourceCheck, Sample]]) -> TaskCheck:
    tc, split, d = conf.task(task), conf.split_of(task), conf.datasets
    found, scale = _labels_found(conf, task, checks)
    known, findings = _class_findings(task, classes_of(conf, task), found)
    tcheck = TaskCheck(task, int(round(known * scale)), findings=findings)
    tcheck.splits = {"train": int(tcheck.labelled * split.train), "val": int(tcheck.labelled * split.val),
                     "test": int(tcheck.labelled * split.test)}
    need = d.workers * d.min_row_groups_per_worker
    workers = f"datasets.workers={d.workers} x datasets.min_row_groups_per_worker={d.min_row_groups_per_worker}"
    if tcheck.labelled == 0:
        tcheck.findings.append(Finding("problem", f"tasks.{task}.labels", f"task {task!r} has no labelled records (labels: {tc.labels}): "
                                       "check the labels source, field or folders, and the classes"))
    elif tcheck.labelled < need:
        tcheck.findings.append(Finding("problem", "datasets.workers", f"task {task!r} has {tcheck.labelled} labelled record(s); its training "
                                       f"split needs at least {need} ({workers}). Add data, lower those settings, or leave the task out "
                                       "with --task"))
    elif tcheck.splits["train"] < need or min(tcheck.splits["val"], tcheck.splits["test"]) < 1:
        tcheck.findings.append(Finding("warning", "datasets.workers", f"task {task!r}: about {tcheck.splits} rows per split (the hash split "
                                       f"decides the exact counts); training needs {need} training rows ({workers}) and learns little "
                                       "without validation and test rows"))
    if tcheck.labelled >= need:
        tcheck.findings += _shard_findings(conf, task, tcheck.splits["train"])
    tcheck.findings += _class_split_findings(conf, task, found, scale) if tcheck.labelled else []
    return tcheck


def check_conf(conf: Conf, training: bool = True, spark: Callable[[], Any] | None = None) -> CheckReport:
    """The dry run: every declared source against its landing folder (or its table), then every trained task (whether it
    can train; ``training=False`` for a run that stops before materialize reports the tasks' rows only). ``spark`` gives a
    session for the sources that are not files; only they start one."""
    all_sources = sources(conf)
    session = spark or _session(conf)
    checks = {src.name: check_source(conf, src, all_sources, session) for src in all_sources}
    trained = trained_tasks(conf)
    tasks = [check_task(conf, task, checks) for task in trained]
    if not training:
        for t in tasks:
            t.findings = [f for f in t.findings if f.level != "problem"]
    for task in conf.tasks:
        if task not in trained:
            content = checks[conf.task(task).source][0]
            tasks.append(TaskCheck(task, 0, {"unlabelled": content.records}))
    return CheckReport([c for c, _ in checks.values()], tasks, stray_files(conf, all_sources))


def render(report: CheckReport) -> str:
    """The report as text: one block per source and task, then the findings, problems first."""
    lines = []
    for s in report.sources:
        lines.append(f"source {s.name} ({s.kind}, {s.folder}): {s.files:,} file(s), {s.records:,} record(s)"
                     + (f", {len(s.unmatched)} matching no glob" if s.unmatched else ""))
        if s.fields_found:
            lines.append(f"  fields found: {', '.join(s.fields_found)}")
        if s.labels:
            lines.append("  labels: " + ", ".join(f"{k} {n:,}" for k, n in sorted(s.labels.items())[:20]))
    for t in report.tasks:
        lines.append(f"task {t.name}: " + (f"~{t.labelled:,} labelled rows, ~" + " / ".join(f"{k} {n:,}" for k, n in t.splits.items())
                                           if "unlabelled" not in t.splits else f"inference only, {t.splits['unlabelled']:,} record(s)"))
    for f in sorted(report.findings, key=lambda f: f.level != "problem"):
        lines.append(f"{f.level.upper()} [{f.key}] {f.message}")
    problems = len(report.problems)
    lines.append(f"check: {len(report.sources)} source(s), {len(report.tasks)} task(s): {problems} problem(s), "
                 f"{len(report.findings) - problems} warning(s)")
    return "\n".join(lines)
