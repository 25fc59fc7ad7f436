"""clean: validate, deduplicate and normalise bronze tables into silver.

A source's rows are checked by its modality (:meth:`deepbatch.modality.ModalityContract.check`: images and clips
decoded in pandas UDFs, text normalised) or, for a label table, here. Each check returns the bronze rows with
``_reason``/``_detail`` set on every rejected row; :func:`deepbatch.quality.valid_rows` and
:func:`deepbatch.quality.quarantine_rows` split them.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from deepbatch.quality import (
    RECORD_ORDER,
    checked_labels,
    flag_duplicates,
    flag_missing_id,
    flag_parse_errors,
    nfc_ids,
    start_checks,
)


def check_labels(bronze: DataFrame, classes: list[str] | None) -> DataFrame:
    """Label table rows: parse errors, ids, unknown labels (canonicalised), one row per id."""
    return (
        bronze.transform(start_checks())
        .transform(flag_parse_errors())
        .withColumn("record_id", F.trim(F.col("record_id")))
        .transform(nfc_ids())
        .transform(flag_missing_id())
        .transform(checked_labels("label", classes))
        .transform(flag_duplicates("record_id", "DUPLICATE_ID", RECORD_ORDER))
    )
