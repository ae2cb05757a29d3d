"""Write, audit, publish: Parquet partitions on S3, where renaming a folder is not atomic.

A write goes in two phases, with the caller's checks in between:
1. stage(): Spark writes every row to `<dataset>/_staging/<attempt>/`, out of readers' sight.
   The caller audits the staged rows (read_staged). A version that fails its checks is never
   published and stays there for inspection (a lifecycle rule expires it).
2. publish(): each date's files move into `<dataset>/upload_date=D/`, named
   `<attempt>-part-*.parquet` (files already there stay, so readers of the old version are not
   disturbed), then one PUT replaces the date's pointer, `upload_date=D/_published.json`. That
   PUT is the moment of publication: a failure before it leaves the old version in place.

One pointer can publish several datasets at once (Dataset.unit_uri): a date's features and
rejects are one unit, so a crash between the two leaves the old pair.

Readers (read_published) read exactly the files a pointer names, so they see one whole
version of each partition. Files of the version before stay one more write for readers that
are still reading it, then go; erasure asks for no grace, so nothing of an erased image stays.
Attempts are named by their start time and the newest wins: an older write never replaces a
newer one's pointer. Callers hold the dates' locks (spark.locks) while they publish.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from spark import fs
from spark.layout import (
    PARTITION_COLUMN,
    Dataset,
    dataset_partition_uri,
    pointer_uri,
    staging_attempt_uri,
)


@dataclass(frozen=True)
class Version:
    """One dataset's files in one partition, as a pointer names them."""

    rows: int
    files: list[str]
    previous: list[str]  # files of the version before, kept for readers still on it
    schema: str  # JSON of the rows' schema, so an empty partition still has columns


@dataclass(frozen=True)
class Pointer:
    attempt: str
    datasets: dict[str, Version]

    @classmethod
    def parse(cls, text: str) -> Pointer:
        doc = json.loads(text)
        return cls(doc["attempt"], {n: Version(**v) for n, v in doc["datasets"].items()})

    def dump(self) -> str:
        doc = {
            "attempt": self.attempt,
            "published_at": dt.datetime.now(dt.UTC).isoformat(),
            "datasets": {name: version.__dict__ for name, version in self.datasets.items()},
        }
        return json.dumps(doc, indent=1)

    def files_of(self, name: str) -> list[str]:
        version = self.datasets.get(name)
        return version.files if version else []


@dataclass(frozen=True)
class Staged:
    """A write out of readers' sight: every dataset's rows of `dates`, under one attempt."""

    attempt: str
    dates: list[str]
    datasets: dict[str, Dataset]
    counts: dict[str, dict[str, int]]  # dataset -> date -> rows
    schemas: dict[str, StructType] = field(repr=False)

    def uri(self, name: str) -> str:
        return staging_attempt_uri(self.datasets[name].uri, self.attempt)

    def locations(self) -> dict[str, str]:
        """Where the staged rows are (a dataset without rows writes nothing)."""
        return {name: self.uri(name) for name in self.datasets if any(self.counts[name].values())}

    def rows(self, name: str) -> dict[str, int]:
        return {date: self.counts[name].get(date, 0) for date in self.dates}


