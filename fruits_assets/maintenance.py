"""Table maintenance as a Dagster job, on a daily schedule: for each Iceberg table, compact
small files (not the PCA statistics: a file per date already), expire snapshots past
`snapshot_retention_hours` (and staged ones that runs abandoned longer than
`write_grace_hours` ago), and delete files no snapshot references. Its results are metadata:
an observation on each table's asset, and the op's output.
"""

import datetime as dt

import dagster as dg

from fruits_assets import names
from fruits_assets.assets import StepLauncherParam
from fruits_assets.resources import FruitsConfig, SparkResource
from spark import tables
from spark.layout import Layout
from spark.tables import FEATURES, REDUCED

MAINTENANCE_JOB = "table_maintenance"


def maintained(layout: Layout) -> list[tuple[tables.Table, dg.AssetKey, bool]]:
    """Each table, the asset its observation goes to, and whether it is compacted."""
    return [
        (tables.table(layout, FEATURES), names.IMAGE_FEATURES, True),
        (tables.table(layout, REDUCED), names.REDUCED_FEATURES, True),
        # Re-written dates leave their old sums (MBs each) to expiry here.
        (tables.statistics_table(layout), names.PCA_MODEL, False),
    ]


@dg.op
def maintain_tables(
    context: dg.OpExecutionContext,
    fruits: FruitsConfig,
    pyspark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> dg.Output[dict]:
    settings, layout = fruits.settings(), fruits.layout()
    session = pyspark.session_for(context, fruits)
    now = dt.datetime.now(dt.UTC)
    grace = now - dt.timedelta(hours=settings.write_grace_hours)
    results = {}
    for target, asset, compacted in maintained(layout):
        if not tables.exists(session, target):
            continue
        compaction = tables.compact(session, target, settings.target_file_mb) if compacted else {}
        result = {
            "compaction": compaction,
            "expired": tables.expire_unreferenced(
                session,
                target,
                older_than=now - dt.timedelta(hours=settings.snapshot_retention_hours),
                keep_staged_after=grace,
            ),
            "orphan_files_deleted": tables.remove_orphan_files(session, target, grace),
            "snapshots_kept": len(tables.snapshots(session, target)),
        }
        results[target.name] = result
        context.log_event(
            dg.AssetObservation(
                asset_key=asset,
                description=f"table maintenance of {target.qualified}",
                metadata={
                    names.TABLE: target.qualified,
                    names.MAINTENANCE: dg.MetadataValue.json(result),
                    names.SNAPSHOTS_KEPT: result["snapshots_kept"],
                    names.ORPHAN_FILES_DELETED: result["orphan_files_deleted"],
                },
            )
        )
    return dg.Output(results, metadata={names.MAINTENANCE: dg.MetadataValue.json(results)})


@dg.job(name=MAINTENANCE_JOB, tags={"maintenance": "iceberg"})
def table_maintenance_job() -> None:
    """Compaction, snapshot expiry and orphan-file removal of the pipeline's Iceberg tables."""
    maintain_tables()


# Daily, at night (UTC): expiry and orphan removal never touch what runs still write (the
# write grace), so it may overlap a run.
table_maintenance_schedule = dg.ScheduleDefinition(
    job=table_maintenance_job,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
