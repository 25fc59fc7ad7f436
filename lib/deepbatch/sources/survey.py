"""What ``deepbatch check`` learns of one source: counts, fields and labels found, and findings by conf key.

Filled by each source reader's ``survey`` (:mod:`deepbatch.sources`) on the driver, before any Spark job.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from deepbatch.sources import Source

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
    ids: set[str] = field(default_factory=set)  # in Unicode NFC, as clean makes them
    findings: list[Finding] = field(default_factory=list)
    spelled: dict[str, str] = field(default_factory=dict)  # NFC id -> the first spelling seen
    twins: int = 0  # ids that differ from an earlier one only in Unicode normalisation


@dataclass
class Sample:
    """What the sampled records of one record source showed."""

    keys: Counter[str] = field(default_factory=Counter)
    sampled: int = 0
    label_of: dict[str, str] = field(default_factory=dict)  # id -> label (label tables, labelled text)


def note_id(sc: SourceCheck, src: Source, raw: str) -> str:
    """Record an id as clean will see it (NFC); a twin that differs only in Unicode normalisation is found once per source."""
    rid = unicodedata.normalize("NFC", raw)
    first = sc.spelled.setdefault(rid, raw)
    if first != raw:
        sc.twins += 1
        if sc.twins == 1:
            sc.findings.append(Finding("warning", f"sources.{src.name}", f"ids {first!r} ({len(first)} code points) and {raw!r} ({len(raw)}) "
                                       "differ only in Unicode normalisation (NFC/NFD; macOS writes file names in NFD): clean makes "
                                       "them one id and keeps the first; the others are quarantined as DUPLICATE_ID"))
    sc.ids.add(rid)
    return rid


def note(sc: SourceCheck, sample: Sample, src: Source, rec: dict[str, Any]) -> None:
    sample.keys.update(str(k) for k in rec)
    sample.sampled += 1
    rid = rec.get(src.id_field) if src.id_field else None
    if rid is not None:
        rid = note_id(sc, src, str(rid).strip())
    label = rec.get(src.label_field) if src.label_field else None
    if label is not None and str(label).strip():
        sc.labels[str(label).strip()] += 1
        if rid is not None:
            sample.label_of[rid] = str(label).strip()


def mapped_fields(src: Source) -> list[tuple[str, str]]:
    """(conf key, field name) of every field the source maps."""
    named = [("fields.id", src.id_field), ("fields.text", src.text_field), ("fields.label", src.label_field)]
    return [(k, v) for k, v in named if v] + [("fields.metadata", m) for m in src.metadata]


def check_fields(sc: SourceCheck, src: Source, sample: Sample) -> None:
    sc.fields_found = sorted(sample.keys)
    if sc.records == 0:
        return
    for key, name in mapped_fields(src):
        if name not in sample.keys:
            sc.findings.append(Finding("problem", f"sources.{src.name}.{key}", f"source {src.name!r} maps {name!r}, which is in none of its "
                                       f"records; fields found: {', '.join(sc.fields_found) or 'none'}. Map one of those."))
