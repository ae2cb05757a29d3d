"""The manifest of an upload date: every raw file under it, listed from S3 (no Spark needed).

The manifest is the feature step's input: it processes exactly these files (path, size, ETag,
time of upload).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spark.layout import PARTITION_COLUMN, Layout, label_of
from spark.storage import SSE

MANIFEST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        (PARTITION_COLUMN, pa.string()),
        ("label", pa.string()),
        ("size_bytes", pa.int64()),
        ("etag", pa.string()),
        # With the ETag, names the upload (tombstones: a later upload at the path is new).
        ("last_modified", pa.string()),
    ]
)


def _raw_objects(s3: Any, layout: Layout, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=layout.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            # Every upload counts, hidden names and folders too; only folder markers are not files.
            if not obj["Key"].endswith("/"):
                yield obj


def list_manifest(s3: Any, layout: Layout, date: str) -> list[dict[str, Any]]:
    return [
        {
            "path": f"s3://{layout.bucket}/{obj['Key']}",
            PARTITION_COLUMN: date,
            "label": label_of(obj["Key"]),
            "size_bytes": obj["Size"],
            "etag": obj["ETag"].strip('"'),
            "last_modified": obj["LastModified"].isoformat(),
        }
        for obj in _raw_objects(s3, layout, layout.raw_date_key(date))
    ]


def write_manifest(s3: Any, layout: Layout, date: str, rows: list[dict[str, Any]]) -> str:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), buffer)
    key = layout.manifest_key(date)
    s3.put_object(Bucket=layout.bucket, Key=key, Body=buffer.getvalue(), **SSE)
    return f"s3://{layout.bucket}/{key}"


def write_manifests(s3: Any, layout: Layout, dates: list[str]) -> dict[str, int]:
    """List and write the manifest of each date; files per date."""
    counts = {}
    for date in dates:
        rows = list_manifest(s3, layout, date)
        write_manifest(s3, layout, date, rows)
        counts[date] = len(rows)
    return counts


def read_manifest(s3: Any, layout: Layout, date: str) -> pa.Table:
    body = s3.get_object(Bucket=layout.bucket, Key=layout.manifest_key(date))["Body"].read()
    return pq.read_table(io.BytesIO(body))