def new_attempt() -> str:
    """Sortable by start time, unique across writers."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}{uuid.uuid4().hex[:8]}"


def rewrite_attempt(published: str) -> str:
    """An attempt that sorts right after `published` and before any write started later: for
    a rewrite of that version (an erasure), which is the same version less rows, not a newer
    one, so a run staged earlier still wins over it. 'x' is in neither timestamps nor hex, so
    repeated rewrites do not lengthen the name."""
    return f"{published.split('x', 1)[0]}x{new_attempt()}"


def attempt_of(file_name: str) -> str:
    return file_name.split("-", 1)[0]


def rows_per_date(rows: DataFrame) -> dict[str, int]:
    return {
        r[PARTITION_COLUMN]: r["count"] for r in rows.groupBy(PARTITION_COLUMN).count().collect()
    }


def read_pointer(spark: SparkSession, unit_uri: str, date: str) -> Pointer | None:
    text = fs.read_text(spark, pointer_uri(unit_uri, date))
    return Pointer.parse(text) if text is not None else None


def stage(
    spark: SparkSession,
    frames: Mapping[Dataset, DataFrame],
    dates: Sequence[str],
    attempt: str | None = None,
) -> Staged:
    """Write each dataset's rows under one attempt (a new one by default), unpublished. A
    requested date with no rows will be published empty, so a re-run never leaves stale rows
    behind."""
    units = {dataset.unit_uri for dataset in frames}
    if len(units) != 1:
        raise ValueError(f"one publication unit per write, got {sorted(units)}")
    attempt = attempt or new_attempt()
    counts = {}
    for dataset, rows in frames.items():
        counts[dataset.name] = rows_per_date(rows)
        if counts[dataset.name]:
            rows.write.partitionBy(PARTITION_COLUMN).parquet(
                staging_attempt_uri(dataset.uri, attempt)
            )
    return Staged(
        attempt,
        sorted(set(dates)),
        {dataset.name: dataset for dataset in frames},
        counts,
        {dataset.name: rows.schema for dataset, rows in frames.items()},
    )


def read_staged(spark: SparkSession, staged: Staged, name: str) -> DataFrame:
    """The staged rows of one dataset, as readers would see them once published."""
    if not any(staged.counts[name].values()):
        return spark.createDataFrame([], _partition_column_last(staged.schemas[name]))
    uri = staged.uri(name)
    return spark.read.option("basePath", uri).parquet(uri)


def publish(spark: SparkSession, staged: Staged, keep_previous: bool = True) -> None:
    """Publish every staged date: move its files into place, then flip its pointer."""
    unit = next(iter(staged.datasets.values())).unit_uri
    for date in staged.dates:
        files = {
            name: _move_into_partition(spark, staged.uri(name), dataset.uri, date, staged.attempt)
            for name, dataset in staged.datasets.items()
        }
        old = read_pointer(spark, unit, date)
        if old is not None and old.attempt > staged.attempt:
            continue  # a newer write already published this date
        pointer = Pointer(
            staged.attempt,
            {
                **(old.datasets if old else {}),  # the unit's datasets not in this write stay
                **{
                    name: Version(
                        staged.counts[name].get(date, 0),
                        files[name],
                        old.files_of(name) if old else [],
                        staged.schemas[name].json(),
                    )
                    for name in staged.datasets
                },
            },
        )
        fs.write_text(spark, pointer_uri(unit, date), pointer.dump())
        for name, dataset in staged.datasets.items():
            _remove_unpublished(spark, dataset.uri, date, pointer, name, keep_previous)
    discard(spark, staged)


def discard(spark: SparkSession, staged: Staged) -> None:
    """Delete what is left of a staged write; best effort, the lifecycle rule expires the rest."""
    for name in staged.datasets:
        with contextlib.suppress(Py4JJavaError):
            fs.delete(spark, staged.uri(name))


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
    # A publish retried after a failure finds some of its files moved already: keep them.
    moved = [name for name in fs.list_names(spark, target) if attempt_of(name) == attempt]
    return sorted(set(moved) | set(files))


def _remove_unpublished(
    spark: SparkSession,
    dataset_uri: str,
    date: str,
    pointer: Pointer,
    name: str,
    keep_previous: bool,
) -> None:
    """Delete the files of older attempts that `pointer` does not keep (failed writes' too)."""
    version = pointer.datasets[name]
    keep = set(version.files) | (set(version.previous) if keep_previous else set())
    partition = dataset_partition_uri(dataset_uri, date)
    for file in fs.list_names(spark, partition):
        if not file.startswith("_") and file not in keep and attempt_of(file) < pointer.attempt:
            fs.delete(spark, f"{partition}/{file}")


def published_dates(spark: SparkSession, dataset: Dataset) -> list[str]:
    prefix = f"{PARTITION_COLUMN}="
    names = fs.list_names(spark, dataset.unit_uri)
    return [n[len(prefix) :] for n in names if n.startswith(prefix)]


def published_versions(
    spark: SparkSession, dataset: Dataset, dates: Sequence[str] | None = None
) -> dict[str, str]:
    """upload date -> the attempt whose version of `dataset` is published (lineage)."""
    dates = published_dates(spark, dataset) if dates is None else dates
    pointers = {date: read_pointer(spark, dataset.unit_uri, date) for date in dates}
    return {
        date: p.attempt
        for date, p in pointers.items()
        if p is not None and dataset.name in p.datasets
    }


def published_files(
    spark: SparkSession, dataset: Dataset, dates: Sequence[str] | None = None
) -> tuple[list[str], StructType | None]:
    """URIs of the files published for `dates` (all dates when None), and the rows' schema."""
    dates = published_dates(spark, dataset) if dates is None else dates
    files: list[str] = []
    schema: StructType | None = None
    for date in dates:
        pointer = read_pointer(spark, dataset.unit_uri, date)
        version = pointer.datasets.get(dataset.name) if pointer else None
        if version is None:
            continue
        schema = StructType.fromJson(json.loads(version.schema))
        partition = dataset_partition_uri(dataset.uri, date)
        files.extend(f"{partition}/{name}" for name in version.files)
    return files, schema


def read_published(
    spark: SparkSession, dataset: Dataset, dates: Sequence[str] | None = None
) -> DataFrame:
    """The published version of each partition of `dates` (all dates when None)."""
    files, schema = published_files(spark, dataset, dates)
    if files:
        return spark.read.option("basePath", dataset.uri).parquet(*files)
    if schema is None:
        raise FileNotFoundError(f"no partition is published under {dataset.uri}")
    return spark.createDataFrame([], _partition_column_last(schema))


def _partition_column_last(schema: StructType) -> StructType:
    """The column order Spark gives when it reads the partition column from paths."""
    fields = [f for f in schema.fields if f.name != PARTITION_COLUMN]
    fields += [f for f in schema.fields if f.name == PARTITION_COLUMN]
    return StructType(fields)


def restage(
    spark: SparkSession, staged: Staged, name: str, keep: Callable[[DataFrame], DataFrame]
) -> None:
    """Replace one dataset's staged rows with keep(rows): for erasures that arrived meanwhile."""
    rows = keep(read_staged(spark, staged, name)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = rows_per_date(rows)
        scratch = f"{staged.uri(name)}-restaged"
        if counts:
            rows.write.partitionBy(PARTITION_COLUMN).parquet(scratch)
    finally:
        rows.unpersist()
    fs.delete(spark, staged.uri(name))
    if counts:
        fs.rename(spark, scratch, staged.uri(name))
    staged.counts[name] = counts
