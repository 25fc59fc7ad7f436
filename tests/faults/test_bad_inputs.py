"""The bad-input catalogue through acquire and clean: every landing file and line ends in silver or
in quarantine with its specific reason, the manifests reconcile, and other engines read every table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepbatch.media.image import image_to_array, probe_image
from tests.conftest import REPO, RUN_DATE, assert_other_engines_read_every_table, make_conf
from tests.faults import catalogue

pytestmark = pytest.mark.faults

SECRET = b"a file outside the landing zone that no stage may copy\n"


@pytest.fixture(scope="module")
def catalogue_run(spark, landing_conf, tmp_path_factory):
    from deepbatch.stages.run import run_acquire, run_clean

    root = tmp_path_factory.mktemp("catalogue")
    shutil.copytree(Path(landing_conf.data_root) / "landing", root / "landing", copy_function=shutil.copy2)
    existing = next((root / "landing" / "images").rglob("*.png")).read_bytes()
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_bytes(SECRET)
    cases = catalogue.all_cases(existing, root / "outside" / "secret.txt")
    catalogue.write(root / "landing", cases)
    conf = make_conf(root, "quality.max_quarantine_fraction=1.0", f"quality.max_video_probe_frames={catalogue.PROBE_CAP}")
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
    on_disk = set()
    for folder, dirs, files in os.walk(root / "landing"):  # links (to files, folders, nowhere) are entries too
        on_disk |= {f"file:{folder}/{n}" for n in [*files, *[d for d in dirs if os.path.islink(f"{folder}/{d}")]] if n != "_demo.json"}
    assert on_disk - landed == set()


def test_a_link_out_of_the_landing_zone_is_landed_without_its_target(catalogue_run) -> None:
    root, _, _ = catalogue_run
    leaked = [p for p in (root / "bronze").rglob("*.parquet") if SECRET[:40] in p.read_bytes()]
    leaked += [p for p in (root / "quarantine").rglob("*.parquet") if SECRET[:40] in p.read_bytes()]
    assert leaked == []


def test_exif_orientation_is_applied_and_recorded_and_a_capped_frame_count_says_so(spark, catalogue_run) -> None:
    root, _, _ = catalogue_run
    images = spark.read.parquet(str(root / "silver" / "images" / f"run_date={RUN_DATE}"))
    turned = {r.record_id: (r.width, r.height, r.orientation) for r in images.where("record_id in ('rotated', 'motion')").collect()}
    assert turned == {"rotated": (20, 30, 6), "motion": (30, 20, 1)}
    clips = {r.record_id: (r.frame_count, r.frame_count_capped)
             for r in spark.read.parquet(str(root / "silver" / "videos" / f"run_date={RUN_DATE}")).collect()}
    assert clips["long"] == (catalogue.PROBE_CAP, True)
    assert clips["CLIP"] == (6, False)
    assert all(capped == (n == catalogue.PROBE_CAP) for n, capped in clips.values()), clips


def test_unicode_twins_are_one_id_and_the_quarantine_says_why(spark, catalogue_run) -> None:
    import unicodedata

    root, _, _ = catalogue_run
    q = spark.read.parquet(str(root / "quarantine" / "clean" / "images" / f"run_date={RUN_DATE}"))
    twin = q.where(q.source_path.endswith("cafe\u0301.png")).collect()
    assert [(r.record_id, r.reason) for r in twin] == [(unicodedata.normalize("NFC", "cafe\u0301"), "DUPLICATE_ID")]
    assert "differ only in Unicode normalisation" in twin[0].detail and "caf\u00e9.png" in twin[0].detail


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
