"""One writer per stage and run date: a lock file with its owner and a heartbeat.

``_locks/<stage>/run_date=D.lock`` is created exclusively (``O_EXCL`` locally,
``create(overwrite=false)`` on HDFS) and holds the owner's host, pid, start time
and a heartbeat that a background thread refreshes. A lock is stale when its
owner ran on this host and that process is gone, or when its heartbeat is older
than ``stale_after_s``; a stale lock is taken over by moving it aside first (one
rename, which only one contender wins).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from deepbatch.errors import LockHeldError
from deepbatch.storage import FileStore

log = logging.getLogger(__name__)

# A lock file is written in the same call that creates it: one that stays empty or unreadable this long was left by a
# writer that died in between (or a full disk), not one still writing.
UNREADABLE_GRACE_S = 2.0


def lock_path(root: str, stage: str, run_date: str) -> str:
    return f"{root.rstrip('/')}/_locks/{stage}/run_date={run_date}.lock"


def _now() -> float:
    return time.time()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_alive_here(holder: dict[str, Any]) -> bool:
    """Whether the holder's process still runs on this host (the same process, not a reused pid)."""
    pid = int(holder.get("pid", -1))
    if pid <= 0 or not _pid_alive(pid):
        return False
    started = holder.get("process_start")
    return started is None or process_start(pid) in (None, started)


def is_stale(holder: dict[str, Any], stale_after_s: float) -> bool:
    """Its process is gone from this host (a reused pid does not count), or it was silent for longer
    than stale_after_s anywhere."""
    if holder.get("host") == socket.gethostname() and not _holder_alive_here(holder):
        return True
    return _now() - float(holder.get("heartbeat", 0)) > stale_after_s


@dataclass
class Lock:
    """A held lock; ``release()`` (or leaving the ``with`` block) frees it."""

    store: FileStore
    path: str
    token: str
    owner: dict[str, Any]
    heartbeat_s: float
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    def start_heartbeat(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat {self.path}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        stop = self._stop
        while stop is not None and not stop.wait(self.heartbeat_s):
            try:
                current = json.loads(self.store.read_text(self.path))
                if current.get("token") != self.token:
                    log.error("lock %s was taken over by %s; this run no longer holds it", self.path, current)
                    return
                self.owner["heartbeat"] = _now()
                self.store.write_text(self.path, json.dumps(self.owner))
            except Exception as e:  # noqa: BLE001 - a missed beat only ages the lock; the next one may succeed
                log.warning("lock %s: heartbeat failed (%s)", self.path, e)

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
        try:
            if json.loads(self.store.read_text(self.path)).get("token") == self.token:
                self.store.delete(self.path)
        except (OSError, ValueError):
            pass

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(store: FileStore, path: str) -> dict[str, Any] | None:
    """The lock's holder; None when the file vanished or holds no holder record (empty, half-written, not JSON)."""
    try:
        data = json.loads(store.read_text(path))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and "token" in data else None


def _take_over(store: FileStore, path: str, holder: dict[str, Any] | None) -> None:
    aside = f"{path}.stale-{uuid.uuid4().hex[:8]}"
    try:
        store.rename(path, aside)  # only one contender's rename succeeds
    except (OSError, FileExistsError):
        return
    if holder is None:
        log.warning("lock %s: took over a lock file that stayed empty or unreadable for %.0f s (its writer died between creating "
                    "and writing it, or the disk was full)", path, UNREADABLE_GRACE_S)
    else:
        log.warning("lock %s: took over a stale lock held by pid %s on %s since %s (last heartbeat %s)", path,
                    holder.get("pid"), holder.get("host"), holder.get("started_at"), _iso(float(holder.get("heartbeat", 0))))
    store.delete(aside)


def acquire(store: FileStore, root: str, stage: str, run_date: str, command: str = "", stale_after_s: float = 120.0,
            heartbeat_s: float = 10.0, heartbeat: bool = True, wait_s: float = 0.0) -> Lock:
    """Take the (stage, run date) lock or raise LockHeldError naming its holder; while a live holder keeps it,
    retry once a second for up to ``wait_s`` seconds first."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return _acquire_once(store, root, stage, run_date, command, stale_after_s, heartbeat_s, heartbeat)
        except LockHeldError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def _acquire_once(store: FileStore, root: str, stage: str, run_date: str, command: str, stale_after_s: float,
                  heartbeat_s: float, heartbeat: bool) -> Lock:
    path = lock_path(root, stage, run_date)
    token = uuid.uuid4().hex
    unreadable_since: float | None = None
    for _ in range(3):
        owner = {"token": token, "host": socket.gethostname(), "pid": os.getpid(), "process_start": process_start(os.getpid()),
                 "command": command, "started_at": _iso(_now()), "heartbeat": _now()}
        if store.create_exclusive(path, json.dumps(owner)):
            lock = Lock(store, path, token, owner, heartbeat_s)
            if heartbeat:
                lock.start_heartbeat()
            return lock
        holder = read_holder(store, path)
        if holder is None:  # being written this instant, or left empty by a writer that died: wait a moment, then take it
            unreadable_since = _wait_readable(store, path, unreadable_since)
            if unreadable_since is not None:
                _take_over(store, path, None)
            continue
        if not is_stale(holder, stale_after_s):
            raise LockHeldError(_held_message(path, stage, run_date, holder, stale_after_s))
        _take_over(store, path, holder)
    raise LockHeldError(f"could not take the lock {path} for stage {stage} run date {run_date}: other writers keep "
                        "taking it; check for concurrent deepbatch runs")


def _wait_readable(store: FileStore, path: str, since: float | None) -> float | None:
    """Wait up to UNREADABLE_GRACE_S for an unreadable lock file to be written (a live writer writes it at once);
    None when it became readable or vanished, else when it was first seen unreadable."""
    start = time.monotonic() if since is None else since
    while time.monotonic() - start < UNREADABLE_GRACE_S:
        time.sleep(0.05)
        if not store.exists(path) or read_holder(store, path) is not None:
            return None
    return start


def _held_message(path: str, stage: str, run_date: str, holder: dict[str, Any], stale_after_s: float) -> str:
    age = _now() - float(holder.get("heartbeat", 0))
    return (f"stage {stage} for run date {run_date} is being written by another run: pid {holder.get('pid')} on "
            f"{holder.get('host')} ({holder.get('command') or 'deepbatch'}), started {holder.get('started_at')}, "
            f"last heartbeat {age:.0f} s ago. Wait for it to finish. If that process is gone, its lock {path} "
            f"goes stale {stale_after_s:.0f} s after its last heartbeat and the next run takes it over; "
            "to clear it at once, delete that file.")
