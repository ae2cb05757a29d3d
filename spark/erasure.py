"""GDPR right to erasure: remove one image from raw/ and from everything derived from it.

1. A tombstone names the erased upload (its path, ETag and time): a run that read the image
   before this erasure drops it when it publishes (spark.pipeline.publish_staged), so it
   cannot come back; a later upload at the same path is a new image.
2. Each table DELETEs the image's rows on every branch (copy-on-write: the files that held
   them are replaced), then expires the snapshots that still reach the old files, removes the
   unreferenced files older than the write grace, and deletes whatever file that held the
   image no snapshot references any more. Staged snapshots younger than the grace
   belong to runs still writing: they drop the image when they publish (1.), and table
   maintenance removes what a crashed one left; the record lists them.
3. The raw object is deleted and the date's manifest rewritten.
An audit record on S3 says what was removed. The date's PCA statistics (sums over its rows,
spark.pca) are computed again without the image and their old snapshots expired. PCA models
keep their components and mean (aggregates, not the image); re-fit to drop its influence.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from typing import Any

from pyspark.sql import SparkSession

from spark import pca, tables
from spark.layout import RAW_DATE_PATTERN, Layout, split_uri, upload_digest
from spark.manifest import read_manifest, write_manifests
from spark.storage import SSE, put_json


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


def _upload(s3: Any, layout: Layout, date: str, path: str) -> dict[str, Any] | None:
    """The raw object's ETag, time and content digest, or the manifest's entry when the
    object is gone already (a repeated erasure: None when neither knows it)."""
    bucket, key = split_uri(path)
    try:
        head = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        head = None
    if head is not None:
        body = head["Body"].read()
        return {
            "etag": head["ETag"].strip('"'),
            # As the listing gives it (spark.manifest): the same time, the same digest.
            "last_modified": _listed_time(s3, bucket, key),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    try:
        rows = read_manifest(s3, layout, date).to_pylist()
    except s3.exceptions.NoSuchKey:
        return None
    entry = next((r for r in rows if r["path"] == path), None)
    if entry is None:
        return None
    return {"etag": entry["etag"], "last_modified": entry["last_modified"], "sha256": None}


def _listed_time(s3: Any, bucket: str, key: str) -> str:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)["Contents"][0]
    return listed["LastModified"].isoformat()


def erase_image(
    spark: SparkSession, layout: Layout, s3: Any, path: str, *, write_grace_hours: float
) -> dict[str, Any]:
    bucket, key = split_uri(path)
    match = re.search(RAW_DATE_PATTERN, key)
    if bucket != layout.bucket or not match or not key.startswith(layout.raw_prefix()):
        raise ValueError(f"not a raw image of this pipeline: {path}")
    date, path = match[1], f"s3://{bucket}/{key}"
    upload = _upload(s3, layout, date, path)
    tombstone = None
    if upload is not None:
        tombstone = layout.tombstone_key(
            date, path, upload_digest(upload["etag"], upload["last_modified"])
        )
        s3.put_object(Bucket=bucket, Key=tombstone, Body=b"", **SSE)
    condition = f"upload_date = '{date}' AND path = '{_sql_string(path)}'"
    now = dt.datetime.now(dt.UTC)
    grace = now - dt.timedelta(hours=write_grace_hours)
    per_table: dict[str, Any] = {}
    for name in (tables.FEATURES, tables.REDUCED):
        target = tables.table(layout, name)
        if not tables.exists(spark, target):
            continue
        history = tables.snapshots(spark, target)
        # Staged by runs still writing (younger than the grace): they drop it when they
        # publish. Every other snapshot goes; the files that held the image with it.
        writing = [s for s in history if not s.on_main and s.committed_at >= grace]
        held = tables.files_holding(
            spark, target, condition, [s for s in history if s not in writing]
        )
        removed = tables.delete_where(spark, target, condition)
        expired = tables.expire_unreferenced(
            spark, target, older_than=dt.datetime.now(dt.UTC), keep_staged_after=grace
        )
        per_table[name] = {
            "rows_removed": removed,
            "files_deleted": expired,
            "orphan_files_deleted": tables.remove_orphan_files(spark, target, grace),
            # Copies the expiry did not delete (its deletions are best effort).
            "copies_deleted": tables.delete_unreferenced(
                spark, target, set().union(*held.values())
            ),
            "staged_in_flight": tables.holding(spark, target, condition, writing),
        }
    # The date's PCA statistics summed the image: computed again without it, the old sums
    # expired with their files.
    statistics = pca.forget_in_statistics(spark, layout, date, grace)
    s3.delete_object(Bucket=bucket, Key=key)
    write_manifests(s3, layout, [date])
    record_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    record = {
        "erased_at": now.isoformat(),
        "path": path,
        "sha256": upload["sha256"] if upload else None,
        "upload_date": date,
        "tables": per_table,
        "pca_statistics": statistics,
        "rows_removed": {n: sum(t["rows_removed"].values()) for n, t in per_table.items()},
        "raw_object_deleted": path,
        "manifest_rewritten": layout.manifest_uri(date),
        "tombstone": f"s3://{bucket}/{tombstone}" if tombstone else None,
    }
    put_json(s3, layout.bucket, layout.erasure_record_key(record_id), record)
    return record


def _sql_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
