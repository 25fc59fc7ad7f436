"""Record accounting and the run manifests written next to every output."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from deepbatch._version import __version__
from deepbatch.errors import ReconciliationError

MANIFEST_NAME = "_manifest.json"


@dataclass
class TableCounts:
    """Record accounting for one output table."""

    table: str
    records_in: int
    records_out: int
    quarantined: dict[str, int] = field(default_factory=dict)
    deduplicated: dict[str, int] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def reconcile(self) -> None:
        q = sum(self.quarantined.values())
        d = sum(self.deduplicated.values())
        if self.records_in != self.records_out + q + d:
            raise ReconciliationError(
                f"{self.table}: records_in={self.records_in} but records_out={self.records_out} "
                f"+ quarantined={q} + deduplicated={d} = {self.records_out + q + d}; "
                "a transformation lost or invented rows. Nothing was published."
            )

    @property
    def quarantined_fraction(self) -> float:
        return sum(self.quarantined.values()) / self.records_in if self.records_in else 0.0


def build_manifest(stage: str, run_date: str, conf_hash: str, counts: TableCounts, duration_s: float, output: str,
                   commit_id: str) -> dict[str, Any]:
    return {
        "stage": stage,
        "table": counts.table,
        "run_date": run_date,
        "commit_id": commit_id,
        "conf_hash": conf_hash,
        "inputs": counts.inputs,
        "output": output,
        "records_in": counts.records_in,
        "records_out": counts.records_out,
        "quarantined": dict(sorted(counts.quarantined.items())),
        "deduplicated": dict(sorted(counts.deduplicated.items())),
        **({"extra": counts.extra} if counts.extra else {}),
        "duration_s": round(duration_s, 3),
        "deepbatch_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
