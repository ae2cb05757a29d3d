"""What a run shows while Spark works: progress lines in the run log, the Spark UI's link.

Every line carries the run id and the partitions in logfmt (key=value), so that a user can
grep a run's lines, a partition's or a stage's, in the Dagster UI or in the compute logs.
"""

import dagster as dg
from pyspark.sql import SparkSession

from fruits_assets import names
from spark.progress import Report, logfmt


def partitions_field(context: dg.AssetExecutionContext) -> str:
    if not context.has_partition_key_range:
        return "unpartitioned"
    keys = context.partition_keys
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"


def progress_to_run_log(context: dg.AssetExecutionContext) -> Report:
    prefix = logfmt(run_id=context.run.run_id, asset=context.asset_key.to_user_string())
    return lambda line: context.log.info(f"{prefix} {line}")


def label_spark_jobs(context: dg.AssetExecutionContext, session: SparkSession) -> None:
    """Spark's UI and logs name the Dagster run and partitions of each job."""
    session.sparkContext.setJobDescription(
        logfmt(run_id=context.run.run_id, partitions=partitions_field(context))
    )


def spark_ui_metadata(session: SparkSession, deployment: str) -> dict[str, dg.MetadataValue]:
    """Locally, a link to the Spark UI (alive while the run's Spark session is)."""
    url = session.sparkContext.uiWebUrl
    if deployment != "local" or not url:
        return {}
    return {names.SPARK_UI: dg.MetadataValue.url(url)}
