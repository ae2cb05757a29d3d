"""What a run shows while Spark works: progress lines in the run log, the Spark UI's link.

Every line carries the run id and the partitions in logfmt (key=value), so that a user can
grep a run's lines, a partition's or a stage's, in the Dagster UI or in the compute logs.
"""

from typing import Any

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


def spark_metadata(session: SparkSession, deployment: str) -> dict[str, Any]:
    """The Spark application that did the work (its id finds its logs and history), and
    locally a link to its UI (alive while the run's Spark session is)."""
    found: dict[str, Any] = {names.SPARK_APPLICATION_ID: session.sparkContext.applicationId}
    url = session.sparkContext.uiWebUrl
    if deployment == "local" and url:
        found[names.SPARK_UI] = dg.MetadataValue.url(url)
    return found
