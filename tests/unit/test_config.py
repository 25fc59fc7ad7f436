from __future__ import annotations

from pathlib import Path

import pytest

from deepbatch.catalog import load_conf
from deepbatch.config import parse_override
from deepbatch.errors import ConfigError

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_local_overlay_extends_base_and_overrides_apply() -> None:
    conf = load_conf(REPO / "conf" / "local.yaml", ["demo.images=42", "split.seed=3", "spark.conf.spark.sql.shuffle.partitions=3"])
    assert conf.spark.master == "local[*]"  # from local.yaml
    assert conf.tasks["text_cls"].classes == ["fresh", "rotten"]  # from demo.yaml
    assert conf.demo.images == 42 and conf.split.seed == 3
    assert conf.spark.conf["spark.sql.shuffle.partitions"] == "3"
    assert conf.spark.conf["spark.sql.session.timeZone"] == "UTC"  # base entry kept by the deep merge


def test_cluster_overlay_leaves_master_to_spark_submit() -> None:
    conf = load_conf(REPO / "conf" / "cluster.yaml")
    assert conf.spark.master is None
    assert conf.data_root.startswith("hdfs://")


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown conf key demo\.'imagez'"):
        load_conf(REPO / "conf" / "local.yaml", ["demo.imagez=5"])


def test_bad_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"'demo.images' must be an integer"):
        load_conf(REPO / "conf" / "local.yaml", ["demo.images=many"])


def test_split_fractions_must_sum_to_one() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        load_conf(REPO / "conf" / "local.yaml", ["split.train=0.9"])


def test_missing_file_and_extends_cycle(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_conf(tmp_path / "nope.yaml")
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_conf(tmp_path / "a.yaml")


def test_override_syntax() -> None:
    assert parse_override("quality.max_quarantine_fraction=0.1") == (["quality", "max_quarantine_fraction"], 0.1)
    assert parse_override("spark.conf.spark.sql.shuffle.partitions=8")[0] == ["spark", "conf", "spark.sql.shuffle.partitions"]
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("no-equals-sign")


def test_conf_hash_changes_with_settings() -> None:
    a = load_conf(REPO / "conf" / "local.yaml")
    b = load_conf(REPO / "conf" / "local.yaml", ["split.seed=99"])
    assert a.hash() == load_conf(REPO / "conf" / "local.yaml").hash()
    assert a.hash() != b.hash()


@pytest.mark.parametrize(("override", "key"), [("infer.runtime=tensorrt", "infer.runtime"), ("infer.quantize=int4", "infer.quantize"),
                                               ("infer.max_quantized_accuracy_drop=-1", "infer.max_quantized_accuracy_drop"),
                                               ("report.samples_per_class=-2", "report.samples_per_class")])
def test_runtime_quantisation_and_report_settings_are_checked(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_conf(REPO / "conf" / "local.yaml", [override])
    assert load_conf(REPO / "conf" / "local.yaml", ["infer.runtime=onnxruntime", "infer.quantize=static", "report.samples_per_class=0"]).infer.quantize == "static"
