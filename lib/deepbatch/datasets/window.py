"""The training window (``datasets.window``): which gold run dates a dataset is built from.

Light (no Spark import): the pipeline's skip records use it too, to notice a republished
earlier run date inside the window.
"""

from __future__ import annotations

from typing import Any


def window_run_dates(storage: Any, conf: Any, task: str, run_date: str) -> list[str]:
    """The gold run dates a dataset for ``run_date`` is built from, oldest first (any FileStore lists them)."""
    d = conf.datasets
    if d.window == "this":
        return [run_date]
    published = {name.split("=", 1)[1] for name in storage.list_dirs(conf.path("gold", task)) if name.startswith("run_date=")}
    dates = sorted({run_date, *(day for day in published if day <= run_date)})  # this run date's gold must exist (read checks it)
    return dates[-d.window_last :] if d.window == "last" else dates


def partition_commit(storage: Any, table_root: str, run_date: str) -> str | None:
    """The commit a published partition holds (its ``_commit.json``), or None for one written before markers."""
    import json

    from deepbatch.commit import MARKER

    marker = f"{table_root}/run_date={run_date}/{MARKER}"
    return json.loads(storage.read_text(marker)).get("commit_id") if storage.exists(marker) else None
