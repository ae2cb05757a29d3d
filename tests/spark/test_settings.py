from pathlib import Path

import pytest

from spark.settings import (
    ConfigError,
    Settings,
    load_deployment_env,
    read_env_file,
    require_eu_region,
)

BASE = {"FRUITS_REGION": "eu-west-3", "FRUITS_BUCKET": "b"}


def test_eu_regions_pass_and_others_fail_with_one_line() -> None:
    assert require_eu_region("eu-central-1") == "eu-central-1"
    for region in ("us-east-1", "eu-west-2", "eu-central-2", "ap-south-1"):
        with pytest.raises(ConfigError) as error:
            require_eu_region(region)
        assert region in str(error.value) and "\n" not in str(error.value)


def test_settings_refuse_a_non_eu_region() -> None:
    with pytest.raises(ConfigError, match="us-east-1"):
        Settings.from_env({**BASE, "FRUITS_REGION": "us-east-1"})


def test_settings_defaults_do_not_oversubscribe_cores() -> None:
    settings = Settings.from_env(BASE)
    assert settings.tf_intra_op_threads == 1
    assert settings.weights == "imagenet"  # the production default
    assert settings.pca_k == 100


@pytest.mark.parametrize("key", ["FRUITS_PCA_K", "FRUITS_ARROW_BATCH_SIZE"])
def test_bad_numbers_are_config_errors(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        Settings.from_env({**BASE, key: "many"})
    with pytest.raises(ConfigError, match=key):
        Settings.from_env({**BASE, key: "0"})


def test_env_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("# comment\n\nA=1\nB = two words \n")
    assert read_env_file(path) == {"A": "1", "B": "two words"}
    path.write_text("oops\n")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        read_env_file(path)


def test_environment_overrides_the_deployment_file() -> None:
    environ = {"FRUITS_BUCKET": "mine"}
    assert load_deployment_env(environ) == "local"
    settings = Settings.from_env(environ)
    assert settings.bucket == "mine"
    assert settings.s3_endpoint and settings.s3_endpoint.startswith("http://127.0.0.1:")


def test_unknown_deployment() -> None:
    with pytest.raises(ConfigError, match="unknown deployment 'moon'"):
        load_deployment_env({"FRUITS_DEPLOYMENT": "moon"})


def test_missing_java_is_one_line(monkeypatch) -> None:
    from spark.session import require_java

    monkeypatch.setenv("JAVA_HOME", "/nowhere")
    with pytest.raises(ConfigError, match="Java not found"):
        require_java()


def test_upload_dates_must_fall_in_the_partitions() -> None:
    import datetime as dt

    settings = Settings.from_env({**BASE, "FRUITS_PARTITIONS_START": "2026-11-01"})
    today = dt.date(2026, 11, 25)
    settings.require_partition_dates(["2026-11-01", "2026-11-25"], today)
    with pytest.raises(ConfigError, match=r"\['2026-10-31'\] are outside") as error:
        settings.require_partition_dates(["2026-10-31", "2026-11-02"], today)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="2026-11-26"):
        settings.require_partition_dates(["2026-11-26"], today)


def test_the_demo_refuses_dates_outside_the_partitions(capsys) -> None:
    from bootstrap.sample.demo import main

    assert main(["--dates", "2020-01-01"]) == 2
    assert "outside the partitions" in capsys.readouterr().err
