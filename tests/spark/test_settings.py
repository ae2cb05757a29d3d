"""Settings' validation, and the values a deployment gives it (fruits_assets.deployments)."""

import pytest

from fruits_assets.deployments import current_settings, resources_for
from fruits_assets.partitions import UPLOAD_DATES
from fruits_assets.resources import FruitsConfig
from spark.settings import ConfigError, Settings, require_eu_region

# An `emr` environment: its per-account values are variables (EnvVars of the resources).
BASE = {
    "FRUITS_DEPLOYMENT": "emr",
    "FRUITS_REGION": "eu-west-3",
    "FRUITS_BUCKET": "b",
    "FRUITS_WEIGHTS": "s3://b/weights.h5",
    "FRUITS_STAGING_BUCKET": "s",
}
# A local configuration: its catalog is a database (jdbc: catalog_uri is required).
LOCAL = {
    "deployment": "local",
    "region": "eu-west-3",
    "bucket": "b",
    "catalog_uri": "jdbc:postgresql://127.0.0.1:9071/fruits?user=fruits",
}


def config(**fields) -> Settings:
    """Settings as a test sets them: the resource's fields, no environment."""
    return FruitsConfig(**(LOCAL | fields)).settings()


def test_eu_regions_pass_and_others_fail_with_one_line() -> None:
    assert require_eu_region("eu-central-1") == "eu-central-1"
    for region in ("us-east-1", "eu-west-2", "eu-central-2", "ap-south-1"):
        with pytest.raises(ConfigError) as error:
            require_eu_region(region)
        assert region in str(error.value) and "\n" not in str(error.value)


def test_settings_refuse_a_non_eu_region() -> None:
    with pytest.raises(ConfigError, match="us-east-1"):
        config(region="us-east-1")
    with pytest.raises(ConfigError, match="us-east-1"):
        current_settings({**BASE, "FRUITS_REGION": "us-east-1"})


def test_settings_defaults_do_not_oversubscribe_cores() -> None:
    settings = config()
    assert settings.tf_intra_op_threads == 1
    assert settings.weights == "imagenet"  # the production default
    assert settings.pca_k == 100


@pytest.mark.parametrize("key", ["FRUITS_PCA_K", "FRUITS_ARROW_BATCH_SIZE"])
def test_bad_numbers_are_config_errors(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        current_settings({**BASE, key: "many"})
    with pytest.raises(ConfigError, match=key):
        current_settings({**BASE, key: "0"})
    field = key.removeprefix("FRUITS_").lower()
    with pytest.raises(ConfigError, match=key):
        config(**{field: 0})


def test_a_variable_sets_its_field_over_the_deployment_default() -> None:
    settings = current_settings({"FRUITS_BUCKET": "mine"})
    assert settings.deployment == "local" and settings.bucket == "mine"
    assert settings.s3_endpoint and settings.s3_endpoint.startswith("http://127.0.0.1:")


def test_per_account_values_must_be_set() -> None:
    with pytest.raises(ConfigError, match="FRUITS_WEIGHTS must be set"):
        current_settings({k: v for k, v in BASE.items() if k != "FRUITS_WEIGHTS"})
    with pytest.raises(ConfigError, match="s3:// URI on EMR"):
        current_settings({**BASE, "FRUITS_WEIGHTS": "imagenet"})


def test_unknown_deployment() -> None:
    with pytest.raises(ConfigError, match="unknown deployment 'moon'"):
        current_settings({"FRUITS_DEPLOYMENT": "moon"})
    with pytest.raises(ConfigError, match="unknown deployment 'moon'"):
        resources_for("moon")


def test_missing_java_is_one_line(monkeypatch) -> None:
    from spark.session import require_java

    monkeypatch.setenv("JAVA_HOME", "/nowhere")
    with pytest.raises(ConfigError, match="Java not found"):
        require_java()


def test_upload_dates_must_fall_in_the_partitions() -> None:
    import datetime as dt

    settings = config()
    assert settings.partitions_start == "2026-11-01"  # fruits_assets.partitions
    today = dt.date(2026, 11, 25)
    settings.require_partition_dates(["2026-11-01", "2026-11-24"], today)
    with pytest.raises(ConfigError, match=r"\['2026-10-31'\] are outside") as error:
        settings.require_partition_dates(["2026-10-31", "2026-11-02"], today)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="2026-11-25"):  # today: not a partition yet
        settings.require_partition_dates(["2026-11-25"], today)
    # As Dagster counts them.
    keys = UPLOAD_DATES.get_partition_keys(current_time=dt.datetime(2026, 11, 25, 12))
    assert keys[-1] == "2026-11-24"


def test_the_demo_refuses_dates_outside_the_partitions(capsys) -> None:
    from bootstrap.sample.demo import main

    assert main(["--dates", "2020-01-01"]) == 2
    assert "outside the partitions" in capsys.readouterr().err


def test_the_catalog_settings_are_checked_in_one_line() -> None:
    with pytest.raises(ConfigError, match="FRUITS_CATALOG_URI must be set"):
        config(catalog_uri=None)
    with pytest.raises(ConfigError, match="FRUITS_CATALOG_TYPE must be one of"):
        config(catalog_type="hive")
    with pytest.raises(ConfigError, match="FRUITS_NAMESPACE must be a lower-case identifier"):
        config(namespace="Fruits-Prod")
    with pytest.raises(ConfigError, match="FRUITS_TARGET_FILE_MB must be positive"):
        config(target_file_mb=0)
    assert config(catalog_type="glue", catalog_uri=None).catalog_type == "glue"
