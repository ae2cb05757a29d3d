"""Sensors: new or changed uploads, and the PCA re-fit policy."""

from datetime import UTC, datetime

import dagster as dg

from fruits_assets.assets import image_features, pca_model, raw_images
from fruits_assets.partitions import UPLOAD_DATES
from fruits_assets.resources import FruitsConfig
from spark.uploads import UploadCursor, scan_uploads

ingest_job = dg.define_asset_job(
    "ingest_upload_dates",
    selection=[raw_images, image_features],
    description="Manifest and features of upload dates; reduced_features follows by automation.",
)
pca_job = dg.define_asset_job("refit_pca", selection=[pca_model])


def _now() -> datetime:
    """The sensor's clock: tests replace it to move "today" and so the last valid partition."""
    return datetime.now(UTC)


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
