"""The style rules we follow (CONVENTIONS.md): ruff on everything, mypy on lib/."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    r = _run("ruff", "check", "lib", "jobs", "schemas", "tests", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_passes_on_lib() -> None:
    r = _run("mypy", "lib/deepbatch")
    assert r.returncode == 0, r.stdout + r.stderr
