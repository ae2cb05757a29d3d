"""Filesystem operations through Spark's own Hadoop FileSystem (S3A locally, EMRFS on EMR)."""

from __future__ import annotations

from typing import Any

from py4j.protocol import Py4JJavaError
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


def list_names(spark: SparkSession, uri: str) -> list[str]:
    """Names of the entries directly under `uri` (none when it does not exist)."""
    path, fs = _path_and_fs(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(path))


def read_text(spark: SparkSession, uri: str) -> str | None:
    """The object's text, or None when it does not exist (one request, not a check first)."""
    path, fs = _path_and_fs(spark, uri)
    try:
        stream = fs.open(path)
    except Py4JJavaError as error:
        if "FileNotFoundException" in error.java_exception.getClass().getName():
            return None
        raise
    try:
        return spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    """One small object, written whole: on S3 a single PUT, so readers see all or nothing."""
    path, fs = _path_and_fs(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()


def rename(spark: SparkSession, source: str, target: str) -> None:
    source_path, fs = _path_and_fs(spark, source)
    target_path, _ = _path_and_fs(spark, target)
    if not fs.rename(source_path, target_path):
        raise OSError(f"could not move {source} to {target}")
