"""The cluster CLI against moto's EMR (served by the local S3 server's moto)."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
import pytest

from bootstrap.aws.emr_cluster import (
    ICEBERG_VERSION,
    RELEASE_LABEL,
    ClusterOptions,
    cluster_request,
    hourly_cost,
    main,
    security_configuration,
)
from bootstrap.aws.roles import INSTANCE_PROFILE, SERVICE_ROLE
from bootstrap.aws.wheelhouse import bundle_digest, lock_pins
from fruits_assets.deployments import current_settings
from spark.settings import ConfigError, Settings

OPTIONS = ClusterOptions(
    kms_key_arn="arn:aws:kms:eu-west-3:111122223333:key/test",
    tls_certificates="s3://fruits-test/emr_staging/bootstrap/emr-tls.zip",
)
CLUSTER_ENV = {"FRUITS_WEIGHTS": "s3://fruits-test/t/models/weights/mobilenet_v2.h5"}


@pytest.fixture
def emr_env(settings, local_s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_EMR", settings.s3_endpoint)  # moto serves EMR too
    monkeypatch.setenv("FRUITS_STAGING_BUCKET", settings.bucket)
    # What the cluster runs with is the emr deployment's, whose per-account values are
    # variables the operator sets (fruits_assets.deployments.emr).
    monkeypatch.setenv("FRUITS_REGION", settings.region)
    for key, value in CLUSTER_ENV.items():
        monkeypatch.setenv(key, value)
    return boto3.client("emr", region_name=settings.region, endpoint_url=settings.s3_endpoint)


def request(settings: Settings) -> dict:
    env = {
        "FRUITS_REGION": "eu-west-3",
        "FRUITS_BUCKET": "b",
        "FRUITS_S3_ENDPOINT": "http://x",
        **CLUSTER_ENV,
    }
    staged = current_settings(env | {"FRUITS_STAGING_BUCKET": "staging"})
    return cluster_request(staged, OPTIONS, env)


def pinned_iceberg(pom: Path) -> str:
    """The Iceberg version of the local jars (the `iceberg.version` property of the pom)."""
    found = ET.parse(pom).getroot().find("{*}properties/{*}iceberg.version")
    assert found is not None and found.text, f"no iceberg.version in {pom}"
    return found.text.strip()


def test_local_jars_pin_the_iceberg_of_the_release_label(repo_root: Path) -> None:
    """Tests run against the Iceberg the cluster runs (ICEBERG_VERSION: RELEASE_LABEL's)."""
    assert pinned_iceberg(repo_root / "bootstrap" / "local" / "jars" / "pom.xml") == (
        ICEBERG_VERSION
    )


def test_the_request_enables_the_release_iceberg(settings) -> None:
    """Without the `iceberg-defaults` classification EMR leaves Iceberg off the class path."""
    found = [
        c["Properties"]
        for c in request(settings)["Configurations"]
        if c["Classification"] == "iceberg-defaults"
    ]
    assert found == [{"iceberg.enabled": "true"}]


def test_the_request_shape(settings) -> None:
    req = request(settings)
    assert req["ReleaseLabel"] == RELEASE_LABEL and RELEASE_LABEL.startswith("emr-7.")
    assert req["Applications"] == [{"Name": "Spark"}]
    fleets = {f["InstanceFleetType"]: f for f in req["Instances"]["InstanceFleets"]}
    assert (
        fleets["MASTER"]["TargetOnDemandCapacity"] == 1
        and fleets["MASTER"]["TargetSpotCapacity"] == 0
    )
    assert fleets["CORE"]["TargetSpotCapacity"] == 0
    task = fleets["TASK"]
    assert task["TargetOnDemandCapacity"] == 0 and task["TargetSpotCapacity"] > 0
    assert len(task["InstanceTypeConfigs"]) >= 3
    spot = task["LaunchSpecifications"]["SpotSpecification"]
    assert spot["TimeoutAction"] == "SWITCH_TO_ON_DEMAND"
    assert req["AutoTerminationPolicy"]["IdleTimeout"] > 0
    limits = req["ManagedScalingPolicy"]["ComputeLimits"]
    assert limits["MinimumCapacityUnits"] < limits["MaximumCapacityUnits"]
    assert req["LogUri"] == "s3://staging/emr_staging/logs/"
    bootstrap = req["BootstrapActions"][0]["ScriptBootstrapAction"]
    folder = f"s3://staging/emr_staging/bootstrap/{bundle_digest()}"
    assert bootstrap == {
        "Path": f"{folder}/install_python_deps.sh",
        "Args": [folder, "eu-west-3"],  # every S3 copy on the node names the region
    }
    assert req["SecurityConfiguration"] == OPTIONS.security_configuration
    assert (req["ServiceRole"], req["JobFlowRole"]) == (SERVICE_ROLE, INSTANCE_PROFILE)
    exported = req["Configurations"][0]["Configurations"][0]["Properties"]
    assert exported["FRUITS_DEPLOYMENT"] == "emr" and exported["FRUITS_REGION"] == "eu-west-3"
    assert "FRUITS_S3_ENDPOINT" not in exported  # local-only settings stay home
    # The region for every AWS client on the nodes (none is preset there), never credentials.
    aws = {k: v for k, v in exported.items() if k.startswith("AWS_")}
    assert aws == {"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "eu-west-3"}


def test_security_configuration_encrypts_at_rest_and_in_transit() -> None:
    config = security_configuration(OPTIONS)["EncryptionConfiguration"]
    assert config["EnableAtRestEncryption"] and config["EnableInTransitEncryption"]
    at_rest = config["AtRestEncryptionConfiguration"]
    assert at_rest["LocalDiskEncryptionConfiguration"]["AwsKmsKey"] == OPTIONS.kms_key_arn
    with pytest.raises(ConfigError, match="kms-key-arn"):
        security_configuration(ClusterOptions())


def test_hourly_cost_adds_up(tmp_path) -> None:
    import json

    from bootstrap.aws.prices import PRICES_FILE

    cost = hourly_cost(OPTIONS.layout, "eu-west-3")
    assert cost["prices_taken"] and cost["total"] == pytest.approx(sum(cost["lines"].values()))
    assert 0.5 < cost["total"] < 10
    table = json.loads(PRICES_FILE.read_text())
    del table["regions"]["eu-west-3"]
    (tmp_path / "prices.json").write_text(json.dumps(table))
    with pytest.raises(ConfigError, match="no prices"):
        hourly_cost(OPTIONS.layout, "eu-west-3", tmp_path / "prices.json")


def test_create_describe_steps_terminate_against_moto(emr_env, settings, s3, capsys) -> None:
    args = ["--kms-key-arn", OPTIONS.kms_key_arn, "--tls-certificates", OPTIONS.tls_certificates]
    assert main(["create", *args]) == 0
    out, err = capsys.readouterr()
    cluster_id = out.strip()
    assert "hourly cost" in err and "total" in err

    cluster = emr_env.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["ReleaseLabel"] == RELEASE_LABEL
    assert cluster["LogUri"].endswith("/emr_staging/logs/")
    assert emr_env.describe_security_configuration(Name=OPTIONS.security_configuration)
    # (moto implements neither ListInstanceFleets nor, for fleets, GetManagedScalingPolicy:
    # fleets and scaling limits are checked in the request shape above)
    actions = emr_env.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
    folder = f"emr_staging/bootstrap/{bundle_digest()}"
    assert actions[0]["ScriptPath"] == f"s3://{settings.bucket}/{folder}/install_python_deps.sh"
    # the bootstrap action, the cluster lock and a wheel for each of its pins are staged
    listing = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=folder)
    staged = {o["Key"][len(folder) + 1 :] for page in listing for o in page["Contents"]}
    assert {"install_python_deps.sh", "requirements-emr.lock"} <= staged
    wheels = [k.split("/")[1] for k in staged if k.endswith(".whl")]
    assert all(any(pin.matches(w) for w in wheels) for pin in lock_pins())
    assert "wheelhouse/requirements.txt" in staged and len(staged) == len(wheels) + 3

    assert main(["describe", cluster_id]) == 0
    assert json.loads(capsys.readouterr().out)["Id"] == cluster_id
    assert main(["steps", cluster_id]) == 0
    assert capsys.readouterr().out == ""  # no step: the nodes read their id from job-flow.json
    assert main(["terminate", cluster_id]) == 0
    assert emr_env.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"].startswith(
        "TERMINAT"
    )


