"""Fixtures for the model tests: one local SparkSession for the whole run (start-up is ~5 s).

Tests that ask for `spark` skip cleanly where pyspark or Java is missing.
"""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local[2] SparkSession, UI off, few shuffle partitions; stopped at the end of the run."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sql = pytest.importorskip("pyspark.sql", reason="pyspark is not installed")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        pytest.skip("Spark needs Java: no JAVA_HOME and no java on PATH")
    try:
        session = (
            sql.SparkSession.builder.master("local[2]")
            .appName("related-videos-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.default.parallelism", "2")
            .config("spark.driver.memory", "1g")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate()
        )
    except Exception as error:  # e.g. a JVM that fails to start
        pytest.skip(f"cannot start a local SparkSession: {error}")
    session.sparkContext.setLogLevel("ERROR")
    # Without a checkpoint directory ALS's lineage grows with every iteration and task
    # serialization can overflow the stack (seen at max_iter 15).
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("spark-checkpoints")))
    yield session
    session.stop()
