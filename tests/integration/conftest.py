from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deepbatch.config import Conf
from tests.conftest import RUN_DATE, make_conf


@pytest.fixture(scope="session")
def pipeline_run(spark, landing_conf: Conf, tmp_path_factory: pytest.TempPathFactory) -> tuple[Conf, dict[str, dict]]:
    """acquire -> clean -> integrate -> analyse once on a copy of the tiny landing zone."""
    from deepbatch.stages.analyse import run_analyse
    from deepbatch.stages.run import run_acquire, run_clean, run_integrate

    root = tmp_path_factory.mktemp("pipeline")
    shutil.copytree(Path(landing_conf.data_root) / "landing", root / "landing", copy_function=shutil.copy2)
    conf = make_conf(root)
    manifests = {}
    for name, fn in (("acquire", run_acquire), ("clean", run_clean), ("integrate", run_integrate), ("analyse", run_analyse)):
        manifests[name] = fn(spark, conf, RUN_DATE)
    return conf, manifests
