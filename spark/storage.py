"""boto3 access to the pipeline's S3 storage, configured from Settings."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config

from spark.settings import Settings

# Server-side encryption requested on every object the pipeline writes.
SSE = {"ServerSideEncryption": "AES256"}


def s3_client(settings: Settings) -> Any:
    return boto3.client(
        "s3",
        region_name=settings.region,
        endpoint_url=settings.s3_endpoint,
        config=Config(
            s3={"addressing_style": "path" if settings.s3_endpoint else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def put_json(client: Any, bucket: str, key: str, document: dict[str, Any]) -> None:
    body = json.dumps(document, indent=2, sort_keys=True).encode()
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **SSE)


def get_json(client: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys
