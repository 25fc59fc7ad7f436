"""Real stages under faults: a kill mid-commit, two concurrent writers, retried Spark tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepbatch.cli import main
from tests.conftest import REPO, RUN_DATE, TINY

pytestmark = [pytest.mark.faults, pytest.mark.slow]
LOCAL = str(REPO / "conf" / "local.yaml")
SILVER = ("images", "image_labels", "text", "videos", "video_labels", "photos")


def _args(root: Path, *extra: str) -> list[str]:
    return ["--conf", LOCAL, "--run-date", RUN_DATE, f"data_root={root}", "spark.master=local[2]",
            "spark.conf.spark.ui.enabled=false", "spark.conf.spark.sql.shuffle.partitions=4", *TINY, *extra]


def _cli(root: Path, command: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`deepbatch <command>` in its own process (its own Spark driver), as a scheduler would start it."""
    return subprocess.Popen([sys.executable, "-m", "deepbatch.cli", command, *_args(root, *extra)], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rows(spark, path: Path) -> list[tuple]:
    df = spark.read.parquet(str(path))
    return sorted(tuple(str(v) for v in r) for r in df.drop("content", "ingested_at", "cleaned_at").collect())


def _silver(spark, root: Path) -> dict[str, list[tuple]]:
    return {s: _rows(spark, root / "silver" / s / f"run_date={RUN_DATE}") for s in SILVER}


def _leftovers(root: Path) -> list[str]:
    return [str(p) for area in ("_staging", "_trash", "_commits") if (root / area).exists() for p in (root / area).iterdir()]


def test_a_stage_killed_mid_commit_is_recovered_and_the_pipeline_never_skips_it(spark, fresh_conf, caplog) -> None:
    root = Path(fresh_conf.data_root)
    assert main(["pipeline", "--to", "integrate", *_args(root)]) == 0
    clean_run = _silver(spark, root)
    gold = _rows(spark, root / "gold" / "text_cls" / f"run_date={RUN_DATE}")
    killed = _cli(root, "clean", env={"DEEPBATCH_FAILPOINT": "commit.moved@2"})
    out, _ = killed.communicate(timeout=600)
    assert killed.returncode == -9, out
    caplog.set_level("INFO")
    assert main(["pipeline", "--to", "integrate", *_args(root)]) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("recovered commit clean-") and "rolled forward" in m for m in messages), messages
    assert not any(m.startswith(("stage clean: skipped", "stage integrate: skipped")) for m in messages)
    assert any(m.startswith("stage clean: runs: its outputs do not match commit") for m in messages), messages
    assert _silver(spark, root) == clean_run
    assert _rows(spark, root / "gold" / "text_cls" / f"run_date={RUN_DATE}") == gold
    assert _leftovers(root) == []


def test_a_second_concurrent_writer_fails_fast_and_the_first_publishes(spark, fresh_conf, tmp_path) -> None:
    root = Path(fresh_conf.data_root)
    assert main(["acquire", *_args(root)]) == 0
    go = tmp_path / "go"
    first = _cli(root, "clean", env={"DEEPBATCH_FAILPOINT": f"commit.staged:wait={go}"})
    lock = root / "_locks" / "clean" / f"run_date={RUN_DATE}.lock"
    staged = root / "_staging"
    while not (lock.exists() and staged.exists() and any(staged.iterdir())) and first.poll() is None:
        time.sleep(0.2)
    second = _cli(root, "clean")
    out2, _ = second.communicate(timeout=600)
    go.touch()
    out1, _ = first.communicate(timeout=600)
    assert (first.returncode, second.returncode) == (0, 6), out1 + out2
    assert "is being written by another run" in out2 and f"pid {first.pid}" in out2
    silver = _silver(spark, root)
    assert all(silver.values())
    assert not list(root.rglob(f"run_date={RUN_DATE}/run_date={RUN_DATE}"))
    assert _leftovers(root) == [] and not lock.exists()


def test_retried_tasks_give_identical_outputs_without_duplicates(spark, fresh_conf) -> None:
    root = Path(fresh_conf.data_root)
    assert main(["pipeline", "--to", "clean", *_args(root)]) == 0
    reference = _silver(spark, root)
    retried = _cli(root, "clean", "spark.master=local[2,4]", env={"DEEPBATCH_TASK_FAILPOINT": "clean.probe_images"})
    out, _ = retried.communicate(timeout=600)
    assert retried.returncode == 0, out
    assert "InjectedTaskFailure" in out  # the failures really happened, and were retried
    again = _silver(spark, root)
    assert again == reference
    for rows in again.values():
        assert len(rows) == len(set(rows))


GOLD = ("image_cls", "text_cls", "video_cls")


@pytest.fixture(scope="module")
def integrated(spark, landing_conf, tmp_path_factory):
    """A data root after acquire -> clean -> integrate, and its gold rows: the clean run to compare with."""
    import shutil

    root = tmp_path_factory.mktemp("integrated")
    shutil.copytree(Path(landing_conf.data_root) / "landing", root / "landing", copy_function=shutil.copy2)
    assert main(["pipeline", "--to", "integrate", *_args(root)]) == 0
    return root, {t: _rows(spark, root / "gold" / t / f"run_date={RUN_DATE}") for t in GOLD}


@pytest.mark.parametrize("failpoint", ["commit.staged", "commit.journaled", "commit.moved@2", "commit.moved@5", "commit.applied"])
def test_integrate_killed_at_a_commit_step_ends_with_a_clean_runs_rows(spark, integrated, caplog, failpoint) -> None:
    """The parameters run one after another on one data root, each starting from a clean state."""
    root, reference = integrated
    killed = _cli(root, "integrate", env={"DEEPBATCH_FAILPOINT": failpoint})
    out, _ = killed.communicate(timeout=600)
    assert killed.returncode == -9, out
    for t in GOLD:  # never missing, not even before recovery
        assert (root / "gold" / t / f"run_date={RUN_DATE}" / "_commit.json").is_file(), (failpoint, t)
    caplog.set_level("INFO")
    assert main(["pipeline", "--to", "integrate", *_args(root)]) == 0
    assert {t: _rows(spark, root / "gold" / t / f"run_date={RUN_DATE}") for t in GOLD} == reference
    assert _leftovers(root) == [] and not list((root / "_locks").rglob("*.lock"))
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("stage acquire: skipped") for m in messages) and any(m.startswith("stage clean: skipped") for m in messages)
    # Killed before its commit point, integrate changed nothing and its record still holds; after it, the
    # outputs hold the killed run's commit, which no record names, so integrate runs again.
    reran = any(m.startswith("stage integrate: runs: its outputs do not match commit") for m in messages)
    assert reran == (failpoint != "commit.staged"), messages
