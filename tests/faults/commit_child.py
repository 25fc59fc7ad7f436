"""Child process for the kill tests: commits version v2 of two tables over v1, and dies where
DEEPBATCH_FAILPOINT says. ``--two-renames`` disables the atomic swap, as on HDFS and object stores."""

from __future__ import annotations

import sys

from deepbatch.commit import Commit, LockSettings
from deepbatch.storage import LocalStore

TABLES = ("silver/a", "silver/b")


def commit_version(root: str, version: str, run_date: str) -> dict:
    with Commit(None, root, "demo", run_date, "abc", locking=LockSettings(stale_after_s=60, heartbeat_s=5)) as c:
        for table in TABLES:
            c.stage_files(table, f"{root}/{table}/run_date={run_date}", {"data.txt": version.encode(), "more.txt": version.encode() * 3})
    return c.summary


if __name__ == "__main__":
    root, version, run_date, *flags = sys.argv[1:]
    if "--two-renames" in flags:
        LocalStore.exchange = lambda self, a, b: False  # type: ignore[method-assign]
    commit_version(root, version, run_date)
