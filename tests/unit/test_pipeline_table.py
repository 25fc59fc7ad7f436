"""The pipeline declared as data: every stage's runner resolves, and --task reaches it in the declared shape."""

from __future__ import annotations

import importlib
import inspect

import pytest

from deepbatch.pipeline import STAGE_TABLE, StageSpec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("spec", STAGE_TABLE, ids=lambda s: s.name)
def test_every_runner_imports_and_takes_what_the_table_passes(spec: StageSpec) -> None:
    module, function = spec.runner.split(":")
    fn = getattr(importlib.import_module(module), function)
    params = list(inspect.signature(fn).parameters)
    assert params[:3] == ["spark", "conf", "run_date"]
    assert len(params) == 3 + (spec.tasks != "none")


def test_task_arguments_follow_the_declared_shape(monkeypatch, tmp_path) -> None:
    import sys
    import types

    from tests.conftest import make_conf

    conf = make_conf(tmp_path)
    seen = {}
    fake = types.ModuleType("fake_stage")
    fake.run = lambda spark, conf, run_date, *rest: seen.setdefault("args", rest) and {}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_stage", fake)
    StageSpec("x", (), (), "fake_stage:run", "trained").run(None, conf, "d", ("image_cls", "imagenet"))
    assert seen.pop("args") == (("image_cls",),)  # imagenet is an inference-only task: nothing to train
    StageSpec("x", (), (), "fake_stage:run", "trained").run(None, conf, "d", None)
    assert seen.pop("args") == (("image_cls", "text_cls", "video_cls"),)
    StageSpec("x", (), (), "fake_stage:run", "chosen").run(None, conf, "d", ("imagenet",))
    assert seen.pop("args") == (("imagenet",),)
    StageSpec("x", (), (), "fake_stage:run").run(None, conf, "d", ("imagenet",))
    assert seen.pop("args") == ()
