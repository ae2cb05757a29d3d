"""One lock per upload date, so that two publications (or a publication and an erasure) of the
same date never interleave, whatever runs them: Dagster runs over overlapping ranges, the
erasure command, a second deployment.

A lock is an S3 object created with a conditional PUT (If-None-Match: *), which S3 makes
atomic. It expires, so a writer that died leaves a date locked for `ttl_s` at most; a waiting
writer takes an expired lock over with a PUT conditional on the dead holder's ETag. No
library does this over S3 alone (DynamoDB-based locks need another service), hence this module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from spark.layout import Layout

# A publication holds its dates for moves and pointer writes only, never for Spark jobs.
DEFAULT_TTL_S = 900.0
DEFAULT_WAIT_S = 1800.0
CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


class LockTimeout(TimeoutError):
    """A date stayed locked by another writer for longer than the caller would wait."""


def _is_conflict(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code", "") in CONFLICT_CODES


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _body(owner: str, ttl_s: float) -> bytes:
    expires = _now() + dt.timedelta(seconds=ttl_s)
    return json.dumps({"owner": owner, "expires_at": expires.isoformat()}).encode()


def _try_take(s3: Any, bucket: str, key: str, owner: str, ttl_s: float) -> str | None:
    """The new lock's ETag, or None while another writer holds an unexpired lock."""
    try:
        return s3.put_object(Bucket=bucket, Key=key, Body=_body(owner, ttl_s), IfNoneMatch="*")[
            "ETag"
        ]
    except ClientError as error:
        if not _is_conflict(error):
            raise
    try:
        held = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        return None  # released meanwhile: try again at once
    holder = json.loads(held["Body"].read())
    if dt.datetime.fromisoformat(holder["expires_at"]) > _now():
        return None
    try:  # expired: take it over, unless another waiter just did
        return s3.put_object(
            Bucket=bucket, Key=key, Body=_body(owner, ttl_s), IfMatch=held["ETag"]
        )["ETag"]
    except ClientError as error:
        if _is_conflict(error) or error.response.get("Error", {}).get("Code") == "NoSuchKey":
            return None
        raise


def _release(s3: Any, bucket: str, key: str, etag: str) -> None:
    # Conditional: a lock taken over after expiry belongs to its new holder.
    with contextlib.suppress(ClientError):
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)


def holder(s3: Any, layout: Layout, date: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=layout.bucket, Key=layout.lock_key(date))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


@contextlib.contextmanager
def date_locks(
    s3: Any,
    layout: Layout,
    dates: Sequence[str],
    owner: str = "",
    *,
    ttl_s: float = DEFAULT_TTL_S,
    wait_s: float = DEFAULT_WAIT_S,
    poll_s: float = 0.5,
) -> Iterator[None]:
    """Hold the locks of `dates`, taken in date order so that two writers never deadlock."""
    owner = owner or uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    held: list[tuple[str, str]] = []
    try:
        for date in sorted(set(dates)):
            key = layout.lock_key(date)
            while (etag := _try_take(s3, layout.bucket, key, owner, ttl_s)) is None:
                if time.monotonic() > deadline:
                    raise LockTimeout(
                        f"upload date {date} is locked by {holder(s3, layout, date)}; "
                        f"waited {wait_s:.0f} s (s3://{layout.bucket}/{key})"
                    )
                time.sleep(poll_s)
            held.append((key, etag))
        yield
    finally:
        for key, etag in reversed(held):
            _release(s3, layout.bucket, key, etag)
