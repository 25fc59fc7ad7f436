"""Logging: a human-readable console format, or one JSON object per line for log pipelines.

    deepbatch pipeline --log-format json        (or DEEPBATCH_LOG_FORMAT=json)

Every JSON line has ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``;
lines logged while a stage runs also carry ``stage`` and ``run_date``; events
add their fields (``event``: stage_start, stage_done, stage_skipped, progress;
``duration_s``, ``tables`` with the record counts, ``records_done``,
``records_per_s``, ``eta_s`` ...).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

FORMATS = ("console", "json")
_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("deepbatch_log_context", default=None)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


@contextmanager
def stage_context(stage: str, run_date: str) -> Iterator[None]:
    """Tag every log line emitted inside the block with the stage and run date."""
    token = _CONTEXT.set({"stage": stage, "run_date": run_date})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **(_CONTEXT.get() or {}),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(verbose: bool = False, fmt: str | None = None) -> None:
    """Configure the root logger once per process: console (default) or JSON lines."""
    fmt = fmt or os.environ.get("DEEPBATCH_LOG_FORMAT", "console")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    handler._deepbatch = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_deepbatch", False)]:  # ours from an earlier call only
        root.removeHandler(old)
    root.addHandler(handler)
    # deepbatch's own lines at INFO; libraries only from WARNING up, unless --verbose. This also keeps out
    # horovod's rendezvous chatter and py4j's INFO traceback when it retries a command on a fresh
    # connection (logged through the root logger on every horovod.spark.run start).
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("deepbatch").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("py4j", "urllib3", "matplotlib", "PIL", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
