"""Filesystem operations through Spark's own Hadoop FileSystem (S3A locally, EMRFS on EMR)."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession


def _path_and_fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def exists(spark: SparkSession, uri: str) -> bool:
    path, fs = _path_and_fs(spark, uri)
    return bool(fs.exists(path))


def delete(spark: SparkSession, uri: str) -> bool:
    path, fs = _path_and_fs(spark, uri)
    return bool(fs.delete(path, True))
