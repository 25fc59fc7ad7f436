"""SIGKILL at every step of a commit, then recover: the tables hold the old version or the new one,
all of them the same, and nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepbatch.commit import recover, verify_outputs
from deepbatch.storage import LocalStore
from tests.conftest import REPO
from tests.faults.commit_child import TABLES, commit_version

pytestmark = pytest.mark.faults
D = "2026-11-27"

# (failpoint, version every table holds after recovery). Before the journal lands the commit has not
# happened (rolled back); from then on it has (rolled forward).
SWAP_STEPS = [("commit.staged", "v1"), ("commit.journaled", "v2"), ("commit.moved@1", "v2"), ("commit.moved@2", "v2"),
              ("commit.moved@3", "v2"), ("commit.applied", "v2"), ("commit.trashed", "v2")]
RENAME_STEPS = [("commit.aside@1", "v2"), ("commit.moved@1", "v2"), ("commit.aside@2", "v2"), ("commit.moved@2", "v2"),
                ("commit.aside@3", "v2"), ("commit.moved@3", "v2")]


def _versions(root: Path) -> dict[str, str | None]:
    out = {}
    for table in TABLES:
        f = root / table / f"run_date={D}" / "data.txt"
        out[table] = f.read_text() if f.exists() else None
    return out


def _kill_child_at(root: Path, failpoint: str, *flags: str) -> int:
    env = {**os.environ, "DEEPBATCH_FAILPOINT": failpoint, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tests.faults.commit_child", str(root), "v2", D, *flags],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode


def _assert_recovered(root: Path, expected: str) -> None:
    store = LocalStore()
    recover(store, str(root))
    assert _versions(root) == {t: expected for t in TABLES}
    summary = json.loads((root / f"manifests/run_date={D}/demo.json").read_text())
    assert verify_outputs(store, str(root), summary["commit_id"], summary["outputs"]) == []
    for area in ("_staging", "_trash", "_commits"):
        left = list((root / area).iterdir()) if (root / area).exists() else []
        assert not left, f"{area} not cleaned: {left}"
    assert not list((root / "_locks").rglob("*.lock")), "the dead writer's lock was not cleared"


@pytest.mark.parametrize(("failpoint", "expected"), SWAP_STEPS)
def test_a_kill_at_any_commit_step_never_leaves_a_table_missing_and_recovers(tmp_path, failpoint, expected) -> None:
    commit_version(str(tmp_path), "v1", D)
    assert _kill_child_at(tmp_path, failpoint) == -9
    seen = _versions(tmp_path)
    assert all(v in ("v1", "v2") for v in seen.values()), f"a table went missing after a kill at {failpoint}: {seen}"
    _assert_recovered(tmp_path, expected)


@pytest.mark.parametrize(("failpoint", "expected"), RENAME_STEPS)
def test_a_kill_between_the_two_renames_of_object_store_mode_is_rolled_forward(tmp_path, failpoint, expected) -> None:
    commit_version(str(tmp_path), "v1", D)
    assert _kill_child_at(tmp_path, failpoint, "--two-renames") == -9
    _assert_recovered(tmp_path, expected)


def test_a_kill_before_anything_was_published_leaves_the_first_version_absent(tmp_path) -> None:
    assert _kill_child_at(tmp_path, "commit.staged") == -9
    recover(LocalStore(), str(tmp_path))
    assert _versions(tmp_path) == {t: None for t in TABLES}
    assert not any((tmp_path / "_staging").iterdir())


def test_a_failpoint_that_is_never_reached_lets_the_commit_finish(tmp_path) -> None:
    assert _kill_child_at(tmp_path, "commit.no-such-step") == 0
    assert _versions(tmp_path) == {t: "v2" for t in TABLES}
