"""integrate: join content with labels and metadata, index classes, split.

The split hashes the record id with a seed (xxhash64, part of Spark SQL), so
it depends on the id alone: the same rows get the same split on any machine,
any Spark version that has xxhash64, and any partition count. Content with no
label is kept with ``split = 'unlabelled'`` (inference-only input); a label
with no content is quarantined as ``ORPHAN_LABEL``.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from deepbatch.quality import Transform, canonical_label, flag_when, quarantine_rows, start_checks

UNLABELLED = "unlabelled"
SPLITS = ("train", "val", "test")
_BUCKETS = 10_000


def split_bucket(id_col: str, seed: int) -> F.Column:
    """A value in [0, 1) that is a pure function of (seed, id)."""
    return F.pmod(F.xxhash64(F.lit(str(seed)), F.col(id_col)), F.lit(_BUCKETS)) / F.lit(float(_BUCKETS))


def assign_split(train: float, val: float, seed: int, id_col: str = "record_id") -> Transform:
    """Add ``split``: train/val/test by hash bucket, 'unlabelled' where label is null."""

    def _(df: DataFrame) -> DataFrame:
        b = split_bucket(id_col, seed)
        split = (
            F.when(F.col("label").isNull(), F.lit(UNLABELLED))
            .when(b < train, F.lit("train"))
            .when(b < train + val, F.lit("val"))
            .otherwise(F.lit("test"))
        )
        return df.withColumn("split", split)

    return _


def class_map(classes: list[str]) -> dict[str, int]:
    """Class name -> index, in the configured order (stable across runs)."""
    return {c: i for i, c in enumerate(classes)}


def with_label_index(classes: list[str]) -> Transform:
    def _(df: DataFrame) -> DataFrame:
        mapping = F.create_map(*[x for c, i in class_map(classes).items() for x in (F.lit(c), F.lit(i))])
        return df.withColumn("label_index", F.try_element_at(mapping, F.col("label")).cast("int"))

    return _


def join_labels(labels: DataFrame) -> Transform:
    """Left-join content with its label table on record_id (silver has one row per id)."""

    def _(content: DataFrame) -> DataFrame:
        return content.join(labels.select("record_id", "label"), on="record_id", how="left")

    return _


def orphan_labels(labels: DataFrame, content: DataFrame, source: str) -> DataFrame:
    """Label rows whose record_id has no content, in quarantine shape."""
    orphans = labels.join(content.select("record_id"), on="record_id", how="left_anti")
    return (
        orphans.transform(start_checks())
        .transform(flag_when(F.lit(True), "ORPHAN_LABEL", F.concat(F.lit("no content with id "), F.col("record_id"))))
        .transform(quarantine_rows("integrate", source, binary_col=None))
    )


def folder_labels(classes: list[str] | None, base: str) -> Transform:
    """ImageFolder labels: the parent folder of a file below the source folder ``base`` names its class
    (canonicalised against declared classes). A file directly in ``base``, or in a folder that is not a declared
    class, stays unlabelled: inference input."""

    def _(content: DataFrame) -> DataFrame:
        below = F.col("source_path").startswith(base.rstrip("/") + "/")
        rel = F.substring(F.col("source_path"), len(base.rstrip("/")) + 2, 1 << 20)
        parent = F.regexp_extract(F.col("source_path"), r"([^/]+)/[^/]+$", 1)
        with_folder = content.withColumn("label", F.when(below & (F.instr(rel, "/") > 0), parent))
        return with_folder if classes is None else with_folder.withColumn("label", canonical_label("label", classes))

    return _


def as_file_ids(exts: list[str], keep_folders: bool) -> Transform:
    """A label table's ids as the ids of the files they label (Spark side of deepbatch.catalog.label_id): backslashes
    as slashes, the folders dropped for stem ids (a leading ./ for path ids), and a media extension dropped."""

    def _(labels: DataFrame) -> DataFrame:
        rid = F.regexp_replace(F.trim(F.col("record_id")), r"\\", "/")
        rid = F.regexp_replace(rid, r"^(\./)+", "")
        rid = rid if keep_folders else F.regexp_extract(rid, r"([^/]*)$", 1)
        if exts:
            rid = F.regexp_replace(rid, r"(?i)\.(" + "|".join(exts) + r")$", "")
        return labels.withColumn("record_id", rid)

    return _


def discovered_classes(df: DataFrame) -> list[str]:
    """classes: auto: the distinct labels of the labelled rows, sorted (stable across runs and machines)."""
    return sorted(r[0] for r in df.where(F.col("label").isNotNull()).select("label").distinct().collect())


def build_task_table(content: DataFrame, labels: DataFrame | None, classes: list[str], train: float, val: float, seed: int) -> DataFrame:
    """content (+ labels) -> gold rows with label, label_index and split."""
    df = content.transform(join_labels(labels)) if labels is not None else content
    return df.transform(with_label_index(classes)).transform(assign_split(train, val, seed))
