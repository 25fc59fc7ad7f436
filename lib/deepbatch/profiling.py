"""Profile aggregations over a Spark table: counts per value and summary statistics (analyse and the modalities' profiles)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def count_by(df: DataFrame, *cols: str) -> dict[str, int]:
    """Rows per value of ``cols`` (joined with |; null as <null>), sorted by value."""
    key = F.concat_ws("|", *[F.coalesce(F.col(c).cast("string"), F.lit("<null>")) for c in cols])
    return {r["k"]: int(r["n"]) for r in df.groupBy(key.alias("k")).agg(F.count("*").alias("n")).orderBy("k").collect()}


def summary_stats(df: DataFrame, col: str) -> dict[str, float | None]:
    row = df.agg(
        F.min(col).alias("min"),
        F.expr(f"percentile_approx({col}, 0.5)").alias("p50"),
        F.expr(f"percentile_approx({col}, 0.9)").alias("p90"),
        F.max(col).alias("max"),
        F.avg(col).alias("mean"),
    ).first()
    return {k: (None if row[k] is None else float(row[k])) for k in ("min", "p50", "p90", "max", "mean")}  # type: ignore[index]
