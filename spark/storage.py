"""boto3 access to the pipeline's S3 storage, configured from Settings."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from spark.settings import ConfigError, Settings

# Server-side encryption requested on every object the pipeline writes.
SSE = {"ServerSideEncryption": "AES256"}


def new_s3_client(
    region: str,
    endpoint: str | None,
    *,
    max_attempts: int = 3,
    connections: int = 10,
    session: Any = None,
) -> Any:
    """A boto3 S3 client; path-style addressing for a local endpoint. Credentials come from
    `session` (a boto3.Session) when given, else from boto3's default chain."""
    return (session or boto3).client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        config=Config(
            # SigV4 and the bucket's regional host, always: presigned URLs are otherwise SigV2
            # in older regions (refused for newer buckets and KMS-encrypted objects) and name
            # the global host, which redirects a new bucket's requests.
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint else "virtual"},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=connections,
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def s3_client(settings: Settings, session: Any = None) -> Any:
    return new_s3_client(settings.region, settings.s3_endpoint, session=session)


def preflight(client: Any, settings: Settings) -> None:
    """Fail fast, in one line, when S3 cannot be reached or the bucket is missing."""
    where = settings.s3_endpoint or f"AWS S3 in {settings.region}"
    try:
        client.head_bucket(Bucket=settings.bucket)
    except client.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket"):
            raise ConfigError(f"bucket {settings.bucket!r} does not exist at {where}") from None
        raise ConfigError(f"cannot use bucket {settings.bucket!r} at {where}: {code}") from None
    except (BotoCoreError, OSError) as error:
        raise ConfigError(f"cannot reach S3 at {where}: {type(error).__name__}") from None


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
