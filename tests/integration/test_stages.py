"""Each stage on the tiny real landing zone (Fashion-MNIST, Rotten Tomatoes, clips)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from deepbatch.schemas import tables as T
from deepbatch.tables import read_partition
from tests.conftest import RUN_DATE

pytestmark = pytest.mark.integration


def _table(manifest: dict, name: str) -> dict:
    return next(t for t in manifest["tables"] if t["table"] == name)


def test_acquire_lands_every_file_and_line(pipeline_run, demo_summary) -> None:
    _, m = pipeline_run
    acq = m["acquire"]
    assert _table(acq, "bronze/images")["records_out"] == demo_summary["images"]  # zero-byte file included
    assert _table(acq, "bronze/text")["records_out"] == demo_summary["texts"]  # malformed line included
    assert _table(acq, "bronze/videos")["records_out"] == demo_summary["videos"]
    assert _table(acq, "bronze/image_labels")["records_out"] == demo_summary["image_labels"]
    assert _table(acq, "bronze/video_labels")["records_out"] == demo_summary["video_labels"]
    assert _table(acq, "bronze/photos")["records_out"] == demo_summary["photos"]


def test_clean_quarantines_every_planted_bad_record_with_its_reason(spark, pipeline_run, demo_summary) -> None:
    conf, _ = pipeline_run
    found = set()
    for source in ("images", "image_labels", "text", "videos", "video_labels", "photos"):
        q = read_partition(spark, conf.path("quarantine", "clean", source), RUN_DATE, T.QUARANTINE)
        found |= {(source, r.record_id or "(no id)", r.reason) for r in q.collect()}
    expected = {(b["source"], b["record"], b["expect"]) for b in demo_summary["bad_records"]}
    assert expected <= found


def test_clean_manifests_reconcile_and_match_the_tables(spark, pipeline_run) -> None:
    conf, m = pipeline_run
    for t in m["clean"]["tables"]:
        if not t["table"].startswith("silver/"):
            continue
        q, d = sum(t["quarantined"].values()), sum(t["deduplicated"].values())
        assert t["records_in"] == t["records_out"] + q + d
        source = t["table"].split("/", 1)[1]
        assert spark.read.parquet(conf.path(t["table"], f"run_date={RUN_DATE}")).count() == t["records_out"]
        assert spark.read.parquet(conf.path("quarantine", "clean", source, f"run_date={RUN_DATE}")).count() == q + d


def test_silver_images_are_decoded_fashion_mnist(spark, pipeline_run) -> None:
    conf, _ = pipeline_run
    df = read_partition(spark, conf.path("silver", "images"), RUN_DATE, T.SILVER_IMAGES)
    sizes = {(r.width, r.height, r.channels) for r in df.select("width", "height", "channels").distinct().collect()}
    assert sizes == {(28, 28, 1)}


def test_silver_videos_report_frame_counts(spark, pipeline_run) -> None:
    conf, _ = pipeline_run
    df = read_partition(spark, conf.path("silver", "videos"), RUN_DATE, T.SILVER_VIDEOS)
    frames = {r.record_id: r.frame_count for r in df.collect()}
    assert frames["bikes"] == 250 and frames["bigbuckbunny"] == 132
    assert all(frames[f"clip-{i:04d}"] == 16 for i in range(6))


def test_integrate_builds_gold_tables_with_class_maps_and_splits(spark, pipeline_run) -> None:
    conf, m = pipeline_run
    gold = read_partition(spark, conf.path("gold", "image_cls"), RUN_DATE, T.GOLD_IMAGE_CLS)
    assert gold.filter(F.col("split").isin("train", "val", "test") & F.col("label_index").isNull()).count() == 0
    cmap = json.loads(Path(conf.path("gold", "image_cls", f"run_date={RUN_DATE}", "_class_map.json")).read_text())
    assert cmap["T-shirt/top"] == 0 and cmap["Ankle boot"] == 9
    videos = read_partition(spark, conf.path("gold", "video_cls"), RUN_DATE, T.GOLD_VIDEO_CLS)
    assert {r.record_id for r in videos.filter("split = 'unlabelled'").collect()} >= {"bikes", "bigbuckbunny"}
    labels = _table(m["integrate"], "quarantine/integrate/image_labels")
    assert labels["records_in"] == labels["records_out"] + sum(labels["quarantined"].values())


def test_analyse_writes_report_with_charts(pipeline_run) -> None:
    conf, m = pipeline_run
    folder = Path(conf.path("reports", RUN_DATE))
    page = (folder / "report.html").read_text()
    for png in ("class_balance_image_cls.png", "class_balance_text_cls.png", "class_balance_video_cls.png", "text_chars_hist_text_cls.png",
                "quarantine.png", "samples_image_cls.png", "samples_video_cls.png", "quarantined_0.png"):
        assert (folder / "data" / png).read_bytes().startswith(b"\x89PNG")
        assert f'src="data/{png}"' in page
    part = Path(conf.path("reports", "_parts", "data", f"run_date={RUN_DATE}"))
    assert (part / "samples_image_cls.png").read_bytes() == (folder / "data" / "samples_image_cls.png").read_bytes()
    captions = [i["caption"] for b in json.loads((part / "part.json").read_text())["blocks"] if b["type"] == "gallery" for i in b["items"]]
    assert {"EMPTY_FILE", "UNDECODABLE_IMAGE", "UNDECODABLE_VIDEO"} <= {c[0] for c in captions}  # the planted bad media files
    assert all(not c[3].endswith(("/text", "_labels")) for c in captions)  # media files only, not records
    report = json.loads((folder / "report.json").read_text())
    assert report["tasks"]["text_cls"]["balance"]["counts"]["fresh"] > 0
    assert report["quarantine"]["silver/text"]["MALFORMED_RECORD"] == 1


def test_rerun_of_a_stage_replaces_its_output_exactly(spark, pipeline_run) -> None:
    from deepbatch.stages.run import run_integrate

    conf, m = pipeline_run
    before = sorted((r.record_id, r.split) for r in spark.read.parquet(conf.path("gold", "text_cls", f"run_date={RUN_DATE}")).select("record_id", "split").collect())
    again = run_integrate(spark, conf, RUN_DATE)
    after = sorted((r.record_id, r.split) for r in spark.read.parquet(conf.path("gold", "text_cls", f"run_date={RUN_DATE}")).select("record_id", "split").collect())
    assert after == before
    assert _table(again, "gold/text_cls")["records_out"] == len(before)


def test_analyse_compares_with_the_newest_earlier_report(spark, pipeline_run) -> None:
    from deepbatch.stages.analyse import run_analyse

    conf, _ = pipeline_run
    reports = Path(conf.path("reports"))
    current = json.loads((reports / RUN_DATE / "report.json").read_text())
    for date, rows in (("2026-11-20", 1), ("2026-11-26", 7)):  # the newer one must win
        old = json.loads(json.dumps(current))
        old["run_date"] = date
        old["tasks"]["text_cls"]["rows"] = rows
        (reports / date).mkdir()
        (reports / date / "report.json").write_text(json.dumps(old))
    run_analyse(spark, conf, RUN_DATE)
    comp = json.loads((reports / RUN_DATE / "report.json").read_text())["comparison"]
    assert comp["previous_run_date"] == "2026-11-26"
    assert comp["tasks"]["text_cls"]["rows_before"] == 7
    assert comp["tasks"]["text_cls"]["rows_delta"] == current["tasks"]["text_cls"]["rows"] - 7
    assert "Compared with 2026-11-26" in (reports / RUN_DATE / "report.html").read_text()


def test_a_replicated_landing_zone_cleans_to_exactly_k_times_the_records(spark, pipeline_run, tmp_path) -> None:
    """The P4 benchmark's input: replicas keep their record's fate (kept, quarantined or deduplicated)."""
    from deepbatch.demo.replicate import replicate_landing
    from deepbatch.stages.run import run_acquire, run_clean
    from tests.conftest import make_conf

    conf, m = pipeline_run
    replicate_landing(Path(conf.data_root) / "landing", tmp_path / "landing", 2)
    big = make_conf(tmp_path)
    run_acquire(spark, big, RUN_DATE)
    twice = {t["table"]: t for t in run_clean(spark, big, RUN_DATE)["tables"]}
    once = {t["table"]: t for t in m["clean"]["tables"]}
    for table in ("silver/images", "silver/image_labels", "silver/text", "silver/videos", "silver/photos"):
        assert twice[table]["records_in"] == 2 * once[table]["records_in"], table
        assert twice[table]["records_out"] == 2 * once[table]["records_out"], table


def test_spark_progress_follows_only_the_jobs_started_inside_it(spark, caplog) -> None:
    from deepbatch.progress import SparkProgress

    spark.sparkContext.setJobGroup("deepbatch-test-progress", "progress test")
    spark.range(10, numPartitions=2).write.format("noop").mode("overwrite").save()  # an earlier job of the group
    with SparkProgress(spark, "deepbatch-test-progress", "test step", None, every_s=0) as p:
        assert p.tasks() is None  # the earlier job is not this step's
        spark.range(1000, numPartitions=4).write.format("noop").mode("overwrite").save()
        assert p.tasks() == (4, 4) and p.fraction() == 1.0
    caplog.set_level("INFO", logger="deepbatch.progress")
    with SparkProgress(spark, "deepbatch-test-progress", "records step", 1000, every_s=0):
        spark.range(1000, numPartitions=3).write.format("noop").mode("overwrite").save()
    assert any(r.getMessage().startswith("records step: 1,000/1,000 records (100%)") for r in caplog.records)
    spark.sparkContext.setJobGroup("", "")
