"""Sensors: new or changed uploads, and the PCA re-fit policy."""

import json

import dagster as dg

from fruits_assets.assets import image_features, pca_model, raw_images
from fruits_assets.partitions import UPLOAD_DATES
from fruits_assets.resources import FruitsResource
from spark.manifest import raw_fingerprints

ingest_job = dg.define_asset_job(
    "ingest_upload_dates",
    selection=[raw_images, image_features],
    description="Manifest and features of upload dates; reduced_features follows by automation.",
)
pca_job = dg.define_asset_job("refit_pca", selection=[pca_model])


@dg.sensor(
    job=ingest_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def new_uploads(context: dg.SensorEvaluationContext, fruits: FruitsResource) -> dg.SensorResult:
    """One run per upload date whose files are new or changed since the sensor last saw them.

    The cursor keeps a fingerprint (keys, sizes, ETags) of every date already requested.
    """
    seen: dict[str, str] = json.loads(context.cursor or "{}")
    current = raw_fingerprints(fruits.s3(), fruits.layout())
    valid = set(UPLOAD_DATES.get_partition_keys(dynamic_partitions_store=context.instance))
    changed = [d for d, fp in current.items() if seen.get(d) != fp]
    requests = [
        dg.RunRequest(run_key=f"{d}:{current[d]}", partition_key=d) for d in changed if d in valid
    ]
    skipped = [d for d in changed if d not in valid]
    if skipped:
        context.log.warning(f"upload dates outside the partitions, not requested: {skipped}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(current, sort_keys=True))


@dg.sensor(job=pca_job, minimum_interval_seconds=300)
def pca_refit_policy(
    context: dg.SensorEvaluationContext, fruits: FruitsResource
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
