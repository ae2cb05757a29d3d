"""GDPR right to erasure: remove one image from raw/ and from every dataset derived from it.

Only the image's upload-date partition is rewritten; an audit record goes to
audit/erasures/ on S3. The erased image is gone from the manifest too, so the checks
(every image accounted for, reduced rows = feature rows) still pass afterwards.
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

from spark.layout import RAW_DATE_PATTERN, Layout, split_uri
from spark.manifest import list_manifest, write_manifest
from spark.pipeline import read_dataset, write_partitions
from spark.publish import read_pointer
from spark.storage import put_json


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


def _without(spark: SparkSession, uri: str, date: str, path: str) -> int:
    """Rewrite one date's partition of `uri` without `path`; returns the rows removed."""
    if read_pointer(spark, uri, date) is None:
        return 0
    rows = read_dataset(spark, uri, [date])
    # Materialized before publishing deletes the files it was read from.
    kept = rows.where(F.col("path") != path).persist(StorageLevel.MEMORY_AND_DISK)
    before, after = rows.count(), kept.count()
    if before != after:
        # No grace for readers of the old version: it holds the erased image.
        write_partitions(spark, kept, uri, [date], keep_previous=False)
    kept.unpersist()
    return before - after


def erase_image(spark: SparkSession, layout: Layout, s3: Any, path: str) -> dict[str, Any]:
    bucket, key = split_uri(path)
    match = re.search(RAW_DATE_PATTERN, key)
    if bucket != layout.bucket or not match or not key.startswith(layout.raw_prefix()):
        raise ValueError(f"not a raw image of this pipeline: {path}")
    date, path = match[1], f"s3://{bucket}/{key}"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    removed = {
        name: _without(spark, uri, date, path)
        for name, uri in (
            ("features", layout.features_uri()),
            ("rejects", layout.rejects_uri()),
            ("reduced", layout.reduced_uri()),
        )
    }
    s3.delete_object(Bucket=bucket, Key=key)
    write_manifest(s3, layout, date, list_manifest(s3, layout, date))
    record_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    record = {
        "erased_at": dt.datetime.now(dt.UTC).isoformat(),
        "path": path,
        "sha256": hashlib.sha256(body).hexdigest(),
        "upload_date": date,
        "rows_removed": removed,
    }
    put_json(s3, layout.bucket, layout.erasure_record_key(record_id), record)
    return record
