"""Table maintenance as a Dagster job: small files compacted, old snapshots and abandoned
staged writes expired, unreferenced files deleted; what it did, as metadata."""

import dagster as dg
import pytest

from fruits_assets import names
from fruits_assets.assets import image_features, raw_images
from fruits_assets.definitions import defs
from fruits_assets.maintenance import MAINTENANCE_JOB, table_maintenance_job
from spark import tables
from spark.layout import PARTITION_COLUMN, split_uri
from spark.storage import list_keys

pytestmark = pytest.mark.slow
D1, D2 = "2026-11-05", "2026-11-06"


def data_files_per_date(spark, target: tables.Table) -> dict[str, int]:
    """The data files `main` references, per date."""
    rows = spark.sql(
        f"SELECT partition.{PARTITION_COLUMN} AS date, count(*) AS files "
        f"FROM {target.qualified}.files WHERE content = 0 GROUP BY 1"
    ).collect()
    return {r["date"]: r["files"] for r in rows}


def split_into_small_files(spark, target: tables.Table, date: str) -> None:
    """Rewrite a date's rows on `main` one file per row, as a run of many small tasks would
    (the pipeline's own writes cluster a date into one task): something to compact."""
    rows = tables.read(spark, target, [date])
    with tables._SESSION_WRITES:  # on `main`, not under another run's WAP id
        rows.repartitionByRange(rows.count(), "path").writeTo(target.qualified).option(
            "distribution-mode", "none"
        ).overwritePartitions()


def run_maintenance(asset_config, asset_resources, instance, retention_hours: float):
    asset_config.update(snapshot_retention_hours=retention_hours, write_grace_hours=retention_hours)
    job = dg.Definitions(jobs=[table_maintenance_job], resources=asset_resources())
    return job.get_job_def(MAINTENANCE_JOB).execute_in_process(instance=instance)


def observed(result) -> dict[dg.AssetKey, dg.AssetObservation]:
    return {o.asset_key: o for o in result.asset_observations_for_node("maintain_tables")}


def test_the_job_compacts_expires_and_removes_orphans(
    asset_layout, asset_config, asset_resources, upload_sample, run_assets, spark, s3
) -> None:
    upload_sample(asset_layout, [D1, D2], per_date=6, broken=False)
    instance = dg.DagsterInstance.ephemeral()
    for dates in ([D1], [D2], [D1]):  # three commits
        assert run_assets(dates, assets=[raw_images, image_features], instance=instance).success
    features = tables.table(asset_layout, tables.FEATURES)
    split_into_small_files(spark, features, D1)
    published = sorted(tuple(r) for r in tables.read(spark, features).select("path").collect())
    abandoned = tables.stage(spark, features, tables.read(spark, features), [D1])  # a dead run
    before = tables.snapshots(spark, features)
    small = data_files_per_date(spark, features)
    assert small[D1] >= 5 and small[D2] == 1  # 5: what rewrite_data_files compacts at least

    # Retention and write grace of an hour: every snapshot is younger, none goes.
    young = run_maintenance(asset_config, asset_resources, instance, retention_hours=1)

    assert young.success
    assert data_files_per_date(spark, features) == {D1: 1, D2: 1}
    done = observed(young)[names.IMAGE_FEATURES].metadata[names.MAINTENANCE].value
    assert done["compaction"]["rewritten_data_files_count"] == small[D1]
    assert done["compaction"]["added_data_files_count"] == 1
    assert done["expired"] == {}
    kept = {s.snapshot_id for s in tables.snapshots(spark, features)}
    assert {s.snapshot_id for s in before} < kept  # all of them, and the compaction's
    assert tables.snapshot_exists(spark, features, abandoned.snapshot_id)  # may still publish

    # Retention and write grace of 0: all but `main`'s head go.
    result = run_maintenance(asset_config, asset_resources, instance, retention_hours=0)

    assert result.success
    assert not tables.snapshot_exists(spark, features, abandoned.snapshot_id)
    assert len(tables.snapshots(spark, features)) == 1  # the current one stays
    after = sorted(tuple(r) for r in tables.read(spark, features).select("path").collect())
    assert after == published  # readers see the same rows
    # No reduced table yet; the PCA statistics (written with each date's features) too: the
    # sums of D1's first commit went with their snapshot.
    assert set(observed(result)) == {names.IMAGE_FEATURES, names.PCA_MODEL}
    assert len(tables.snapshots(spark, tables.statistics_table(asset_layout))) == 1
    metadata = observed(result)[names.IMAGE_FEATURES].metadata
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
