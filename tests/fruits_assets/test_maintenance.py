"""Table maintenance as a Dagster job: small files compacted, old snapshots and abandoned
staged writes expired, unreferenced files deleted; what it did, as metadata."""

import dagster as dg
import pytest

from fruits_assets import names
from fruits_assets.assets import image_features, raw_images
from fruits_assets.definitions import defs
from fruits_assets.maintenance import MAINTENANCE_JOB, table_maintenance_job
from spark import tables
from spark.layout import split_uri
from spark.storage import list_keys

pytestmark = pytest.mark.slow
D1, D2 = "2026-11-05", "2026-11-06"


def test_the_job_compacts_expires_and_removes_orphans(
    asset_layout, asset_config, asset_resources, upload_sample, run_assets, spark, s3
) -> None:
    upload_sample(asset_layout, [D1, D2], per_date=3, broken=False)
    instance = dg.DagsterInstance.ephemeral()
    for dates in ([D1], [D2], [D1]):  # three commits, small files
        assert run_assets(dates, assets=[raw_images, image_features], instance=instance).success
    features = tables.table(asset_layout, tables.FEATURES)
    published = sorted(tuple(r) for r in tables.read(spark, features).select("path").collect())
    abandoned = tables.stage(spark, features, tables.read(spark, features), [D1])  # a dead run
    asset_config.update(snapshot_retention_hours=0, write_grace_hours=0)
    job = dg.Definitions(jobs=[table_maintenance_job], resources=asset_resources())

    result = job.get_job_def(MAINTENANCE_JOB).execute_in_process(instance=instance)

    assert result.success
    assert not tables.snapshot_exists(spark, features, abandoned.snapshot_id)
    assert len(tables.snapshots(spark, features)) == 1  # the current one stays
    after = sorted(tuple(r) for r in tables.read(spark, features).select("path").collect())
    assert after == published  # readers see the same rows
    observed = {o.asset_key: o for o in result.asset_observations_for_node("maintain_tables")}
    # No reduced table yet; the PCA statistics (written with each date's features) too: the
    # sums of D1's first commit went with their snapshot.
    assert set(observed) == {names.IMAGE_FEATURES, names.PCA_MODEL}
    assert len(tables.snapshots(spark, tables.statistics_table(asset_layout))) == 1
    metadata = observed[names.IMAGE_FEATURES].metadata
    assert metadata[names.SNAPSHOTS_KEPT].value == 1
    assert metadata[names.MAINTENANCE].value["expired"]  # files deleted, by kind
    bucket, data = split_uri(features.location + "/data/")
    listed = {f"s3://{bucket}/{key}" for key in list_keys(s3, bucket, data)}
    files = spark.sql(f"SELECT file_path FROM {features.qualified}.files").collect()
    assert listed == {r["file_path"] for r in files}  # nothing unreferenced is left


def test_the_schedule_runs_daily() -> None:
    schedule = defs.get_schedule_def(f"{MAINTENANCE_JOB}_schedule")
    assert schedule.cron_schedule == "0 3 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
