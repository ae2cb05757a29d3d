"""Bucket set-up: every bucket is created in an EU region, encrypted, and private."""

from __future__ import annotations

from typing import Any

from spark.settings import Settings, require_eu_region
from spark.storage import s3_client


def ensure_bucket(client: Any, bucket: str, region: str) -> bool:
    """Create `bucket` in `region` unless it exists; True when it was created."""
    require_eu_region(region, what=f"bucket {bucket} region")
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    created = bucket not in existing
    if created:
        client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
        )
    location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    require_eu_region(location or "us-east-1", what=f"bucket {bucket} location")
    client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    return created


def ensure_pipeline_bucket(settings: Settings) -> bool:
    return ensure_bucket(s3_client(settings), settings.bucket, settings.region)
