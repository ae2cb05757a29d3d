"""The `fruits` resource is Settings' fields with a deployment's values as defaults, and the
`spark` resource builds the run's session from it: a run's override of one field (the
Launchpad's `resources: fruits: config:`) keeps the deployment's other values and reaches
Spark."""

import dataclasses
import os

import dagster as dg

from fruits_assets.deployments import local
from fruits_assets.resources import RESOURCE_FIELDS, FruitsConfig, SparkResource
from spark.settings import Settings

BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"


@dg.asset
def session_values(
    context: dg.AssetExecutionContext, fruits: FruitsConfig, pyspark: SparkResource
) -> dict:
    session = pyspark.session_for(context, fruits)
    return {"batch": session.conf.get(BATCH), "weights": fruits.weights, "bucket": fruits.bucket}


def test_the_resource_fields_are_settings_fields_declared_once() -> None:
    declared = {f.name: f for f in dataclasses.fields(Settings)}
    assert set(FruitsConfig.model_fields) == set(declared) - {"partitions_start"}
    for spec in RESOURCE_FIELDS:
        field = FruitsConfig.model_fields[spec.name]
        assert field.description == spec.metadata["description"] != ""
        assert field.is_required() == (spec.default is dataclasses.MISSING)


def test_a_run_override_of_one_field_reaches_spark_and_keeps_the_others(spark) -> None:
    resources = local.resources(os.environ) | {"pyspark_step_launcher": None}
    deployment = resources["fruits"]

    def run(run_config: dict) -> dict:
        result = dg.materialize([session_values], resources=resources, run_config=run_config)
        return result.output_for_node("session_values")

    overridden = run({"resources": {"fruits": {"config": {"arrow_batch_size": 7}}}})
    assert overridden == {"batch": "7", "weights": deployment.weights, "bucket": deployment.bucket}
    # The next run without the override: the deployment's value again.
    assert run({})["batch"] == str(deployment.arrow_batch_size) != "7"
