"""The bad-input catalogue through acquire and clean: every landing file and line ends in silver or
in quarantine with its specific reason, the manifests reconcile, and other engines read every table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepbatch.media.image import image_to_array, probe_image
from tests.conftest import REPO, RUN_DATE, assert_other_engines_read_every_table, make_conf
from tests.faults import catalogue

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def catalogue_run(spark, landing_conf, tmp_path_factory):
    from deepbatch.stages.run import run_acquire, run_clean

    root = tmp_path_factory.mktemp("catalogue")
    shutil.copytree(Path(landing_conf.data_root) / "landing", root / "landing", copy_function=shutil.copy2)
    existing = next((root / "landing" / "images").rglob("*.png")).read_bytes()
    cases = catalogue.all_cases(existing)
    catalogue.write(root / "landing", cases)
    conf = make_conf(root, "quality.max_quarantine_fraction=1.0")
    manifests = {"acquire": run_acquire(spark, conf, RUN_DATE), "clean": run_clean(spark, conf, RUN_DATE)}
    return root, cases, manifests


def _outcomes(spark, root: Path) -> tuple[dict[tuple[str, int], str], set[str]]:
    """(quarantined: (source path, line) -> reason, silver: source paths) for every table."""
    q = spark.read.parquet(str(root / "quarantine" / "clean" / "*" / f"run_date={RUN_DATE}"))
    quarantined = {}
    for r in q.select("source_path", "reason", "payload").collect():
        line = json.loads(r.payload or "{}").get("source_line") or 0
        quarantined[(r.source_path, int(line))] = r.reason
    silver = set()
    for table in (root / "silver").glob(f"*/run_date={RUN_DATE}"):
        silver |= {r.source_path for r in spark.read.parquet(str(table)).select("source_path").distinct().collect()}
    return quarantined, silver


def test_every_catalogue_input_ends_in_silver_or_with_its_reason(spark, catalogue_run) -> None:
    root, cases, _ = catalogue_run
    assert len({c.name for c in cases}) >= 30
    quarantined, silver = _outcomes(spark, root)
    wrong = []
    for c in cases:
        rel, _, line = c.path.partition("#")
        path = f"file:{root / 'landing' / rel}"
        key = (path, int(line or 0))
        got = quarantined[key] if key in quarantined else ("silver" if path in silver else None)
        if got != c.expect:
            wrong.append(f"{c.name} ({c.path}): expected {c.expect}, got {got}")
    assert not wrong, "\n".join(wrong)


def test_the_manifests_reconcile_and_every_landing_file_is_a_bronze_row(spark, catalogue_run) -> None:
    root, _, manifests = catalogue_run
    for stage in manifests.values():
        for t in stage["tables"]:
            assert t["records_in"] == t["records_out"] + sum(t["quarantined"].values()) + sum(t["deduplicated"].values()), t["table"]
    landed = set()
    for table in (root / "bronze").glob(f"[!_]*/run_date={RUN_DATE}"):
        landed |= {r.source_path for r in spark.read.parquet(str(table)).select("source_path").distinct().collect()}
    on_disk = {f"file:{p}" for p in (root / "landing").rglob("*") if p.is_file() and p.name != "_demo.json"}
    assert on_disk - landed == set()


def test_duckdb_and_polars_read_every_published_table(catalogue_run) -> None:
    root, _, _ = catalogue_run
    assert assert_other_engines_read_every_table(root) > 10


def test_a_decompression_bomb_is_refused_within_a_small_memory_bound() -> None:
    """A fresh process builds the 144-megapixel bomb (a few hundred KB), then probes and decodes it:
    the peak RSS grows by under 20 MB (decoding it would need 144 MB)."""
    code = ("import resource; from tests.faults.catalogue import png_bomb; from deepbatch.media.image import probe_image, decode_image\n"
            "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
            "b = png_bomb(); before = peak(); p = probe_image(b)\n"
            "try:\n    decode_image(b)\nexcept ValueError as e:\n    err = type(e).__name__\n"
            "print(p.reason, err, len(b), before, peak())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    reason, err, size, before_mb, after_mb = out[0], out[1], int(out[2]), int(out[3]), int(out[4])
    assert (reason, err) == ("IMAGE_TOO_LARGE", "ImageTooLarge") and size < 1_000_000
    assert after_mb - before_mb < 20, f"peak RSS grew from {before_mb} MB to {after_mb} MB"


def test_a_16_bit_ramp_stays_a_monotone_ramp_in_8_bits() -> None:
    arr = image_to_array(catalogue.ramp16(), 64, 1)[0, :, 0].astype(int)
    assert (arr[1:] >= arr[:-1]).all() and arr[0] == 0 and arr[-1] == 255
    assert probe_image(catalogue.ramp16()).reason is None
