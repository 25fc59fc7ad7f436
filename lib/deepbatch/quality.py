"""Record-level checks shared by the stages: flag, deduplicate, split off quarantine.

A row under check carries two helper columns, ``_reason`` and ``_detail``.
The first check that fails sets them; later checks leave a flagged row alone,
so every rejected row has exactly one reason code.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

REASON = "_reason"
DETAIL = "_detail"
RAW_ID = "_raw_id"  # an id as it landed, before NFC (nfc_ids)

# Reasons that count as deduplication in manifests (the rest count as quarantined).
DEDUP_REASONS = frozenset({"DUPLICATE_ID", "DUPLICATE_CONTENT"})

Transform = Callable[[DataFrame], DataFrame]


def start_checks() -> Transform:
    def _(df: DataFrame) -> DataFrame:
        return df.withColumn(REASON, F.lit(None).cast("string")).withColumn(DETAIL, F.lit(None).cast("string"))

    return _


def flag_when(condition: Column, reason: str, detail: Column | str) -> Transform:
    """Flag still-unflagged rows where condition holds."""

    def _(df: DataFrame) -> DataFrame:
        hit = F.col(REASON).isNull() & F.coalesce(condition, F.lit(False))
        detail_col = F.lit(detail) if isinstance(detail, str) else detail
        return df.withColumn(DETAIL, F.when(hit, detail_col).otherwise(F.col(DETAIL))).withColumn(
            REASON, F.when(hit, F.lit(reason)).otherwise(F.col(REASON))
        )

    return _


def nfc_series(ids: pd.Series) -> pd.Series:
    """Ids in Unicode NFC (nulls stay null): the pandas side of :func:`nfc_ids`, for UDFs that normalise ids as they go."""
    return ids.map(lambda s: unicodedata.normalize("NFC", s), na_action="ignore")


def _nfc(ids: Iterator[pd.Series]) -> Iterator[pd.Series]:
    for batch in ids:
        yield nfc_series(batch)


def adopt_ids(nfc: Column, id_col: str = "record_id") -> Transform:
    """The id replaced by its NFC form ``nfc``, the original kept in ``_raw_id``: ``café`` typed on Linux (NFC) and
    written by macOS (NFD) are one id, so label tables join and twins are caught as DUPLICATE_ID (:func:`flag_duplicates`
    names both spellings)."""

    def _(df: DataFrame) -> DataFrame:
        return df.withColumn(RAW_ID, F.col(id_col)).withColumn(id_col, nfc)

    return _


def nfc_ids(id_col: str = "record_id") -> Transform:
    """:func:`adopt_ids` through a pandas UDF of its own. A check that runs another pandas UDF normalises the ids in
    that one instead (:func:`nfc_series`): Spark gives each iterator UDF its own Python worker per task."""
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import StringType

    nfc = pandas_udf(_nfc, StringType())  # type: ignore[call-overload]
    return adopt_ids(nfc(F.col(id_col)), id_col)


def flag_missing_id(id_col: str = "record_id") -> Transform:
    c = F.col(id_col)
    return flag_when(c.isNull() | (F.trim(c) == ""), "MISSING_ID", f"{id_col} is null or empty")


def flag_duplicates(
    key: str, reason: str, order_by: tuple[str, ...] = ("modification_time", "source_path", "content_hash")
) -> Transform:
    """Among unflagged rows sharing ``key``, keep the earliest by ``order_by`` and flag the rest.

    The first arrival wins (oldest file, then path, then content). The ordering
    is on data values only, so the survivor is the same on any machine and for
    any partitioning.
    """

    def _(df: DataFrame) -> DataFrame:
        w = Window.partitionBy(F.col(key), F.col(REASON).isNull()).orderBy(*[F.col(c).asc_nulls_last() for c in order_by])
        ranked = df.withColumn("_rank", F.row_number().over(w)).withColumn(
            "_first", F.first(F.col("source_path")).over(w.rowsBetween(Window.unboundedPreceding, Window.currentRow))
        )
        dup = F.col(key).isNotNull() & (F.col("_rank") > 1)
        detail = F.concat(F.lit(f"same {key} as "), F.coalesce(F.col("_first"), F.lit("?")))
        if key == "record_id" and RAW_ID in df.columns:  # twins that differ only in Unicode normalisation say so
            ranked = ranked.withColumn("_first_raw", F.first(F.col(RAW_ID)).over(w.rowsBetween(Window.unboundedPreceding, Window.currentRow)))
            twin = F.concat(F.lit("id '"), F.col(RAW_ID), F.lit("' ("), F.length(RAW_ID), F.lit(" code points) and '"), F.col("_first_raw"),
                            F.lit("' ("), F.length("_first_raw"), F.lit(" code points) of "), F.coalesce(F.col("_first"), F.lit("?")),
                            F.lit(" differ only in Unicode normalisation (NFC/NFD): they are one id"))
            detail = F.when(F.col(RAW_ID) != F.col("_first_raw"), twin).otherwise(detail)
        return ranked.transform(flag_when(dup, reason, detail)).drop("_rank", "_first", "_first_raw")

    return _


def valid_rows() -> Transform:
    def _(df: DataFrame) -> DataFrame:
        return df.filter(F.col(REASON).isNull()).drop(REASON, DETAIL, RAW_ID)

    return _


def quarantine_rows(stage: str, source: str, binary_col: str | None = "content") -> Transform:
    """Rejected rows in the common quarantine shape (schemas.tables.QUARANTINE)."""

    def _(df: DataFrame) -> DataFrame:
        flagged = df.filter(F.col(REASON).isNotNull())
        payload_cols = [
            c for c, t in flagged.dtypes if c not in (REASON, DETAIL) and t != "binary"
        ]
        content = F.col(binary_col) if binary_col else F.lit(None).cast("binary")
        return flagged.select(
            F.lit(stage).alias("stage"),
            F.lit(source).alias("source"),
            F.col("record_id"),
            F.col("source_path"),
            F.col(REASON).alias("reason"),
            F.col(DETAIL).alias("detail"),
            F.to_json(F.struct(*[F.col(c) for c in payload_cols])).alias("payload"),
            content.alias("content"),
        )

    return _


def reason_counts(df: DataFrame) -> tuple[int, dict[str, int], dict[str, int]]:
    """One pass over a checked DataFrame: (valid rows, quarantined by reason, deduplicated by reason)."""
    rows = df.groupBy(REASON).count().collect()
    valid = 0
    quarantined: dict[str, int] = {}
    deduplicated: dict[str, int] = {}
    for r in rows:
        reason, n = r[REASON], int(r["count"])
        if reason is None:
            valid = n
        elif reason in DEDUP_REASONS:
            deduplicated[reason] = n
        else:
            quarantined[reason] = n
    return valid, quarantined, deduplicated


def canonical_label(label_col: str, classes: list[str]) -> Column:
    """Map a raw label to its canonical class name, case- and whitespace-insensitively; null if unknown."""
    mapping = F.create_map(*[x for c in classes for x in (F.lit(c.strip().lower()), F.lit(c))])
    return F.try_element_at(mapping, F.lower(F.trim(F.col(label_col))))


def flag_unknown_label(label_col: str, classes: list[str]) -> Transform:
    canon = canonical_label(label_col, classes)
    detail = F.concat(F.lit("label '"), F.coalesce(F.col(label_col), F.lit("<null>")), F.lit(f"' is not one of {classes}"))
    return flag_when(canon.isNull(), "UNKNOWN_LABEL", detail)


def checked_labels(label_col: str, classes: list[str] | None) -> Transform:
    """A missing or blank label is quarantined as MISSING_LABEL. Declared classes: an unknown label is quarantined,
    a known one takes its canonical spelling. Discovered classes (None, classes: auto): the others are trimmed."""

    def _(df: DataFrame) -> DataFrame:
        blank = F.coalesce(F.trim(F.col(label_col)), F.lit("")) == ""
        missing = df.transform(flag_when(blank, "MISSING_LABEL", "the record has no label (null, absent or blank)"))
        if classes is None:
            return missing.withColumn(label_col, F.trim(F.col(label_col)))
        flagged = missing.transform(flag_unknown_label(label_col, classes))
        return flagged.withColumn(label_col, F.coalesce(canonical_label(label_col, classes), F.col(label_col)))

    return _


def apply_probe(probe_col: str) -> Transform:
    """Turn a probe struct's reason into the row's reason code (first failure wins)."""

    def _(df: DataFrame) -> DataFrame:
        p = F.col(probe_col)
        hit = F.col("_reason").isNull() & p["reason"].isNotNull()
        return df.withColumn("_detail", F.when(hit, p["detail"]).otherwise(F.col("_detail"))).withColumn(
            "_reason", F.when(hit, p["reason"]).otherwise(F.col("_reason"))
        )

    return _


def flag_parse_errors() -> Transform:
    """acquire's ``"<REASON>: detail"`` parse errors become that reason (MALFORMED_RECORD when uncoded)."""

    def _(df: DataFrame) -> DataFrame:
        err = F.col("parse_error")
        code = F.regexp_extract(err, r"^([A-Z][A-Z0-9_]+): ", 1)
        detail = F.when(code != "", F.regexp_replace(err, r"^[A-Z][A-Z0-9_]+: ", "")).otherwise(err)
        tagged = df.withColumn("_code", F.when(code != "", code).otherwise(F.lit("MALFORMED_RECORD")))
        hit = F.col(REASON).isNull() & err.isNotNull()
        return (tagged.withColumn(DETAIL, F.when(hit, detail).otherwise(F.col(DETAIL)))
                .withColumn(REASON, F.when(hit, F.col("_code")).otherwise(F.col(REASON))).drop("_code"))

    return _


# The first arrival wins; content breaks ties where a source has no lines (a table row read twice).
RECORD_ORDER = ("modification_time", "source_path", "source_line", "content_hash")


def trimmed(columns: tuple[str, ...]) -> Transform:
    """Metadata fields, trimmed."""

    def _(df: DataFrame) -> DataFrame:
        return df.withColumns({c: F.trim(F.col(c)) for c in columns}) if columns else df

    return _
