"""New and changed uploads at a cost that follows the new work, not the history: which upload
dates have files, and a fingerprint of one date's files, for the `new_uploads` sensor (plain
boto3, no Dagster: the sensor only turns a scan into run requests)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from spark.layout import RAW_DATE_PATTERN, Layout

# The last SETTLE_DAYS partitions are listed in full at every tick: uploads that arrive after
# their day is over (clients' retries, clock skew) land there first. Older dates are re-listed
# AUDIT_DATES_PER_TICK at a time, in turn, so that a late upload into any date is noticed within
# (number of dates / AUDIT_DATES_PER_TICK) ticks while a tick's requests stay the same however
# long the history. A first tick over a long history lists at most NEW_DATES_PER_TICK unseen
# dates; the rest follow at the next ticks.
SETTLE_DAYS = 2
AUDIT_DATES_PER_TICK = 1
NEW_DATES_PER_TICK = 31


@dataclass
class UploadCursor:
    """The sensor's state: {date: fingerprint} of the dates requested, and the last date audited.

    Only dates actually requested have an entry: a date outside the partitions (in the future,
    today, or before PARTITIONS_START) stays "unseen" and is requested once it becomes one."""

    dates: dict[str, str] = field(default_factory=dict)
    audited: str = ""

    @classmethod
    def parse(cls, text: str | None, valid: set[str]) -> UploadCursor:
        data = json.loads(text or "{}")
        # Cursors written before the audit were a flat {date: fingerprint}.
        dates, audited = (data["dates"], data.get("audited", "")) if "dates" in data else (data, "")
        # Entries outside the partitions come from older cursors (or a later PARTITIONS_START):
        # dropped, so they are requested once in range.
        return cls({d: fp for d, fp in dates.items() if d in valid}, audited)

    def dump(self) -> str:
        return json.dumps({"dates": self.dates, "audited": self.audited}, sort_keys=True)


@dataclass(frozen=True)
class UploadScan:
    """One tick's outcome: the dates to request with their fingerprints, those skipped."""

    requested: dict[str, str]
    skipped: list[str]
    cursor: UploadCursor


def _pages(s3: Any, layout: Layout, **options: Any) -> Iterator[dict[str, Any]]:
    paginator = s3.get_paginator("list_objects_v2")
    yield from paginator.paginate(Bucket=layout.bucket, **options)


def date_folders(s3: Any, layout: Layout) -> list[str]:
    """The upload dates that have a folder under raw/: one LIST per 1,000 dates, whatever the
    number of objects under them (S3 rolls each folder up into one CommonPrefix)."""
    dates = set()
    for page in _pages(s3, layout, Prefix=layout.raw_prefix(), Delimiter="/"):
        for folder in page.get("CommonPrefixes", []):
            match = re.search(RAW_DATE_PATTERN, folder["Prefix"])
            if match:
                dates.add(match[1])
    return sorted(dates)


def date_fingerprint(s3: Any, layout: Layout, date: str) -> str:
    """Digest of one date's files' keys, sizes and ETags: changes when any file does. The same
    digest as the sensor's cursors before it listed per date, so those stay valid."""
    digest = hashlib.sha256()
    for page in _pages(s3, layout, Prefix=layout.raw_date_key(date)):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):  # folder markers are not files
                digest.update(f"{obj['Key']}\0{obj['Size']}\0{obj['ETag']}\n".encode())
    return digest.hexdigest()


def _next_audit(seen: Iterable[str], after: str, count: int, exclude: set[str]) -> list[str]:
    """The `count` seen dates after `after`, in turn (wrapping round), outside `exclude`."""
    candidates = sorted(d for d in seen if d not in exclude)
    ordered = [d for d in candidates if d > after] + [d for d in candidates if d <= after]
    return ordered[:count]


def scan_uploads(
    s3: Any,
    layout: Layout,
    cursor: UploadCursor,
    valid: set[str],
    settle_days: int = SETTLE_DAYS,
    audit_per_tick: int = AUDIT_DATES_PER_TICK,
    new_per_tick: int = NEW_DATES_PER_TICK,
) -> UploadScan:
    """List what one tick needs, not the history: the date folders, the unseen dates (at most
    `new_per_tick`), the last `settle_days` partitions, and `audit_per_tick` older dates in turn.
    """
    folders = date_folders(s3, layout)
    in_range = [d for d in folders if d in valid]
    skipped = [d for d in folders if d not in valid]
    unseen = [d for d in in_range if d not in cursor.dates][:new_per_tick]
    recent = set(sorted(valid)[-settle_days:]) if settle_days > 0 else set()
    # Only dates that still have a folder: one removed from S3 keeps its entry, unrequested.
    present = [d for d in in_range if d in cursor.dates]
    settling = [d for d in present if d in recent]
    audit = _next_audit(present, cursor.audited, audit_per_tick, set(settling))
    listed = {d: date_fingerprint(s3, layout, d) for d in [*unseen, *settling, *audit]}
    requested = {d: fp for d, fp in listed.items() if cursor.dates.get(d) != fp}
    # Dates since removed from S3 keep their entry: harmless, and at most one entry per date.
    updated = UploadCursor(cursor.dates | requested, audit[-1] if audit else cursor.audited)
    return UploadScan(requested, skipped, updated)
