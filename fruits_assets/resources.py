"""Resources: the pipeline's configuration (`fruits`) and a Spark session started on demand
(`spark`). Their fields are what the UI's resource view shows; a deployment
(fruits_assets.deployments) gives their values."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import MISSING
from typing import Any, get_type_hints

import dagster as dg
from pydantic import Field, PrivateAttr, create_model
from pydantic_core import PydanticUndefined
from pyspark.sql import SparkSession

from fruits_assets.observability import label_spark_jobs
from fruits_assets.partitions import PARTITIONS_START
from spark.layout import Layout
from spark.session import session_conf, start_session, use_settings_catalog
from spark.settings import Settings
from spark.storage import s3_client

STEP_LAUNCHER = "pyspark_step_launcher"


# Settings declares every field once; all of them but the first partition (a code constant,
# PARTITIONS_START) are the `fruits` resource's.
RESOURCE_FIELDS = [f for f in dataclasses.fields(Settings) if f.name != "partitions_start"]


def resource_fields(defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The resource's fields as pydantic declares them: Settings' types and descriptions, with
    `defaults` (a deployment's values, EnvVars included) over Settings' own defaults."""
    types = get_type_hints(Settings)
    fields = {}
    for spec in RESOURCE_FIELDS:
        default = defaults.get(spec.name, spec.default)
        required = default is MISSING
        described = Field(
            PydanticUndefined if required else default, description=spec.metadata["description"]
        )
        fields[spec.name] = (types[spec.name], described)
    return fields


class _FruitsConfigBase(dg.ConfigurableResource):
    """The pipeline's configuration; `settings()` gives it to the library as validated
    spark.settings.Settings, built once per run (Dagster makes one instance per run)."""

    _settings: Settings | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        if self._settings is None:
            values = {spec.name: getattr(self, spec.name) for spec in RESOURCE_FIELDS} | {
                "prefix": self.prefix.strip("/"),
                "staging_prefix": self.staging_prefix.strip("/"),
                "partitions_start": PARTITIONS_START,
            }
            self._settings = Settings(**values)
        return self._settings

    def layout(self) -> Layout:
        return Layout.of(self.settings())

    def s3(self) -> Any:
        return s3_client(self.settings())


FruitsConfig = create_model(
    "FruitsConfig", __base__=_FruitsConfigBase, __module__=__name__, **resource_fields({})
)


def configured(values: Mapping[str, Any]) -> type[FruitsConfig]:
    """FruitsConfig with a deployment's values as its fields' defaults: a run configuration
    that sets some fields (the Launchpad's) keeps the deployment's values of the others;
    values given to the constructor would all be replaced by it."""
    return create_model(
        "FruitsConfig", __base__=FruitsConfig, __module__=__name__, **resource_fields(values)
    )


class SparkResource(dg.ConfigurableResource):
    """The run's SparkSession, started the first time an asset asks for it (never when the
    definitions load: the EMR host, which only launches steps, never starts Spark), from the
    run's `fruits`: locally, local Spark with S3A (spark.session); on EMR, the cluster's.

    Not dagster_pyspark's LazyPySparkResource: its Spark properties are fixed when the
    definitions load, so a run's override of a `fruits` field would never reach Spark.
    """

    spark_config: dict[str, str] = Field(
        default_factory=dict,
        description="Spark properties over those the `fruits` fields give "
        "(spark.session.session_conf).",
    )
    _session: SparkSession | None = PrivateAttr(default=None)

    def session_for(self, context: dg.OpExecutionContext, fruits: FruitsConfig) -> SparkSession:
        """The session on the run's catalog, its jobs labelled with the asset's run and
        partitions (Spark UI, logs)."""
        settings = fruits.settings()
        if self._session is None:
            conf = session_conf(settings) | self.spark_config
            self._session = start_session(conf, local=settings.deployment == "local")
        use_settings_catalog(self._session, settings)
        label_spark_jobs(context, self._session)
        return self._session


def pipeline_resources(fruits: FruitsConfig) -> dict[str, Any]:
    """The resources every deployment has; it adds its step launcher."""
    return {"fruits": fruits, "pyspark": SparkResource()}
