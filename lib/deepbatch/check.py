"""``deepbatch check``: a dry run of the declared sources and tasks against the landing zone, before any Spark job.

For each source it reports how many files and records acquire would land, the files no source reads,
the fields found against the mapped ones and the labels found against the declared classes; for each
task whether training can run (labelled rows per split, row groups against workers). Every problem
names its conf key and the fix. ``deepbatch pipeline`` runs the same checks first and stops on a problem.

It reads on the driver only: file listings, CSV headers, Parquet footers, and a sample of records
(``SAMPLE_RECORDS`` per source) for fields and labels; record counts are exact (lines, Parquet row counts).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from deepbatch.catalog import Source, classes_of, label_source, sources, trained_tasks
from deepbatch.config import Conf
from deepbatch.storage import FileEntry, list_files, listing_base, matches, open_text, path_exists, relative_path

SAMPLE_RECORDS = 20_000  # records read per source for fields and labels


@dataclass
class Finding:
    level: str  # problem (a stage would fail or lose the task) | warning (records will be quarantined or unused)
    key: str  # the conf key to look at
    message: str


@dataclass
class SourceCheck:
    name: str
    kind: str
    folder: str
    files: int = 0
    records: int = 0
    unmatched: list[str] = field(default_factory=list)  # files the source lands but cannot read (quarantined)
    fields_found: list[str] = field(default_factory=list)
    labels: Counter[str] = field(default_factory=Counter)  # label -> records (files: class folder -> files)
    ids: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)


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


@dataclass
class _Sample:
    """What the sampled records of one record source showed."""

    keys: Counter[str] = field(default_factory=Counter)
    sampled: int = 0
    label_of: dict[str, str] = field(default_factory=dict)  # id -> label (label tables, labelled text)


def _note(sc: SourceCheck, sample: _Sample, src: Source, rec: dict[str, Any]) -> None:
    sample.keys.update(str(k) for k in rec)
    sample.sampled += 1
    rid = rec.get(src.id_field) if src.id_field else None
    if rid is not None:
        sc.ids.add(str(rid).strip())
    label = rec.get(src.label_field) if src.label_field else None
    if label is not None and str(label).strip():
        sc.labels[str(label).strip()] += 1
        if rid is not None:
            sample.label_of[str(rid).strip()] = str(label).strip()


def _scan_jsonl(sc: SourceCheck, sample: _Sample, src: Source, files: list[FileEntry]) -> None:
    for f in files:
        with open_text(f.path) as fh:
            for line in fh:
                if not line.strip():
                    continue
                sc.records += 1
                if sample.sampled >= SAMPLE_RECORDS:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    _note(sc, sample, src, rec)


def _scan_csv(sc: SourceCheck, sample: _Sample, src: Source, files: list[FileEntry]) -> None:
    for f in files:
        with open_text(f.path) as fh:
            reader = csv.DictReader(fh, delimiter=src.delimiter)
            sample.keys.update(c.lstrip("\ufeff") for c in reader.fieldnames or [])
            for row in reader:
                sc.records += 1
                if sample.sampled < SAMPLE_RECORDS:
                    _note(sc, sample, src, {k.lstrip("\ufeff"): v for k, v in row.items() if k is not None})


def _scan_parquet(sc: SourceCheck, sample: _Sample, src: Source, files: list[FileEntry]) -> None:
    import pyarrow.parquet as pq

    from deepbatch.storage import open_input_file

    for f in files:
        try:
            with open_input_file(f.path) as fh:
                pf = pq.ParquetFile(fh)
                sc.records += pf.metadata.num_rows
                sample.keys.update(pf.schema_arrow.names)
                wanted = [c for c in (src.id_field, src.label_field) if c and c in pf.schema_arrow.names]
                for batch in pf.iter_batches(columns=wanted, batch_size=4096) if wanted else []:
                    for rec in batch.to_pylist():
                        if sample.sampled < SAMPLE_RECORDS:
                            _note(sc, sample, src, rec)
        except Exception as e:  # noqa: BLE001 - any unreadable footer: acquire quarantines the file as UNREADABLE_FILE
            sc.findings.append(Finding("warning", f"sources.{src.name}", f"{f.path} is not a readable Parquet file ({str(e)[:120]}): "
                                       "acquire lands it as one UNREADABLE_FILE record"))


def _scan_json(sc: SourceCheck, sample: _Sample, src: Source, files: list[FileEntry]) -> None:
    for f in files:
        with open_text(f.path) as fh:
            try:
                data = json.load(fh)
            except ValueError:
                sc.findings.append(Finding("warning", f"sources.{src.name}.kind", f"{f.path} is not a JSON document: acquire lands it as "
                                           "one MALFORMED_RECORD record (a file with one record per line is kind jsonl)"))
                continue
        for rec in data if isinstance(data, list) else [data]:
            sc.records += 1
            if isinstance(rec, dict) and sample.sampled < SAMPLE_RECORDS:
                _note(sc, sample, src, rec)


_SCANNERS = {"jsonl": _scan_jsonl, "json": _scan_json, "csv": _scan_csv, "parquet": _scan_parquet}


def _mapped_fields(src: Source) -> list[tuple[str, str]]:
    """(conf key, field name) of every field the source maps."""
    named = [("fields.id", src.id_field), ("fields.text", src.text_field), ("fields.label", src.label_field)]
    return [(k, v) for k, v in named if v] + [("fields.metadata", m) for m in src.metadata]


def _check_fields(sc: SourceCheck, src: Source, sample: _Sample) -> None:
    sc.fields_found = sorted(sample.keys)
    if sc.records == 0:
        return
    for key, name in _mapped_fields(src):
        if name not in sample.keys:
            sc.findings.append(Finding("problem", f"sources.{src.name}.{key}", f"source {src.name!r} maps {name!r}, which is in none of its "
                                       f"records; fields found: {', '.join(sc.fields_found) or 'none'}. Map one of those."))


def file_id(src: Source, f: FileEntry, base: str) -> str:
    """The record id acquire gives a landed file (``id: stem`` or ``id: path``)."""
    rel = relative_path(f.path, base) if src.id_from == "path" else f.path.rsplit("/", 1)[-1]
    head, _, name = rel.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    return f"{head}/{stem}" if head else stem


def _scan_files(sc: SourceCheck, src: Source, files: list[FileEntry], base: str, folder_labels: bool) -> None:
    sc.records = len(files)
    seen: dict[str, str] = {}
    for f in files:
        if not matches(f.path, src.glob) or f.size == 0:
            continue
        rid = file_id(src, f, base)
        if rid in seen and not any(x.key == f"sources.{src.name}.id" for x in sc.findings):
            sc.findings.append(Finding("warning", f"sources.{src.name}.id", f"files {seen[rid].rsplit('/', 2)[-2:]} and "
                                       f"{f.path.rsplit('/', 2)[-2:]} get the same id {rid!r} (id: {src.id_from}); clean keeps one and "
                                       f"deduplicates the others as DUPLICATE_ID. Set sources.{src.name}.id: path"))
        seen[rid] = f.path
        sc.ids.add(rid)
        rel = relative_path(f.path, base)
        if folder_labels and "/" in rel:  # ImageFolder: landing/<source>/<class>/<file>
            sc.labels[rel.rsplit("/", 2)[-2]] += 1


def check_source(conf: Conf, src: Source, all_sources: tuple[Source, ...]) -> tuple[SourceCheck, _Sample]:
    from deepbatch.stages.acquire import source_files

    folder = src.folder(conf)
    sc, sample = SourceCheck(src.name, src.kind, folder), _Sample()
    listed = list_files(folder)
    if not listed and not path_exists(folder):
        sc.findings.append(Finding("problem", f"sources.{src.name}.path", f"landing folder {folder} of source {src.name!r} does not exist: put "
                                   f"its files there, fix 'sources.{src.name}.path', or remove the source"))
        return sc, sample
    sharing = tuple(o for o in all_sources if o.folder(conf) == folder)
    files = source_files(src, folder, sharing, listed)
    sc.files = len(files)
    sc.unmatched = [f.path for f in files if not matches(f.path, src.glob)]
    if src.kind == "files":
        folder_labels = any(t.source == src.name and t.labels == "folder" for t in conf.tasks.values())
        _scan_files(sc, src, files, listing_base(folder), folder_labels)
    else:
        _SCANNERS[src.kind](sc, sample, src, [f for f in files if matches(f.path, src.glob) and f.size > 0])
        _check_fields(sc, src, sample)
    if sc.unmatched:
        sc.findings.append(Finding("warning", f"sources.{src.name}.glob", f"{len(sc.unmatched)} file(s) in {folder} match no source's glob "
                                   f"({src.glob}), e.g. {sc.unmatched[0].rsplit('/', 1)[-1]}: acquire lands them and clean quarantines "
                                   "them as UNSUPPORTED_FORMAT"))
    return sc, sample


def stray_files(conf: Conf, all_sources: tuple[Source, ...]) -> list[str]:
    """Landing files under <data_root>/landing that no declared source's folder holds."""
    folders = [listing_base(s.folder(conf)).rstrip("/") + "/" for s in all_sources]
    hidden = ("_", ".")  # deepbatch's own markers (landing/_demo.json) and hidden files
    return [f.path for f in list_files(conf.path("landing"))
            if not any(f.path.startswith(d) for d in folders) and not f.path.rsplit("/", 1)[-1].startswith(hidden)]


def _labels_found(conf: Conf, task: str, checks: dict[str, tuple[SourceCheck, _Sample]]) -> tuple[Counter[str], float]:
    """The labels the task's labelled content carries (a sample for record sources) and the factor to all records."""
    tc = conf.task(task)
    content, sample = checks[tc.source]
    table = label_source(conf, task)
    if table is not None:
        from deepbatch.catalog import label_id, source

        _, lsample = checks[table]
        src = source(conf, tc.source)
        as_ids = (lambda rid: label_id(rid, src)) if src.kind == "files" else (lambda rid: rid)
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


def check_task(conf: Conf, task: str, checks: dict[str, tuple[SourceCheck, _Sample]]) -> TaskCheck:
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
    return tcheck


def check_conf(conf: Conf, training: bool = True) -> CheckReport:
    """The dry run: every declared source against its landing folder, then every trained task (whether it can
    train; ``training=False`` for a run that stops before materialize reports the tasks' rows only)."""
    all_sources = sources(conf)
    checks = {src.name: check_source(conf, src, all_sources) for src in all_sources}
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