def test_a_non_eu_region_is_refused_before_any_api_call(tmp_path) -> None:
    # No endpoint reachable at all: an API call would fail differently (and slowly).
    env = {
        "FRUITS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_EMR": "http://127.0.0.1:9",
        "PATH": "/usr/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bootstrap.aws.emr_cluster", "create"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines() == [result.stderr.strip()]
        and "us-east-1" in result.stderr
        and "outside the EU" in result.stderr
    )


def test_weights_must_be_on_s3_for_the_cluster(emr_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FRUITS_WEIGHTS", "imagenet")
    args = ["--kms-key-arn", OPTIONS.kms_key_arn, "--tls-certificates", OPTIONS.tls_certificates]
    assert main(["create", *args]) == 2
    assert "must be an s3:// URI" in capsys.readouterr().err


def test_spot_at_start_and_at_scale_out_as_the_readme_says(settings, repo_root) -> None:
    from bootstrap.aws.emr_cluster import (
        SPOT_AT_SCALE_OUT,
        SPOT_AT_START,
        SPOT_RESIZE_TIMEOUT_MIN,
        SPOT_TIMEOUT_MIN,
    )

    req = request(settings)
    layout = OPTIONS.layout
    task = next(f for f in req["Instances"]["InstanceFleets"] if f["InstanceFleetType"] == "TASK")
    # At start: Spot, then On-Demand after the timeout.
    start = task["LaunchSpecifications"]["SpotSpecification"]
    assert (start["TimeoutAction"], start["TimeoutDurationMinutes"]) == (
        "SWITCH_TO_ON_DEMAND",
        SPOT_TIMEOUT_MIN,
    )
    assert task["TargetSpotCapacity"] == layout.task_spot_units
    # At scale-out: On-Demand up to the limit (room for the start's fallback), then Spot only;
    # a Spot resize is given up after its timeout (no TimeoutAction exists for resizes).
    limits = req["ManagedScalingPolicy"]["ComputeLimits"]
    assert limits["MaximumOnDemandCapacityUnits"] == layout.core_units + layout.task_spot_units
    assert limits["MaximumCoreCapacityUnits"] == layout.core_units
    assert limits["MaximumCapacityUnits"] > limits["MaximumOnDemandCapacityUnits"]
    resize = task["ResizeSpecifications"]["SpotResizeSpecification"]
    assert resize["TimeoutDurationMinutes"] == SPOT_RESIZE_TIMEOUT_MIN
    assert "TimeoutAction" not in resize
    # The AWS runbook says the same, in the same words.
    readme = " ".join((repo_root / "docs" / "deploying-on-aws.md").read_text().split())
    for sentence in (SPOT_AT_START, SPOT_AT_SCALE_OUT):
        assert sentence in readme, sentence
