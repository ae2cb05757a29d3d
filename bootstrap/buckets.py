"""Bucket set-up: every bucket in an EU region, encrypted by default, private, with lifecycle rules.

python -m bootstrap.buckets create      the data bucket and, if set, the EMR staging bucket
"""

from __future__ import annotations

import sys
from typing import Any

from bootstrap import one_line_errors
from spark.layout import PUBLISHED_DATASETS, STAGING, Layout
from spark.settings import Settings, require_eu_region
from spark.storage import s3_client

STAGING_RETENTION_DAYS = 14  # step files, code packages and EMR logs: for debugging, not history
ABANDONED_WRITE_DAYS = 2  # what a failed write left staged (spark.publish); runs take hours


def lifecycle_rules(expire_prefixes: dict[str, int]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "ID": "abort-incomplete-multipart-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        }
    ]
    for prefix, days in sorted(expire_prefixes.items()):
        rules.append(
            {
                "ID": f"expire-{prefix.strip('/').replace('/', '-')}",
                "Status": "Enabled",
                "Filter": {"Prefix": prefix.strip("/") + "/"},
                "Expiration": {"Days": days},
            }
        )
    return rules


def ensure_bucket(
    client: Any, bucket: str, region: str, expire_prefixes: dict[str, int] | None = None
) -> bool:
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
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules(expire_prefixes or {})}
    )
    return created


def pipeline_expiry(settings: Settings) -> dict[str, int]:
    layout = Layout(settings.bucket, settings.prefix)
    return {layout.key(dataset, STAGING): ABANDONED_WRITE_DAYS for dataset in PUBLISHED_DATASETS}


def ensure_pipeline_bucket(settings: Settings) -> bool:
    client = s3_client(settings)
    return ensure_bucket(client, settings.bucket, settings.region, pipeline_expiry(settings))


def ensure_all_buckets(settings: Settings) -> dict[str, bool]:
    """The data bucket, and the staging bucket whose staging prefix expires."""
    client = s3_client(settings)
    created = {settings.bucket: ensure_pipeline_bucket(settings)}
    if settings.staging_bucket:
        expire = {settings.staging_prefix: STAGING_RETENTION_DAYS}
        created[settings.staging_bucket] = ensure_bucket(
            client, settings.staging_bucket, settings.region, expire
        )
    return created


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["create"]:
        print("usage: python -m bootstrap.buckets create", file=sys.stderr)
        return 2
    for bucket, created in ensure_all_buckets(Settings.load()).items():
        print(f"s3://{bucket} {'created' if created else 'already there'}; encrypted, private")
    return 0


if __name__ == "__main__":
    sys.exit(main())
