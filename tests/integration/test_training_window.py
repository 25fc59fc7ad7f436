"""Training over accumulated run dates: datasets.window takes gold partitions of several run dates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from deepbatch.catalog import task
from deepbatch.datasets.materialize import gold_window, run_materialize, window_run_dates
from deepbatch.schemas import tables as T
from deepbatch.storage import Storage
from deepbatch.tables import read_partition
from tests.conftest import RUN_DATE, make_conf

pytestmark = pytest.mark.integration

DAY1, DAY2, DAY3 = "2026-11-20", "2026-11-21", "2026-11-22"


@pytest.fixture(scope="module")
def three_days(spark, pipeline_run, tmp_path_factory):
    """gold/image_cls for three run dates as incremental acquire leaves them: day 1 and day 3 hold new records,
    day 2 none, and day 3 repeats a few of day 1's records (re-landed files)."""
    conf, _ = pipeline_run
    root = tmp_path_factory.mktemp("window")
    gold = read_partition(spark, conf.path("gold", "image_cls"), RUN_DATE, T.GOLD_IMAGE_CLS)
    first, second = gold.where(F.xxhash64("record_id") % 2 == 0), gold.where(F.xxhash64("record_id") % 2 != 0)
    repeated = first.orderBy("record_id").limit(5)
    for day, rows in ((DAY1, first), (DAY2, gold.limit(0)), (DAY3, second.unionByName(repeated))):
        rows.write.mode("overwrite").parquet(str(root / "gold" / "image_cls" / f"run_date={day}"))
    (root / "gold" / "image_cls" / f"run_date={DAY1}" / "_commit.json").write_text(json.dumps({"commit_id": "integrate-day1"}))
    labelled = gold.where(F.col("split").isin("train", "val", "test")).count()
    return make_conf(root), gold.count(), first.count(), second.count(), labelled


def test_the_window_picks_this_all_or_the_last_run_dates(spark, three_days) -> None:
    conf, *_ = three_days
    storage = Storage(spark)
    assert window_run_dates(storage, conf, "image_cls", DAY3) == [DAY3]
    assert window_run_dates(storage, make_conf(conf.data_root, "datasets.window=all"), "image_cls", DAY3) == [DAY1, DAY2, DAY3]
    assert window_run_dates(storage, make_conf(conf.data_root, "datasets.window=all"), "image_cls", DAY2) == [DAY1, DAY2]  # never later
    last2 = make_conf(conf.data_root, "datasets.window=last", "datasets.window_last=2")
    assert window_run_dates(storage, last2, "image_cls", DAY3) == [DAY2, DAY3]


def test_a_window_counts_each_record_once_from_its_newest_run_date(spark, three_days) -> None:
    conf, total, n_first, n_second, _ = three_days
    window_conf = make_conf(conf.data_root, "datasets.window=all")
    rows, info = gold_window(spark, window_conf, task(window_conf, "image_cls"), DAY3)
    assert rows.count() == total and rows.select("record_id").distinct().count() == total
    assert info["run_dates"] == [DAY1, DAY2, DAY3] and info["commits"][DAY1] == "integrate-day1" and info["commits"][DAY3] is None
    assert info["rows_by_run_date"] == {DAY1: n_first - 5, DAY2: 0, DAY3: n_second + 5}
    assert "_run_date" not in rows.columns


def test_materialize_over_a_window_with_an_empty_middle_day_records_what_went_in(spark, three_days) -> None:
    conf, *_, labelled = three_days
    conf_all = make_conf(conf.data_root, "datasets.window=all")
    for day in (DAY2, DAY3):  # the empty day itself still has day 1 to train on
        summary = run_materialize(spark, conf_all, day, ("image_cls",))
        table = next(t for t in summary["tables"] if t["table"] == "datasets/image_cls")
        assert table["extra"]["window"]["run_dates"][-1] == day and table["extra"]["splits"]["train"]["rows"] > 0
    manifest = json.loads((Path(conf.path("datasets", "image_cls", DAY3)) / "_manifest.json").read_text())
    assert manifest["extra"]["window"]["run_dates"] == [DAY1, DAY2, DAY3]
    assert sum(s["rows"] for s in manifest["extra"]["splits"].values()) == labelled  # every labelled record once; unlabelled ones are not trained on


def test_an_empty_run_date_alone_is_rebuilt_from_the_newest_day_with_rows_and_says_so(spark, three_days, caplog) -> None:
    conf = make_conf(three_days[0].data_root, "datasets.version=empty-day")
    summary = run_materialize(spark, conf, DAY2, ("image_cls",))
    window = next(t for t in summary["tables"] if t["table"] == "datasets/image_cls")["extra"]["window"]
    assert (window["rebuilt_from"], window["empty_run_date"], window["run_dates"]) == (DAY1, DAY2, [DAY1])
    assert window["commits"] == {DAY1: "integrate-day1"}
    assert "run date 2026-11-21 has no labelled rows of its own" in caplog.text and "rebuilt from run date 2026-11-20" in caplog.text
    assert (Path(conf.path("datasets", "image_cls", "empty-day")) / "train").is_dir()


def test_an_empty_run_date_with_nothing_before_it_is_refused_with_what_to_do(spark, three_days, tmp_path) -> None:
    from deepbatch.datasets.materialize import NotEnoughRowGroupsError

    empty = read_partition(spark, three_days[0].path("gold", "image_cls"), DAY2, T.GOLD_IMAGE_CLS)
    empty.write.parquet(str(tmp_path / "gold" / "image_cls" / f"run_date={DAY2}"))
    conf = make_conf(tmp_path)
    with pytest.raises(NotEnoughRowGroupsError, match=r"no labelled rows in datasets.window=this \(run dates 2026-11-21\), and no earlier "
                       r"run date has any.*datasets.window=all") as e:
        run_materialize(spark, conf, DAY2, ("image_cls",))
    assert e.value.exit_code == 5 and not (tmp_path / "datasets").exists()
