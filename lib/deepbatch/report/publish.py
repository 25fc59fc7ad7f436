"""Publishing the run report: each stage commits its part, then the page is rendered anew.

Layout under the data root::

    reports/_parts/<part key>/run_date=D/   part.json + images; a verified output of its stage's commit
    reports/<run_date>/                     report.html, report.json and every part's images (self-contained)

The page folder is a pure rendering of the parts, published by its own small commit
(``report``) under its own lock, after the stage's commit. Because every render reads every
part published before it and renders are serialised by the lock, the last page always shows
every published part, whichever of analyse, train and infer ran last. ``deepbatch report``
renders it again on demand.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from deepbatch.commit import Commit
from deepbatch.report.page import PART_FILE, Part, render_page
from deepbatch.storage import read_bytes

log = logging.getLogger(__name__)

PARTS = "_parts"
LOCK_WAIT_S = 300.0


def part_path(conf: Any, key: str, run_date: str) -> str:
    return conf.path("reports", PARTS, key, f"run_date={run_date}")


def stage_part(commit: Commit, conf: Any, run_date: str, part: Part) -> None:
    """Stage ``part`` in the stage's own commit: it is published (and verified) with the stage's outputs."""
    commit.stage_files(f"reports/{PARTS}/{part.key}", part_path(conf, part.key, run_date), part.to_files())


def read_parts(store: Any, conf: Any, run_date: str) -> list[Part]:
    """Every part published for ``run_date``."""
    parts = []
    for key in store.list_dirs(conf.path("reports", PARTS)):
        folder = part_path(conf, key, run_date)
        if not store.exists(f"{folder}/{PART_FILE}"):
            continue
        names = [n for n in store.list_names(folder) if not n.startswith("_")]
        parts.append(Part.from_files({n: read_bytes(f"{folder}/{n}") for n in names}))
    return parts


def publish_run_report(spark: Any, conf: Any, run_date: str, wait_s: float = LOCK_WAIT_S) -> str:
    """Render reports/<run_date>/ from every published part; returns the page's path."""
    with Commit.for_stage(spark, conf, "report", run_date, wait_s=wait_s) as commit:  # renders of one run date take turns
        parts = read_parts(commit.store, conf, run_date)
        files = render_page(run_date, parts)
        data = next((p.data for p in parts if p.kind == "data"), None)
        if data is not None:
            files["report.json"] = json.dumps(data, indent=2).encode()
        commit.stage_files("reports", conf.path("reports", run_date), files)
    page = conf.path("reports", run_date, "report.html")
    log.debug("report  %s (%s)", page, ", ".join(sorted(p.key for p in parts)) or "no parts yet")
    return page
