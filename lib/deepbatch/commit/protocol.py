"""The commit protocol every stage publishes through.

A stage writes each output to ``_staging/<commit_id>/…``, checks it, and then
commits all of them at once:

1. a marker ``_commit.json`` (commit id, stage, run date) goes into each staged
   folder, and the stage manifest is staged beside them;
2. **the commit point**: one small journal file ``_commits/<commit_id>.json``
   lands (write-and-rename locally, one PUT on object stores). It lists every
   move (staged path -> published path) and every output's file count and bytes.
   Before it lands nothing published has changed (recovery rolls back: the
   staging folder is deleted); once it exists the commit has happened (recovery
   rolls forward);
3. each move puts the staged version at ``<table>/run_date=D`` and the published one
   under ``_trash/<commit_id>/i``: on local Linux disks with one atomic swap
   (``renameat2(RENAME_EXCHANGE)``), so the published path never goes missing; on
   HDFS and object stores by moving the old version aside and the new one in. Every
   step can be redone from what is on disk (the ``_commit.json`` markers tell the
   versions apart), so a roll-forward after a kill at any instant ends the same way;
4. the trash, the staging folder and then the journal are deleted.

Published data keeps the plain ``<table>/run_date=D/`` layout that Spark SQL,
DuckDB and Polars read. deepbatch commands roll interrupted commits forward
before they read anything (:mod:`deepbatch.commit.recovery`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from deepbatch._version import __version__
from deepbatch.commit.failpoints import failpoint
from deepbatch.commit.lock import Lock, acquire
from deepbatch.errors import CommitRecoveryError
from deepbatch.manifests import MANIFEST_NAME, TableCounts, build_manifest
from deepbatch.storage import CHECKSUMS, COMMIT_MARKER, FileStore, open_store, text_digest, tree_digests
from deepbatch.tables import conform, partition_path

log = logging.getLogger(__name__)
MARKER = COMMIT_MARKER


@dataclass(frozen=True)
class LockSettings:
    stale_after_s: float = 120.0
    heartbeat_s: float = 10.0
    enabled: bool = True
    wait_s: float = 0.0  # how long to wait for a live holder to finish before LockHeldError (0: fail at once)


@dataclass
class _Staged:
    target: str
    staging: str
    rows: int
    name: str


def journal_path(root: str, commit_id: str) -> str:
    return f"{root}/_commits/{commit_id}.json"


def new_commit_id(stage: str, run_date: str) -> str:
    return f"{stage}-{run_date}-{uuid.uuid4().hex[:8]}"


@dataclass
class Commit:
    """``with Commit(...) as c: c.stage_table(...)`` publishes on success and rolls back on an exception."""

    spark: Any
    data_root: str
    stage: str
    run_date: str
    conf_hash: str
    progress_seconds: float = 10.0
    locking: LockSettings = field(default_factory=LockSettings)
    commit_id: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    manifests: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # further stage-manifest fields (e.g. training runs)

    def __post_init__(self) -> None:
        self.root = self.data_root.rstrip("/")
        self.store: FileStore = open_store(self.root, self.spark)
        self.commit_id = self.commit_id or new_commit_id(self.stage, self.run_date)
        self.staging_root = f"{self.root}/_staging/{self.commit_id}"
        self.started = time.monotonic()
        self._staged: list[_Staged] = []
        self._lock: Lock | None = None

    @classmethod
    def for_stage(cls, spark: Any, conf: Any, stage: str, run_date: str, wait_s: float = 0.0) -> Commit:
        """The commit of one stage run, with the conf's data root, hash and lock settings."""
        locks = conf.locks
        return cls(spark, conf.data_root, stage, run_date, conf.hash(),
                   locking=LockSettings(locks.stale_after_s, locks.heartbeat_s, wait_s=wait_s))

    @property
    def run_id(self) -> str:
        return self.commit_id

    def __enter__(self) -> Commit:
        if self.locking.enabled:
            self._lock = acquire(self.store, self.root, self.stage, self.run_date, f"deepbatch {self.stage}",
                                 self.locking.stale_after_s, self.locking.heartbeat_s, wait_s=self.locking.wait_s)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.publish()
            else:
                self.abort()
        finally:
            if self._lock is not None:
                self._lock.release()

    # --- staging -------------------------------------------------------------------------
    def stage_table(self, table: str, df: Any, schema: Any, progress: bool = True) -> int:
        """Write df (conformed to schema) to staging; return the rows written (read back from the files).

        While it writes, a progress line (tasks done, ETA) is logged every ``progress_seconds``."""
        from deepbatch.progress import SparkProgress

        target = partition_path(f"{self.root}/{table}", self.run_date)
        staging = partition_path(f"{self.staging_root}/{table}", self.run_date)
        every = self.progress_seconds if progress else 0.0
        with SparkProgress(self.spark, f"deepbatch-{self.stage}-{self.run_date}", f"{self.stage} {table}", None, every):
            conform(df, schema, table).write.mode("overwrite").parquet(staging)
        rows = int(self.spark.read.parquet(staging).count())
        self._staged.append(_Staged(target, staging, rows, table))
        return rows

    def stage_files(self, name: str, target: str, files: dict[str, bytes]) -> int:
        """Stage a folder of plain files (e.g. a report) to publish at ``target``."""
        staging = f"{self.staging_root}/{name}"
        for fname, data in sorted(files.items()):
            self.store.write_bytes(f"{staging}/{fname}", data)
        self._staged.append(_Staged(target, staging, len(files), name))
        return len(files)

    def staging_dir(self, name: str) -> str:
        """A folder under this commit's staging area for another writer (Petastorm, a trainer) to fill."""
        return f"{self.staging_root}/{name}"

    def register_folder(self, name: str, staging: str, target: str, rows: int) -> None:
        """Publish a folder some other writer (e.g. Petastorm) staged at ``staging``."""
        self._staged.append(_Staged(target, staging, rows, name))

    def _find(self, table: str) -> _Staged:
        for s in self._staged:
            if s.name == table:
                return s
        raise KeyError(f"table {table!r} was not staged in this run")

    def staged_path(self, table: str) -> str:
        return self._find(table).staging

    def add_file(self, table: str, name: str, text: str) -> None:
        """Write a side file (e.g. a class map) into a staged partition; published with it."""
        self.store.write_text(f"{self._find(table).staging}/{name}", text)

    def add_manifest(self, counts: TableCounts) -> dict[str, Any]:
        counts.reconcile()
        staged = self._find(counts.table)
        manifest = build_manifest(self.stage, self.run_date, self.conf_hash, counts, time.monotonic() - self.started,
                                  staged.target, self.commit_id)
        self.store.write_text(f"{staged.staging}/{MANIFEST_NAME}", json.dumps(manifest, indent=2))
        self.manifests.append(manifest)
        return manifest

    # --- commit --------------------------------------------------------------------------
    def _relative(self, target: str) -> str:
        """Output paths in manifests and records are relative to the data root, so a moved root still verifies."""
        return target[len(self.root) + 1 :] if target.startswith(self.root + "/") else target

    def _stage_summary(self, outputs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"stage": self.stage, "run_date": self.run_date, "conf_hash": self.conf_hash, "commit_id": self.commit_id,
                "run_id": self.commit_id, "duration_s": round(time.monotonic() - self.started, 3),
                "deepbatch_version": __version__, "outputs": outputs, "tables": self.manifests, **self.extra}

    def _journal(self) -> dict[str, Any]:
        """Mark every staged folder, measure it, stage the stage manifest, and describe the moves."""
        marker = json.dumps({"commit_id": self.commit_id, "stage": self.stage, "run_date": self.run_date})
        moves, outputs = [], []
        for i, s in enumerate(self._staged):
            digests = json.dumps(tree_digests(s.staging, (MARKER, CHECKSUMS)), indent=0, sort_keys=True)
            self.store.write_text(f"{s.staging}/{CHECKSUMS}", digests)
            self.store.write_text(f"{s.staging}/{MARKER}", marker)
            files, size = self.store.tree_size(s.staging)
            outputs.append({"path": self._relative(s.target), "files": files, "bytes": size, "checksums": text_digest(digests)})
            moves.append({"src": s.staging, "dst": s.target, "aside": f"{self.root}/_trash/{self.commit_id}/{i}"})
        self.summary = self._stage_summary(outputs)
        summary_src = f"{self.staging_root}/_stage_manifest.json"
        self.store.write_text(summary_src, json.dumps(self.summary, indent=2))
        moves.append({"src": summary_src, "dst": f"{self.root}/manifests/run_date={self.run_date}/{self.stage}.json",
                      "aside": f"{self.root}/_trash/{self.commit_id}/{len(self._staged)}"})
        return {"commit_id": self.commit_id, "stage": self.stage, "run_date": self.run_date, "root": self.root,
                "moves": moves, "outputs": outputs}

    def publish(self) -> dict[str, Any]:
        """Commit every staged output at once; returns the stage manifest."""
        journal = self._journal()
        failpoint("commit.staged")
        self.store.write_text(journal_path(self.root, self.commit_id), json.dumps(journal, indent=2))
        failpoint("commit.journaled")
        roll_forward(self.store, journal)
        finish(self.store, journal)
        return self.summary

    def abort(self) -> None:
        self.store.delete(self.staging_root)


