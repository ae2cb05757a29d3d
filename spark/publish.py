"""Atomic publication of Parquet partitions on S3, where renaming a folder is not atomic.

A write goes in three steps:
1. Spark writes every row to `<dataset>/_staging/<attempt>/`, out of readers' sight.
2. Each date's files move into `<dataset>/upload_date=D/`, named `<attempt>-part-*.parquet`;
   files already there stay, so readers of the old version are not disturbed.
3. Each date's pointer, `upload_date=D/_published.json`, is replaced by one PUT naming the new
   files. That PUT is the moment of publication: a failure at any step before it leaves the
   old version in place, complete.

Readers (read_published) read exactly the files a pointer names, so they see one whole
version of each partition. Files of the version before stay one more write for readers that
are still reading it, then go; erasure asks for no grace, so nothing of an erased image stays.
Attempts are named by their start time and the newest wins: an older write never replaces a
newer one's pointer, and clean-up spares files of newer attempts, which may be in flight.
Dagster keeps two runs of one date apart (deployments/dagster.yaml); outside it, two writers
of one partition still leave one whole version, barring a race of milliseconds between one's
pointer check and its PUT (S3 has no compare-and-swap through Hadoop's FileSystem).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from spark import fs
from spark.layout import (
    PARTITION_COLUMN,
    dataset_partition_uri,
    pointer_uri,
    staging_attempt_uri,
)


@dataclass(frozen=True)
class Pointer:
    attempt: str
    rows: int
    files: list[str]
    previous: list[str]  # files of the version before, kept for readers still on it
    schema: str  # JSON of the rows' schema, so an empty partition still has columns

    @classmethod
    def parse(cls, text: str) -> Pointer:
        doc = json.loads(text)
        return cls(doc["attempt"], doc["rows"], doc["files"], doc["previous"], doc["schema"])

    def dump(self) -> str:
        doc = {**self.__dict__, "published_at": dt.datetime.now(dt.UTC).isoformat()}
        return json.dumps(doc, indent=1)


def new_attempt() -> str:
    """Sortable by start time, unique across writers."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}{uuid.uuid4().hex[:8]}"


def attempt_of(file_name: str) -> str:
    return file_name.split("-", 1)[0]


def read_pointer(spark: SparkSession, dataset_uri: str, date: str) -> Pointer | None:
    text = fs.read_text(spark, pointer_uri(dataset_uri, date))
    return Pointer.parse(text) if text is not None else None


def publish_partitions(
    spark: SparkSession,
    rows: DataFrame,
    dataset_uri: str,
    dates: Sequence[str],
    counts: dict[str, int],
    keep_previous: bool = True,
) -> None:
    """Replace the partitions of `dates` with `rows` (a date without rows becomes empty)."""
    attempt = new_attempt()
    staging = staging_attempt_uri(dataset_uri, attempt)
    try:
        if counts:
            rows.write.partitionBy(PARTITION_COLUMN).parquet(staging)
        for date in dates:
            files = _move_into_partition(spark, staging, dataset_uri, date, attempt)
            pointer = _new_pointer(
                spark, dataset_uri, date, attempt, counts.get(date, 0), files, rows.schema
            )
            if pointer is None:
                continue  # a newer write already published this date
            fs.write_text(spark, pointer_uri(dataset_uri, date), pointer.dump())
            _remove_unpublished(spark, dataset_uri, date, pointer, keep_previous)
    finally:
        # Best effort: with S3 down this fails too, and the lifecycle rule expires what is left.
        with contextlib.suppress(Py4JJavaError):
            fs.delete(spark, staging)


def _move_into_partition(
    spark: SparkSession, staging: str, dataset_uri: str, date: str, attempt: str
) -> list[str]:
    source = dataset_partition_uri(staging, date)
    target = dataset_partition_uri(dataset_uri, date)
    files = [
        f"{attempt}-{name}" for name in fs.list_names(spark, source) if name.endswith(".parquet")
    ]
    for name in files:
        fs.rename(spark, f"{source}/{name.split('-', 1)[1]}", f"{target}/{name}")
    return files


def _new_pointer(
    spark: SparkSession,
    dataset_uri: str,
    date: str,
    attempt: str,
    rows: int,
    files: list[str],
    schema: StructType,
) -> Pointer | None:
    """The pointer that publishes `files`, or None when a newer attempt has published."""
    old = read_pointer(spark, dataset_uri, date)
    if old is not None and old.attempt > attempt:
        return None
    return Pointer(attempt, rows, files, old.files if old else [], schema.json())


def _remove_unpublished(
    spark: SparkSession, dataset_uri: str, date: str, pointer: Pointer, keep_previous: bool
) -> None:
    """Delete the files of older attempts that `pointer` does not keep (failed writes' too)."""
    keep = set(pointer.files) | (set(pointer.previous) if keep_previous else set())
    partition = dataset_partition_uri(dataset_uri, date)
    for name in fs.list_names(spark, partition):
        if not name.startswith("_") and name not in keep and attempt_of(name) < pointer.attempt:
            fs.delete(spark, f"{partition}/{name}")


def published_files(
    spark: SparkSession, dataset_uri: str, dates: Sequence[str] | None = None
) -> tuple[list[str], StructType | None]:
    """URIs of the files published for `dates` (all dates when None), and the rows' schema."""
    if dates is None:
        prefix = f"{PARTITION_COLUMN}="
        dates = [
            n[len(prefix) :] for n in fs.list_names(spark, dataset_uri) if n.startswith(prefix)
        ]
    files: list[str] = []
    schema: StructType | None = None
    for date in dates:
        pointer = read_pointer(spark, dataset_uri, date)
        if pointer is None:
            continue
        schema = StructType.fromJson(json.loads(pointer.schema))
        partition = dataset_partition_uri(dataset_uri, date)
        files.extend(f"{partition}/{name}" for name in pointer.files)
    return files, schema


def read_published(
    spark: SparkSession, dataset_uri: str, dates: Sequence[str] | None = None
) -> DataFrame:
    """The published version of each partition of `dates` (all dates when None)."""
    files, schema = published_files(spark, dataset_uri, dates)
    if files:
        return spark.read.option("basePath", dataset_uri).parquet(*files)
    if schema is None:
        raise FileNotFoundError(f"no partition is published under {dataset_uri}")
    return spark.createDataFrame([], _partition_column_last(schema))


def _partition_column_last(schema: StructType) -> StructType:
    """The column order Spark gives when it reads the partition column from paths."""
    fields = [f for f in schema.fields if f.name != PARTITION_COLUMN]
    fields += [f for f in schema.fields if f.name == PARTITION_COLUMN]
    return StructType(fields)
