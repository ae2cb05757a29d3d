"""Assembles the Dagster definitions; the resources are the current deployment's
(fruits_assets.deployments: FRUITS_DEPLOYMENT, default local)."""

from collections.abc import Mapping

import dagster as dg

from fruits_assets.assets import image_features, pca_model, raw_images, reduced_features
from fruits_assets.deployments import current_deployment, resources_for
from fruits_assets.erasure import erase_image_job
from fruits_assets.feature_quality import automation_conditions, feature_quality
from fruits_assets.maintenance import table_maintenance_job, table_maintenance_schedule
from fruits_assets.sensors import ingest_job, new_uploads, pca_job, pca_refit_policy

# The feature pipeline, each asset audited before it publishes; then the reports on its output.
PIPELINE_ASSETS = [raw_images, image_features, pca_model, reduced_features]
REPORT_ASSETS = [feature_quality]


def definitions_for(deployment: str, environ: Mapping[str, str] | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[*PIPELINE_ASSETS, *REPORT_ASSETS],
        jobs=[ingest_job, pca_job, erase_image_job, table_maintenance_job],
        sensors=[new_uploads, pca_refit_policy, automation_conditions],
        schedules=[table_maintenance_schedule],
        resources=resources_for(deployment, environ),
        # One process per run: the Spark session and the model are shared by every step.
        executor=dg.in_process_executor,
    )


defs = definitions_for(current_deployment())
