"""GDPR right to erasure: remove one image from raw/ and from every object derived from it.

Under its upload date's lock (spark.locks), so no publication of that date interleaves:
1. a tombstone is written first: any feature run that read the image before this erasure
   drops it when it publishes (spark.pipeline.drop_erased), so it cannot come back;
2. the date's published features + rejects (one unit) and reduced rows are rewritten without
   it, keeping no previous version; staged versions that hold it are rewritten without it
   (their files that held it are deleted);
3. the raw object is deleted and the date's manifest rewritten.
An audit record on S3 lists every object deleted. PCA models keep their components
(aggregates, not the image); re-fit to drop its influence.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark import fs
from spark.layout import (
    FEATURES,
    RAW_DATE_PATTERN,
    REDUCED,
    REJECTS,
    STAGING,
    Dataset,
    Layout,
    dataset_partition_uri,
    split_uri,
)
from spark.locks import date_locks
from spark.manifest import write_manifests
from spark.publish import publish, read_pointer, read_published, rewrite_attempt, stage
from spark.storage import SSE, put_json

# Rewritten together: one pointer publishes features and rejects.
UNITS = ((FEATURES, REJECTS), (REDUCED,))


def find_by_sha256(s3: Any, layout: Layout, digest: str) -> str:
    """The s3:// path of the raw image whose content has this SHA-256."""
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=layout.bucket, Prefix=layout.raw_prefix()
    ):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=layout.bucket, Key=obj["Key"])["Body"].read()
            if hashlib.sha256(body).hexdigest() == digest:
                return f"s3://{layout.bucket}/{obj['Key']}"
    raise ValueError(f"no raw image has SHA-256 {digest}")


def _files(spark: SparkSession, datasets: list[Dataset], date: str) -> set[str]:
    return {
        f"{dataset_partition_uri(d.uri, date)}/{name}"
        for d in datasets
        for name in fs.list_names(spark, dataset_partition_uri(d.uri, date))
    }


def _rewrite_unit(
    spark: SparkSession, datasets: list[Dataset], date: str, path: str
) -> dict[str, int]:
    """Publish the date of these datasets again without `path`; rows removed per dataset."""
    pointer = read_pointer(spark, datasets[0].unit_uri, date)
    if pointer is None:
        return {d.name: 0 for d in datasets}
    rows = {d: read_published(spark, d, [date]) for d in datasets}
    # Materialized before publishing deletes the files they were read from.
    kept = {
        d: r.where(F.col("path") != path).persist(StorageLevel.MEMORY_AND_DISK)
        for d, r in rows.items()
    }
    removed = {d.name: rows[d].count() - kept[d].count() for d in datasets}
    if any(removed.values()):
        # No grace for readers of the old version: it holds the erased image.
        staged = stage(spark, kept, [date], attempt=rewrite_attempt(pointer.attempt))
        publish(spark, staged, keep_previous=False)
    for frame in kept.values():
        frame.unpersist()
    return removed


def _purge_staged(spark: SparkSession, dataset: Dataset, date: str, path: str) -> list[str]:
    """Rewrite the staged versions of `date` (unpublished writes, failed audits) that hold
    `path` without it; the files that held it are deleted. The other rows stay, so a run staged
    before this erasure still publishes the rest of the date (its counts are redone then)."""
    staging = f"{dataset.uri}/{STAGING}"
    purged = []
    for attempt in fs.list_names(spark, staging):
        folder = dataset_partition_uri(f"{staging}/{attempt}", date)
        if not fs.exists(spark, folder):
            continue
        rows = spark.read.parquet(folder)
        if rows.where(F.col("path") == path).limit(1).count():
            files = [f"{folder}/{name}" for name in fs.list_names(spark, folder)]
            # Outside the attempt's folder, so its readers never see both; an empty result
            # still writes one file with the schema.
            scratch = f"{staging}/{attempt}-erasing"
            rows.where(F.col("path") != path).write.mode("overwrite").parquet(scratch)
            fs.delete(spark, folder)
            fs.rename(spark, scratch, folder)
            purged += files
    return purged


def erase_image(spark: SparkSession, layout: Layout, s3: Any, path: str) -> dict[str, Any]:
    bucket, key = split_uri(path)
    match = re.search(RAW_DATE_PATTERN, key)
    if bucket != layout.bucket or not match or not key.startswith(layout.raw_prefix()):
        raise ValueError(f"not a raw image of this pipeline: {path}")
    date, path = match[1], f"s3://{bucket}/{key}"
    try:
        sha256 = hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
    except s3.exceptions.NoSuchKey:
        sha256 = None  # a repeated erasure: the raw object went in the first one
    removed: dict[str, int] = {}
    deleted: list[str] = []
    with date_locks(s3, layout, [date], owner=f"erase {uuid.uuid4().hex[:8]}"):
        s3.put_object(Bucket=bucket, Key=layout.tombstone_key(date, path), Body=b"", **SSE)
        for names in UNITS:
            datasets = [layout.dataset(n) for n in names]
            before = _files(spark, datasets, date)
            removed |= _rewrite_unit(spark, datasets, date, path)
            deleted += sorted(before - _files(spark, datasets, date))
            for dataset in datasets:
                deleted += _purge_staged(spark, dataset, date, path)
        s3.delete_object(Bucket=bucket, Key=key)
        deleted.append(path)
        write_manifests(s3, layout, [date])
    record_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    record = {
        "erased_at": dt.datetime.now(dt.UTC).isoformat(),
        "path": path,
        "sha256": sha256,
        "upload_date": date,
        "rows_removed": removed,
        "objects_deleted": deleted,
        "manifest_rewritten": layout.manifest_uri(date),
        "tombstone": f"s3://{bucket}/{layout.tombstone_key(date, path)}",
    }
    put_json(s3, layout.bucket, layout.erasure_record_key(record_id), record)
    return record
