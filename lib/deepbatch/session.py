"""The one SparkSession factory. It never hard-codes the master."""

from __future__ import annotations

import os
import sys
from typing import Any

from pyspark.sql import SparkSession

from deepbatch.config import Conf


def configure_session(builder: SparkSession.Builder, conf: Conf) -> SparkSession.Builder:
    """Apply deepbatch's settings to a builder and return it (delta's pattern).

    The master comes from conf only when set (conf/local.yaml); otherwise
    spark-submit or the environment decides.
    """
    builder = builder.appName(conf.spark.app_name)
    if conf.spark.master:
        builder = builder.master(conf.spark.master)
    for key, value in sorted(conf.spark.conf.items()):
        builder = builder.config(key, value)
    return builder


def python_worker_env() -> None:
    """Make local Python workers use this interpreter (the venv), not the system python3.

    Only fills the variables when nobody set them, so spark-submit's
    ``spark.pyspark.python`` and a user's own ``PYSPARK_PYTHON`` still win.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def describe_job(spark: SparkSession, stage: str, what: str, run_date: str) -> None:
    """Label the next Spark jobs so the UI and event log show the stage and run date."""
    spark.sparkContext.setJobGroup(f"deepbatch-{stage}-{run_date}", f"deepbatch {stage} {what} run_date={run_date}")


def quiet_local_jvm(builder: SparkSession.Builder, conf: Conf) -> SparkSession.Builder:
    """In local mode, where this process starts the JVM, use deepbatch's log4j2 settings (Spark's WARN
    lines without its start-up notes), unless the conf sets the driver's Java options itself."""
    from pathlib import Path

    if "spark.driver.extraJavaOptions" in conf.spark.conf:
        return builder
    props = Path(__file__).with_name("log4j2.properties")
    return builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={props.as_uri()}")


# The one line a JVM prints at start-up for the incubator module Spark's launcher always adds
# (--add-modules=jdk.incubator.vector); Java has no switch to silence it.
_JVM_START_NOTICES = frozenset({"WARNING: Using incubator modules: jdk.incubator.vector"})


def _forward_jvm_stderr(stream: Any) -> None:
    """Copy the JVM's stderr to ours line by line, leaving out the known start-up notice only."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        if line.rstrip("\r\n") not in _JVM_START_NOTICES:
            sys.stderr.write(line)
            sys.stderr.flush()


def start_local_jvm(builder: SparkSession.Builder) -> None:
    """Start the local-mode JVM ourselves, with the builder's settings, so its stderr passes through
    :func:`_forward_jvm_stderr`. Where PySpark's internals differ, Spark starts the JVM as usual."""
    import subprocess
    import threading

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None:
        return
    options = getattr(builder, "_options", None)
    if not isinstance(options, dict):
        return
    spark_conf = SparkConf()
    for key, value in options.items():
        spark_conf.set(key, str(value))
    gateway = launch_gateway(spark_conf, popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(target=_forward_jvm_stderr, args=(gateway.proc.stderr,), name="jvm-stderr", daemon=True).start()
    SparkContext._gateway = gateway
    SparkContext._jvm = gateway.jvm


def get_session(conf: Conf) -> SparkSession:
    builder = configure_session(SparkSession.builder, conf)
    # Only in local mode do the workers share this machine's interpreter; on a cluster the
    # executors' Python comes from spark.pyspark.python / the shipped environment.
    if (conf.spark.master or "").startswith("local"):
        python_worker_env()
        builder = quiet_local_jvm(builder, conf)
        start_local_jvm(builder)
    return builder.getOrCreate()
