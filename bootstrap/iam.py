"""The least-privilege IAM policy of the pipeline: only its buckets and prefixes.

    python -m bootstrap.iam > fruits-policy.json

Attach it to the EMR instance profile's role (and to whoever runs Dagster). Read-only on raw/,
read-write on what the pipeline writes (spark.layout.WRITTEN_PREFIXES) and on the EMR staging
prefix (code, bootstrap, logs, step files).
"""

from __future__ import annotations

import fnmatch
import json
import sys
from typing import Any

from spark.layout import RAW, WRITTEN_PREFIXES, Layout
from spark.settings import Settings

READ = ["s3:GetObject"]
WRITE = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]


def _objects(bucket: str, key_prefix: str) -> str:
    # "prefix*", not "prefix/*": EMRFS and S3A also touch the folder key itself and EMRFS's
    # "prefix_$folder$" marker.
    return f"arn:aws:s3:::{bucket}/{key_prefix.strip('/')}*"


def _list(bucket: str, root: str, prefixes: list[str]) -> dict[str, Any]:
    root = root.strip("/")
    allowed = [f"{p.strip('/')}*" for p in prefixes] + ([root, f"{root}/"] if root else [])
    return {
        "Sid": "List" + "".join(c for c in bucket.title() if c.isalnum()),
        "Effect": "Allow",
        "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
        "Resource": f"arn:aws:s3:::{bucket}",
        "Condition": {"StringLike": {"s3:prefix": allowed}},
    }


def policy(settings: Settings) -> dict[str, Any]:
    layout = Layout(settings.bucket, settings.prefix)
    written = [layout.key(p) for p in WRITTEN_PREFIXES]
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadRawImages", "Effect": "Allow", "Action": READ,
         "Resource": [_objects(settings.bucket, layout.key(RAW))]},
        {"Sid": "WritePipelineOutputs", "Effect": "Allow", "Action": WRITE,
         "Resource": [_objects(settings.bucket, p) for p in written]},
    ]  # fmt: skip
    listed = {settings.bucket: [layout.key(RAW), *written]}
    if settings.staging_bucket:
        statements.append(
            {"Sid": "EmrStaging", "Effect": "Allow", "Action": WRITE,
             "Resource": [_objects(settings.staging_bucket, settings.staging_prefix)]}
        )  # fmt: skip
        listed.setdefault(settings.staging_bucket, []).append(settings.staging_prefix)
    statements += [
        _list(bucket, settings.prefix if bucket == settings.bucket else "", prefixes)
        for bucket, prefixes in listed.items()
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def allows(document: dict[str, Any], action: str, bucket: str, key: str) -> bool:
    """Whether `document` allows `action` on s3://bucket/key (Allow statements, * wildcards)."""
    arn = f"arn:aws:s3:::{bucket}/{key}"
    for statement in document["Statement"]:
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        if action in statement["Action"] and any(fnmatch.fnmatchcase(arn, r) for r in resources):
            return True
    return False


if __name__ == "__main__":
    print(json.dumps(policy(Settings.load()), indent=2))
    sys.exit(0)
