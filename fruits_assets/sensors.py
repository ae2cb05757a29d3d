"""Sensors: new or changed uploads, and the PCA re-fit policy."""

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from fruits_assets.assets import image_features, pca_model, raw_images
from fruits_assets.partitions import UPLOAD_DATES
from fruits_assets.resources import FruitsConfig
from spark.layout import RAW_DATE_PATTERN, Layout

ingest_job = dg.define_asset_job(
    "ingest_upload_dates",
    selection=[raw_images, image_features],
    description="Manifest and features of upload dates; reduced_features follows by automation.",
)
pca_job = dg.define_asset_job("refit_pca", selection=[pca_model])

# The last SETTLE_DAYS partitions are listed in full at every tick: uploads that arrive after
# their day is over (clients' retries, clock skew) land there first. Older dates are re-listed
# AUDIT_DATES_PER_TICK at a time, in turn, so that a late upload into any date is noticed within
# (number of dates / AUDIT_DATES_PER_TICK) ticks while a tick's requests stay the same however
# long the history. A first tick over a long history lists at most NEW_DATES_PER_TICK unseen
# dates; the rest follow at the next ticks.
SETTLE_DAYS = 2
AUDIT_DATES_PER_TICK = 1
NEW_DATES_PER_TICK = 31


def _now() -> datetime:
    """The sensor's clock: tests replace it to move "today" and so the last valid partition."""
    return datetime.now(UTC)


@dataclass
class UploadCursor:
    """The sensor's state: {date: fingerprint} of the dates requested, and the last date audited.

    Only dates actually requested have an entry: a date outside the partitions (in the future,
    today, or before PARTITIONS_START) stays "unseen" and is requested once it becomes one."""

    dates: dict[str, str] = field(default_factory=dict)
    audited: str = ""

    @classmethod
    def parse(cls, text: str | None, valid: set[str]) -> "UploadCursor":
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
    digest as spark.manifest.raw_fingerprints, so cursors written before stay valid."""
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


@dg.sensor(
    job=ingest_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def new_uploads(context: dg.SensorEvaluationContext, fruits: FruitsConfig) -> dg.SensorResult:
    """One run per upload date whose files are new or changed since the sensor last requested it.

    A tick's S3 requests follow the new work, not the history (scan_uploads): late uploads
    into a date already requested are noticed at the next tick in the last SETTLE_DAYS dates,
    within one audit round (a date per tick) before that.
    """
    valid = set(UPLOAD_DATES.get_partition_keys(current_time=_now()))
    cursor = UploadCursor.parse(context.cursor, valid)
    scan = scan_uploads(fruits.s3(), fruits.layout(), cursor, valid)
    if scan.skipped:
        context.log.warning(
            f"upload dates outside the partitions, not requested yet: {scan.skipped}"
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"{d}:{fp}", partition_key=d) for d, fp in scan.requested.items()
        ],
        cursor=scan.cursor.dump(),
    )


# Running by default: with pca_refit_after 0 (the default) each tick only skips, and setting
# pca_refit_after is then enough to re-fit.
@dg.sensor(job=pca_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def pca_refit_policy(
    context: dg.SensorEvaluationContext, fruits: FruitsConfig
) -> dg.SensorResult | dg.SkipReason:
    """Re-fit the PCA once FRUITS_PCA_REFIT_AFTER new feature partitions have arrived (0: never)."""
    after = fruits.settings().pca_refit_after
    if after <= 0:
        return dg.SkipReason("FRUITS_PCA_REFIT_AFTER is 0: the PCA is re-fitted on demand only")
    instance = context.instance
    last_fit = instance.get_latest_materialization_event(pca_model.key)
    since = last_fit.timestamp if last_fit else 0.0
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=image_features.key, after_timestamp=since), limit=10_000
    ).records
    new_partitions = {r.partition_key for r in records if r.partition_key}
    if len(new_partitions) < after:
        return dg.SkipReason(
            f"{len(new_partitions)} new feature partitions since the last fit; waiting for {after}"
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"pca-after-{max(new_partitions)}-{len(new_partitions)}")
        ]
    )
