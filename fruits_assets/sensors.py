"""Sensors: new or changed uploads, and the PCA re-fit policy."""

import json
from datetime import UTC, datetime

import dagster as dg

from fruits_assets.assets import image_features, pca_model, raw_images
from fruits_assets.partitions import UPLOAD_DATES
from fruits_assets.resources import FruitsConfig
from spark.manifest import raw_fingerprints

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

    The cursor, {date: fingerprint of its keys, sizes and ETags}, holds only dates actually
    requested: a date outside the partitions (in the future, today, or before
    PARTITIONS_START) stays "changed" and is requested once it becomes a partition.
    """
    valid = set(UPLOAD_DATES.get_partition_keys(current_time=_now()))
    # Entries outside the partitions come from cursors written before skipped dates were left
    # out (or from a later PARTITIONS_START): dropped, so they are requested once in range.
    seen = {d: fp for d, fp in json.loads(context.cursor or "{}").items() if d in valid}
    current = raw_fingerprints(fruits.s3(), fruits.layout())
    changed = [d for d, fp in current.items() if seen.get(d) != fp]
    requested = [d for d in changed if d in valid]
    skipped = [d for d in changed if d not in valid]
    if skipped:
        context.log.warning(f"upload dates outside the partitions, not requested yet: {skipped}")
    # Dates since removed from S3 keep their entry: harmless, and at most one entry per date.
    cursor = seen | {d: current[d] for d in requested}
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"{d}:{current[d]}", partition_key=d) for d in requested
        ],
        cursor=json.dumps(cursor, sort_keys=True),
    )


@dg.sensor(job=pca_job, minimum_interval_seconds=300)
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
