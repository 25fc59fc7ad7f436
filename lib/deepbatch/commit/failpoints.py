"""Named points where the fault-injection tests break a run, as in etcd's gofail.

``DEEPBATCH_FAILPOINT=<name>`` kills the process (SIGKILL) the first time it reaches the
point of that name; ``<name>@<n>`` the n-th time; ``<name>:wait=<file>`` instead holds the
process there until ``<file>`` exists (to line up concurrent runs deterministically).

``DEEPBATCH_TASK_FAILPOINT=<name>`` makes the first attempt of every even-numbered Spark
task that reaches :func:`task_failpoint` of that name raise, so Spark retries it.

Unset (every production run), a failpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    spec = os.environ.get("DEEPBATCH_FAILPOINT")
    if not spec:
        return
    spec, _, action = spec.partition(":")
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] != int(nth or 1):
        return
    if action.startswith("wait="):
        deadline = time.monotonic() + 600
        while not os.path.exists(action[len("wait=") :]) and time.monotonic() < deadline:
            time.sleep(0.2)
        return
    os.kill(os.getpid(), signal.SIGKILL)


class InjectedTaskFailure(RuntimeError):
    pass


def task_failpoint(name: str) -> None:
    """Inside a Spark task: fail the first attempt of even-numbered partitions when asked to."""
    if os.environ.get("DEEPBATCH_TASK_FAILPOINT") != name:
        return
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None and ctx.attemptNumber() == 0 and ctx.partitionId() % 2 == 0:
        raise InjectedTaskFailure(f"injected failure of task {ctx.partitionId()} attempt 0 at {name}")
