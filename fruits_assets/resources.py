"""Resources: the pipeline's configuration and storage, and a Spark session started on demand."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pyspark.sql import SparkSession

from fruits_assets.observability import label_spark_jobs
from spark.layout import Layout
from spark.settings import Settings
from spark.storage import s3_client


class FruitsResource(dg.ConfigurableResource):
    """Settings of the current deployment (spark.settings: environment + spark/conf/*.env)."""

    def settings(self) -> Settings:
        return Settings.load()

    def layout(self) -> Layout:
        settings = self.settings()
        return Layout(settings.bucket, settings.prefix)

    def s3(self) -> Any:
        return s3_client(self.settings())


class SparkResource(dg.ConfigurableResource):
    """The SparkSession, built the first time an asset asks for it, never at load time.

    Locally that is local Spark with S3A (spark.session); on EMR it is the cluster's session.
    """

    app_name: str = "fruits"

    def session(self) -> SparkSession:
        from spark.session import build_session

        return build_session(Settings.load(), self.app_name)

    def session_for(self, context: dg.AssetExecutionContext) -> SparkSession:
        """The session, its jobs labelled with the asset's run and partitions (Spark UI, logs)."""
        session = self.session()
        label_spark_jobs(context, session)
        return session


STEP_LAUNCHER = "pyspark_step_launcher"


def resources_for(deployment: str) -> dict[str, Any]:
    """local: everything in-process. emr: the Spark assets run as steps on an EMR cluster."""
    shared = {"fruits": FruitsResource(), "spark": SparkResource()}
    if deployment == "local":
        return shared | {STEP_LAUNCHER: dg.ResourceDefinition.none_resource()}
    if deployment == "emr":
        from fruits_assets.emr import emr_step_launcher

        return shared | {STEP_LAUNCHER: emr_step_launcher()}
    raise dg.DagsterInvariantViolationError(f"no resources for deployment {deployment!r}")
