"""GDPR erasure as a Dagster job: launched from the UI (Jobs -> erase_image -> Launchpad), its
run, with the request as run config and the audit record as metadata, is the audit trail.

The same operation as `python -m bootstrap.aws.erase` (spark.erasure): the image leaves raw/
and every table derived from it, their history and unreferenced files included. On EMR the op
runs as a step, like the Spark assets.
"""

import dagster as dg

from fruits_assets import names
from fruits_assets.assets import StepLauncherParam
from fruits_assets.resources import FruitsConfig, SparkResource
from spark.erasure import erase_image, find_by_sha256
from spark.storage import preflight
from spark.tables import FEATURES, REDUCED

ERASE_JOB = "erase_image"
# The assets whose partition the erasure rewrites, with the table of each it removes rows
# from: each gets an observation in its history (raw_images loses the image itself).
ERASED_FROM = {
    names.RAW_IMAGES: None,
    names.IMAGE_FEATURES: FEATURES,
    names.REDUCED_FEATURES: REDUCED,
}


class ErasureRequest(dg.Config):
    """Which image to erase: its s3:// path, or the SHA-256 of its bytes (one of the two)."""

    path: str = ""
    sha256: str = ""


@dg.op
def erase(
    context: dg.OpExecutionContext,
    config: ErasureRequest,
    fruits: FruitsConfig,
    pyspark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> None:
    if bool(config.path) == bool(config.sha256):
        raise dg.Failure("give exactly one of `path` and `sha256`")
    s3, layout = fruits.s3(), fruits.layout()
    preflight(s3, fruits.settings())
    try:
        path = config.path or find_by_sha256(s3, layout, config.sha256)
        record = erase_image(
            pyspark.session_for(context, fruits),
            layout,
            s3,
            path,
            write_grace_hours=fruits.settings().write_grace_hours,
        )
    except ValueError as error:  # not this pipeline's image, or no image has that hash
        raise dg.Failure(str(error)) from None
    context.log.info(f"erased {record['path']}: {record['rows_removed']}")
    for asset, table in ERASED_FROM.items():
        removed = record["rows_removed"].get(table, 0) if table else 1
        context.log_event(
            dg.AssetObservation(
                asset_key=asset,
                partition=record["upload_date"],
                description=f"GDPR erasure of {record['path']}",
                metadata={
                    names.ERASED_PATH: record["path"],
                    names.ROWS_REMOVED: removed,
                    names.AUDIT_RECORD: dg.MetadataValue.json(record),
                },
            )
        )


@dg.job(name=ERASE_JOB, tags={"gdpr": "erasure"})
def erase_image_job() -> None:
    """GDPR right to erasure of one image (by path or by content hash), with its audit record."""
    erase()
