"""Bucket set-up: every bucket in an EU region, encrypted by default, private, with lifecycle rules.

python -m bootstrap.aws.buckets create      the data bucket and, if set, the EMR staging bucket
"""

from __future__ import annotations

import sys
from typing import Any

from bootstrap import cli
from fruits_assets.deployments import current_settings
from spark.layout import STAGING_BOOTSTRAP, STAGING_CODE, STAGING_LOGS
from spark.settings import Settings, require_eu_region
from spark.storage import s3_client

STAGING_RETENTION_DAYS = 14  # step files and code packages: for debugging, not history
LOG_RETENTION_DAYS = 30  # EMR's cluster and step logs
HEX = "0123456789abcdef"


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
                "Filter": {"Prefix": prefix},
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
    """Nothing in the data bucket expires by age: the tables' files go when Iceberg no longer
    references them (table maintenance), not by a rule that cannot see the references."""
    return {}


def staging_expiry(staging_prefix: str) -> dict[str, int]:
    """Scratch only: code packages, logs, and the step files Dagster's launcher writes under
    <staging>/<run id>/. Never <staging>/bootstrap/, which every node re-reads when it starts
    (managed scaling adds nodes any day). Lifecycle filters cannot exclude a prefix, but run ids
    are UUIDs: one rule per leading hex digit, two digits where a kept name starts with one."""
    root = staging_prefix.strip("/") + "/" if staging_prefix.strip("/") else ""
    named = (STAGING_BOOTSTRAP, STAGING_CODE, STAGING_LOGS)
    runs = [
        first + second
        for first in HEX
        for second in (HEX if any(n.startswith(first) for n in named) else [""])
    ]
    expiry = {f"{root}{run}": STAGING_RETENTION_DAYS for run in runs}
    return expiry | {
        f"{root}{STAGING_CODE}/": STAGING_RETENTION_DAYS,
        f"{root}{STAGING_LOGS}/": LOG_RETENTION_DAYS,
    }


def expiry_days(rules: list[dict[str, Any]], key: str) -> int | None:
    """After how many days the lifecycle `rules` expire `key` (None: never)."""
    days = [
        r["Expiration"]["Days"]
        for r in rules
        if "Expiration" in r and r["Status"] == "Enabled" and key.startswith(r["Filter"]["Prefix"])
    ]
    return min(days) if days else None


def bucket_expiry(settings: Settings) -> dict[str, dict[str, int]]:
    """Per bucket, the prefixes that expire and after how many days."""
    expiry = {settings.bucket: pipeline_expiry(settings)}
    if settings.staging_bucket:
        staging = staging_expiry(settings.staging_prefix)
        expiry[settings.staging_bucket] = expiry.get(settings.staging_bucket, {}) | staging
    return expiry


def ensure_pipeline_bucket(settings: Settings) -> bool:
    client = s3_client(settings)
    return ensure_bucket(client, settings.bucket, settings.region, pipeline_expiry(settings))


def ensure_all_buckets(settings: Settings) -> dict[str, bool]:
    """The data bucket, and the staging bucket whose scratch expires."""
    client = s3_client(settings)
    return {
        bucket: ensure_bucket(client, bucket, settings.region, expire)
        for bucket, expire in bucket_expiry(settings).items()
    }


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.aws.buckets", __doc__)
    parser.add_argument("command", choices=["create"])
    parser.parse_args(argv)
    for bucket, created in ensure_all_buckets(current_settings()).items():
        print(f"s3://{bucket} {'created' if created else 'already there'}; encrypted, private")
    return 0


if __name__ == "__main__":
    sys.exit(main())
