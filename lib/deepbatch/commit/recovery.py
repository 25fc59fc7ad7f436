"""Finish or undo what interrupted runs left on a data root.

Every deepbatch command runs :func:`recover` before it reads (and ``deepbatch
recover`` runs it alone). For each commit whose writer is gone (its stage lock is
free or stale):

- a journal in ``_commits/``: the commit happened; roll it forward;
- a ``_staging/<commit_id>`` folder with no journal: it never committed; delete it;
- a ``_trash/<commit_id>`` folder with no journal: old versions of an applied
  commit; delete them, except a folder whose ``_manifest.json`` names a published
  path that no longer exists (a kill in the middle of the older rename-only
  protocol), which is moved back there.

Commits whose writer is alive are left alone.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from deepbatch.commit.lock import acquire
from deepbatch.commit.protocol import MARKER, LockSettings, finish, journal_path, roll_forward
from deepbatch.errors import LockHeldError
from deepbatch.manifests import MANIFEST_NAME
from deepbatch.storage import CHECKSUMS, FileStore, digest_problems, text_digest

log = logging.getLogger(__name__)
_COMMIT_ID = re.compile(r"^(?P<stage>[a-z_]+)-(?P<run_date>\d{4}-\d{2}-\d{2})-(?P<suffix>[0-9a-f]+)$")


@dataclass
class RecoveryReport:
    rolled_forward: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.__dict__.items() if v}


def _writer_gone(store: FileStore, root: str, commit_id: str, locking: LockSettings) -> Any:
    """The lock of the commit's stage and run date, held for the recovery; None while its writer lives."""
    m = _COMMIT_ID.match(commit_id)
    if not m:
        return None
    try:
        return acquire(store, root, m["stage"], m["run_date"], "deepbatch recover", locking.stale_after_s, heartbeat=False)
    except LockHeldError:
        return None


def _recover_journal(store: FileStore, root: str, name: str, report: RecoveryReport, locking: LockSettings) -> None:
    commit_id = name[: -len(".json")]
    lock = _writer_gone(store, root, commit_id, locking)
    if lock is None:
        report.in_progress.append(commit_id)
        return
    with lock:
        try:
            journal = json.loads(store.read_text(journal_path(root, commit_id)))
        except (OSError, ValueError):
            return  # finished by its writer in the meantime
        moved = roll_forward(store, journal)
        finish(store, journal)
    log.warning("recovered commit %s (stage %s, run date %s): rolled forward, %d of %d moves redone",
                commit_id, journal["stage"], journal["run_date"], moved, len(journal["moves"]))
    report.rolled_forward.append(commit_id)


def _restore_or_remove_trash(store: FileStore, root: str, commit_id: str, report: RecoveryReport) -> None:
    base = f"{root}/_trash/{commit_id}"
    for child in store.list_names(base):
        path = f"{base}/{child}"
        try:
            target = json.loads(store.read_text(f"{path}/{MANIFEST_NAME}")).get("output")
        except (OSError, ValueError):
            target = None
        if target and not store.exists(target):
            store.rename(path, target)
            log.warning("recovered %s from %s: an interrupted publish had moved it away", target, path)
            report.restored.append(target)
    store.delete(base)
    report.removed.append(base)


def _sweep(store: FileStore, root: str, area: str, journals: set[str], report: RecoveryReport, locking: LockSettings) -> None:
    for commit_id in store.list_dirs(f"{root}/{area}"):
        if commit_id in journals:
            continue
        lock = _writer_gone(store, root, commit_id, locking)
        if lock is None:
            if _COMMIT_ID.match(commit_id):
                report.in_progress.append(commit_id)
            continue
        with lock:
            if area == "_trash":
                _restore_or_remove_trash(store, root, commit_id, report)
            else:
                store.delete(f"{root}/{area}/{commit_id}")
                log.warning("rolled back uncommitted run %s: deleted its staging folder", commit_id)
                report.rolled_back.append(commit_id)


def recover(store: FileStore, data_root: str, locking: LockSettings | None = None) -> RecoveryReport:
    """Roll interrupted commits on ``data_root`` forward or back; returns what was done."""
    root, locking = data_root.rstrip("/"), locking or LockSettings()
    report = RecoveryReport()
    names = [n for n in store.list_names(f"{root}/_commits") if n.endswith(".json")]
    for name in names:
        _recover_journal(store, root, name, report, locking)
    pending = {n[: -len(".json")] for n in names if n[: -len(".json")] in report.in_progress}
    _sweep(store, root, "_staging", pending, report, locking)
    _sweep(store, root, "_trash", pending, report, locking)
    return report


def content_problems(store: FileStore, path: str, output: dict[str, Any]) -> list[str]:
    """Files of a published folder whose bytes no longer match the checksums its commit recorded (``_checksums.json``,
    itself checked against the journal's digest of it), each named."""
    if "checksums" not in output:
        return [f"{path}: its commit recorded no checksums (published by an older deepbatch): rerun the stage to verify it"]
    try:
        text = store.read_text(f"{path}/{CHECKSUMS}")
        if text_digest(text) != output["checksums"]:
            return [f"{path}/{CHECKSUMS} does not match the digest its commit recorded: the folder cannot be verified"]
        return digest_problems(path, json.loads(text), (MARKER, CHECKSUMS))
    except (OSError, ValueError) as e:
        return [f"{path}: cannot read its checksums: {e}"]


def verify_outputs(store: FileStore, root: str, commit_id: str, outputs: list[dict[str, Any]], content: bool = False) -> list[str]:
    """What is wrong with a commit's published outputs now: missing, replaced by another commit, or changed (file
    count and bytes; with ``content``, every file's bytes against the checksums the commit recorded).

    Output paths are relative to the data root ``root`` (absolute ones are taken as they are)."""
    problems = []
    for o in outputs:
        path = o["path"] if o["path"].startswith("/") or "://" in o["path"] else f"{root.rstrip('/')}/{o['path']}"
        if not store.exists(path):
            problems.append(f"{path} is missing")
            continue
        try:
            found = json.loads(store.read_text(f"{path}/{MARKER}")).get("commit_id")
        except (OSError, ValueError):
            found = None
        if found != commit_id:
            problems.append(f"{path} holds commit {found}, not {commit_id}")
        elif tuple(store.tree_size(path)) != (o["files"], o["bytes"]):
            problems.append(f"{path} changed since commit {commit_id} (files/bytes {store.tree_size(path)}, "
                            f"committed {(o['files'], o['bytes'])})")
        elif content:
            problems += content_problems(store, path, o)
    return problems