def _holds_commit(store: FileStore, path: str, commit_id: str) -> bool:
    """Whether a staged or published path carries this commit's marker (folders) or id (the stage manifest)."""
    marker = path if path.endswith(".json") else f"{path}/{MARKER}"
    try:
        return json.loads(store.read_text(marker)).get("commit_id") == commit_id
    except (OSError, ValueError):
        return False


def _apply_move(store: FileStore, commit_id: str, src: str, dst: str, aside: str) -> bool:
    """Put the new version (at src) at dst and the old one aside; redoable from any intermediate state.

    Where the file system can swap two paths atomically (Linux, local disks) dst never goes missing:
    the swap leaves the old version at src, which then moves aside. Elsewhere the old version moves
    aside first, then the new one in."""
    if not store.exists(src):
        return False
    if _holds_commit(store, src, commit_id):
        if not store.exists(dst):
            store.rename(src, dst)
            failpoint("commit.moved")
            return True
        if not store.exchange(src, dst):
            store.rename(dst, aside)
            failpoint("commit.aside")
            store.rename(src, dst)
            failpoint("commit.moved")
            return True
        failpoint("commit.moved")
    if store.exists(src):  # the old version, left at src by the swap
        store.rename(src, aside)
    return True


def roll_forward(store: FileStore, journal: dict[str, Any]) -> int:
    """Apply a journaled commit's moves; safe to repeat after a kill at any step. Returns moves made."""
    done = 0
    for m in journal["moves"]:
        if _apply_move(store, journal["commit_id"], m["src"], m["dst"], m["aside"]):
            done += 1
        elif not store.exists(m["dst"]):
            raise CommitRecoveryError(
                f"commit {journal['commit_id']}: neither its staged copy {m['src']} nor the published {m['dst']} exists, "
                f"so the commit cannot be completed. Rerun the stage: `deepbatch {journal['stage']} --run-date {journal['run_date']}`."
            )
    return done


def finish(store: FileStore, journal: dict[str, Any]) -> None:
    """Delete what a fully applied commit leaves: the old versions, the staging folder, then the journal."""
    root, cid = journal["root"], journal["commit_id"]
    failpoint("commit.applied")
    store.delete(f"{root}/_trash/{cid}")
    failpoint("commit.trashed")
    store.delete(f"{root}/_staging/{cid}")
    store.delete(journal_path(root, cid))
