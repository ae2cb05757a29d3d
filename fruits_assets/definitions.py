"""Assembles the Dagster definitions; resources are chosen by FRUITS_DEPLOYMENT (default local)."""

import dagster as dg

from fruits_assets.assets import image_features, pca_model, raw_images, reduced_features
from fruits_assets.erasure import erase_image_job
from fruits_assets.feature_quality import feature_quality
from fruits_assets.resources import resources_for
from fruits_assets.sensors import ingest_job, new_uploads, pca_job, pca_refit_policy
from spark.settings import load_deployment_env

deployment = load_deployment_env()

defs = dg.Definitions(
    assets=[raw_images, image_features, pca_model, reduced_features, feature_quality],
    jobs=[ingest_job, pca_job, erase_image_job],
    sensors=[new_uploads, pca_refit_policy],
    resources=resources_for(deployment),
    # One process per run: the Spark session and the model are shared by every step.
    executor=dg.in_process_executor,
)
