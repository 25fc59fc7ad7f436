"""The settings a task's model is built from and the preprocessing it expects, derived from conf."""

from __future__ import annotations

from typing import Any

from deepbatch.config import Conf


def model_settings(conf: Conf, task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_settings, preprocessing) of ``task`` from ``conf``: what training records in the model folder
    (config.json's model_settings, preprocessing.json) and what inference rebuilds the model from."""
    from deepbatch.modality import modality_of, model_of

    settings, preprocessing = modality_of(conf, task).fn("settings")(conf, conf.task(task).train, model_of(conf, task))
    return dict(settings), dict(preprocessing)
