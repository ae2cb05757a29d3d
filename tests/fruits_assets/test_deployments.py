"""A deployment is one module (here: one object) and one line in DEPLOYMENTS; its values are
the resources' fields, set without touching the environment."""

from types import SimpleNamespace

import dagster as dg
import pytest

from fruits_assets.definitions import definitions_for
from fruits_assets.deployments import DEPLOYMENTS, current_settings, resources_for
from fruits_assets.deployments.emr import EmrStepLauncherResource
from fruits_assets.deployments.environment import fruits_config
from fruits_assets.resources import STEP_LAUNCHER, FruitsConfig, pipeline_resources
from spark.session import session_conf
from spark.settings import ConfigError

STAGING_DEFAULTS = {
    "region": "eu-central-1",
    "bucket": "fruits-staging",
    "prefix": "staging",
    "weights": "s3://fruits-staging/models/weights.h5",
    "pca_k": 50,
    "catalog_type": "glue",
}


def staging_config(environ) -> FruitsConfig:
    return fruits_config("staging", STAGING_DEFAULTS, environ)


STAGING = SimpleNamespace(
    config=staging_config,
    resources=lambda environ: (
        pipeline_resources(staging_config(environ))
        | {STEP_LAUNCHER: dg.ResourceDefinition.none_resource()}
    ),
)


@pytest.fixture
def staging(monkeypatch):
    monkeypatch.setitem(DEPLOYMENTS, "staging", STAGING)  # the one registry line


def test_a_third_deployment_builds_the_definitions_with_its_values(staging) -> None:
    defs = definitions_for("staging", environ={})
    dg.Definitions.validate_loadable(defs)
    with dg.build_resources({"fruits": defs.resources["fruits"]}) as built:
        settings = built.fruits.settings()
    assert (settings.deployment, settings.region, settings.bucket) == (
        "staging",
        "eu-central-1",
        "fruits-staging",
    )
    assert (settings.prefix, settings.pca_k, settings.fetch_threads) == ("staging", 50, 16)
    assert current_settings({"FRUITS_DEPLOYMENT": "staging"}) == settings
    # Not local: the cluster's Spark settings apply, none of this machine's.
    assert "spark.master" not in session_conf(settings)


def test_a_variable_overrides_one_field_of_a_deployment(staging) -> None:
    environ = {"FRUITS_DEPLOYMENT": "staging", "FRUITS_PCA_K": "7", "FRUITS_PREFIX": "x/"}
    settings = current_settings(environ)
    assert (settings.pca_k, settings.prefix, settings.bucket) == (7, "x", "fruits-staging")


def test_an_optional_number_is_parsed_and_checked_from_its_variable() -> None:
    assert current_settings({}).pca_variance_target is None
    assert current_settings({"FRUITS_PCA_VARIANCE_TARGET": "0.9"}).pca_variance_target == 0.9
    with pytest.raises(ConfigError, match="FRUITS_PCA_VARIANCE_TARGET must be float"):
        current_settings({"FRUITS_PCA_VARIANCE_TARGET": "most"})


def test_local_runs_spark_here_with_its_values_in_the_resource_fields() -> None:
    resources = resources_for("local", environ={})
    fruits = resources["fruits"]
    assert (fruits.bucket, fruits.s3_endpoint) == ("fruits-local", "http://127.0.0.1:9070")
    conf = session_conf(fruits.settings())
    assert conf["spark.master"] == "local[2,3]"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == fruits.s3_endpoint
    # The deployment's values are the fields' defaults, as the UI and the Launchpad show them.
    assert type(fruits).model_fields["weights"].default == "random"


def test_emr_reads_per_account_values_and_the_cluster_as_env_vars() -> None:
    resources = resources_for("emr", environ={})
    fruits, launcher = resources["fruits"], resources[STEP_LAUNCHER]
    assert isinstance(fruits.bucket, dg.EnvVar) and fruits.bucket.env_var_name == "FRUITS_BUCKET"
    assert isinstance(launcher, EmrStepLauncherResource)
    assert launcher.cluster_id == ""  # the tagged cluster, found at each step's launch
    pinned = resources_for("emr", environ={"FRUITS_EMR_CLUSTER_ID": "j-PIN"})[STEP_LAUNCHER]
    assert pinned.cluster_id.env_var_name == "FRUITS_EMR_CLUSTER_ID"
    assert launcher.staging_bucket.env_var_name == "FRUITS_STAGING_BUCKET"
    assert launcher.staging_prefix == fruits.staging_prefix == "emr_staging"
    assert (launcher.log_wait_s, launcher.poll_interval_s) == (360, 15)


def test_settings_are_built_once_per_run() -> None:
    @dg.asset
    def reads_twice(fruits: FruitsConfig) -> bool:
        return fruits.settings() is fruits.settings()

    fruits = FruitsConfig(deployment="local", region="eu-west-3", bucket="b", catalog_type="glue")
    result = dg.materialize([reads_twice], resources={"fruits": fruits})
    assert result.output_for_node("reads_twice") is True
