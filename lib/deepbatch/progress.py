"""Progress of a long Spark step on the driver: records done, records/s and ETA.

A background thread polls Spark's status tracker for the jobs of the current job
group and logs every ``every_s`` seconds. Records done are estimated from the
finished tasks of the step's last stage (the stage that runs the model), which
is exact at the end and close when partitions are of similar size.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(label: str, done: float, total: int, elapsed: float) -> str:
    """``label: 1,200/3,000 records (40%), 85.3 records/s, ETA 21 s``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else None
    pct = 100.0 * done / total if total else 100.0
    return f"{label}: {int(done):,}/{total:,} records ({pct:.0f}%), {rate:,.1f} records/s, ETA {format_eta(eta)}"


def task_line(label: str, done: int, tasks: int, elapsed: float) -> str:
    """``label: 3/8 tasks (38%), ETA 12 s`` for steps whose record count is not known up front."""
    eta = elapsed * (tasks - done) / done if done else None
    return f"{label}: {done}/{tasks} tasks ({100.0 * done / tasks if tasks else 100.0:.0f}%), ETA {format_eta(eta)}"


class SparkProgress:
    """Context manager: logs progress of the jobs the block starts in ``job_group``.

    With ``total`` (records) it logs records done, records/s and ETA; without, tasks done and ETA.
    """

    def __init__(self, spark: Any, job_group: str, label: str, total: int | None, every_s: float = 10.0):
        self.tracker = spark.sparkContext.statusTracker()
        self.job_group, self.label, self.total, self.every_s = job_group, label, total, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{label}", daemon=True)
        self._t0 = 0.0
        self._before: set[int] = set()

    def tasks(self) -> tuple[int, int] | None:
        """(finished, total) tasks of the newest stage of the jobs started since entering (None before any)."""
        stages = []
        for job_id in self.tracker.getJobIdsForGroup(self.job_group):
            info = self.tracker.getJobInfo(job_id) if job_id not in self._before else None
            if info is not None:
                stages.extend(info.stageIds)
        for stage_id in sorted(stages, reverse=True):
            s = self.tracker.getStageInfo(stage_id)
            if s is not None and s.numTasks > 0:
                return s.numCompletedTasks, s.numTasks
        return None

    def fraction(self) -> float | None:
        t = self.tasks()
        return None if t is None else t[0] / t[1]

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            t = self.tasks()
            if t is not None:
                self._log(t[0] / t[1], t)

    def _log(self, frac: float, tasks: tuple[int, int] | None) -> None:
        elapsed = time.monotonic() - self._t0
        if self.total is None:
            done, n = tasks or (1, 1)
            log.info(task_line(self.label, done, n, elapsed),
                     extra={"event": "progress", "step": self.label, "tasks_done": done, "tasks_total": n})
            return
        records = frac * self.total
        rate = records / elapsed if elapsed > 0 else 0.0
        log.info(progress_line(self.label, records, self.total, elapsed),
                 extra={"event": "progress", "step": self.label, "records_done": int(records), "records_total": self.total,
                        "records_per_s": round(rate, 1), "eta_s": round((self.total - records) / rate, 1) if rate > 0 else None})

    def __enter__(self) -> SparkProgress:
        self._t0 = time.monotonic()
        self._before = set(self.tracker.getJobIdsForGroup(self.job_group))
        if self.every_s > 0:
            self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if et is None and self.total is not None:
            self._log(1.0, None)
