"""Reading published partitions, and checking what is on disk against the declared schemas."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from deepbatch.errors import MissingInputError, SchemaMismatchError
from deepbatch.storage import HadoopStore


def partition_path(table_root: str, run_date: str) -> str:
    return f"{table_root.rstrip('/')}/run_date={run_date}"


def read_partition(spark: SparkSession, table_root: str, run_date: str, schema: StructType) -> DataFrame:
    """Read one published run-date partition, after checking the schema its files carry.

    The check reads the Parquet footers' schema (no ``schema=`` hint), so a column that is
    missing, renamed or of another type on disk is caught here with its name, not later as
    nulls or a cast error deep inside a stage.
    """
    path = partition_path(table_root, run_date)
    if not HadoopStore(spark).exists(path):
        raise MissingInputError(
            f"input {path} does not exist: run the upstream stage for run date {run_date} first "
            f"(e.g. `deepbatch pipeline --run-date {run_date}`)."
        )
    on_disk = spark.read.parquet(path)
    check_columns(on_disk.schema, schema, path)
    return spark.read.schema(schema).parquet(path)


def check_columns(actual: StructType, expected: StructType, where: str) -> None:
    """Raise SchemaMismatchError naming every column whose presence or type differs."""
    want = {f.name: f.dataType.simpleString() for f in expected.fields}
    have = {f.name: f.dataType.simpleString() for f in actual.fields}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    retyped = sorted(f"{n} ({have[n]} on disk, {want[n]} declared)" for n in set(want) & set(have) if want[n] != have[n])
    if missing or extra or retyped:
        raise SchemaMismatchError(
            f"{where}: the files on disk differ from the declared schema: missing columns {missing}, "
            f"unexpected columns {extra}, other types {retyped}. Rerun the stage that writes it "
            "(`deepbatch <stage> --run-date D`), or update schemas/tables.py if the schema changed on purpose."
        )


def conform(df: DataFrame, schema: StructType, where: str) -> DataFrame:
    """Select and cast columns to the declared schema, failing on a missing column."""
    from pyspark.sql import functions as F

    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing:
        raise SchemaMismatchError(
            f"{where}: missing columns {missing} for its declared schema; available: {df.columns}"
        )
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])
