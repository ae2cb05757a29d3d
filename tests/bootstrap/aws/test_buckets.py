import boto3
import pytest

from bootstrap.aws.buckets import ensure_bucket
from spark.settings import ConfigError

BUCKET = "fruits-bucket-test"


def test_buckets_are_created_in_the_eu_encrypted_and_private(s3) -> None:
    assert ensure_bucket(s3, BUCKET, "eu-west-3") is True
    assert ensure_bucket(s3, BUCKET, "eu-west-3") is False  # idempotent
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == "eu-west-3"
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4


def test_a_non_eu_bucket_is_refused_before_any_call(s3) -> None:
    with pytest.raises(ConfigError, match="us-east-1"):
        ensure_bucket(s3, "fruits-us-bucket", "us-east-1")
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert "fruits-us-bucket" not in names


def test_an_existing_bucket_outside_the_eu_is_refused(s3, settings) -> None:
    us = boto3.client("s3", region_name="us-east-1", endpoint_url=settings.s3_endpoint)
    us.create_bucket(Bucket="fruits-legacy-us")  # us-east-1: no LocationConstraint
    with pytest.raises(ConfigError, match="location 'us-east-1'"):
        ensure_bucket(s3, "fruits-legacy-us", "eu-west-3")


def test_staging_scratch_expires_and_what_nodes_reread_never_does(
    s3, settings, monkeypatch, capsys
) -> None:
    import uuid

    from bootstrap.aws.buckets import LOG_RETENTION_DAYS, STAGING_RETENTION_DAYS, expiry_days, main

    monkeypatch.setenv("FRUITS_STAGING_BUCKET", "fruits-staging-test")
    assert main(["create"]) == 0
    assert "s3://fruits-staging-test created" in capsys.readouterr().out
    rules = s3.get_bucket_lifecycle_configuration(Bucket="fruits-staging-test")["Rules"]
    staging = settings.staging_prefix
    # What every node re-reads at start (managed scaling adds nodes on any day): never.
    for kept in (
        "bootstrap/install_python_deps.sh",
        "bootstrap/requirements.lock",
        "bootstrap/wheelhouse/numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.whl",
        "bootstrap/emr-tls.zip",
    ):
        assert expiry_days(rules, f"{staging}/{kept}") is None, kept
    # Scratch: the step files of any run id Dagster makes (UUIDs), code packages, logs.
    for _ in range(200):
        step_file = f"{staging}/{uuid.uuid4()}/image_features/step_run_ref.pkl"
        assert expiry_days(rules, step_file) == STAGING_RETENTION_DAYS, step_file
    assert expiry_days(rules, f"{staging}/b0c1-run/x.pkl") == STAGING_RETENTION_DAYS
    assert expiry_days(rules, f"{staging}/code/0123abcd.zip") == STAGING_RETENTION_DAYS
    assert expiry_days(rules, f"{staging}/logs/j-1/steps/s-1/stderr.gz") == LOG_RETENTION_DAYS
    assert expiry_days(rules, "elsewhere/file") is None
    data_rules = s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
    # Nothing in the data bucket expires by age (table maintenance removes unreferenced files).
    assert [r for r in data_rules if "Expiration" in r] == []
    assert any("AbortIncompleteMultipartUpload" in r for r in data_rules)


def test_preflight_names_a_missing_bucket_or_a_dead_endpoint(s3, settings) -> None:
    from dataclasses import replace

    from spark.storage import preflight, s3_client

    preflight(s3, settings)  # the test bucket exists
    with pytest.raises(ConfigError, match="bucket 'no-such-fruits' does not exist"):
        preflight(s3, replace(settings, bucket="no-such-fruits"))
    dead = replace(settings, s3_endpoint="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="cannot reach S3 at http://127.0.0.1:9"):
        preflight(s3_client(dead), dead)


def test_no_table_file_expires_by_age(s3, settings) -> None:
    """A lifecycle rule cannot see which files a table references: what abandoned writes left
    goes through table maintenance (fruits_assets.maintenance), never by age."""
    from bootstrap.aws.buckets import ensure_pipeline_bucket, expiry_days

    ensure_pipeline_bucket(settings)
    rules = s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
    table_file = f"{settings.prefix}/warehouse/fruits/features/data/upload_date=x/00000.parquet"
    assert expiry_days(rules, table_file) is None
    assert (
        expiry_days(rules, f"{settings.prefix}/warehouse/fruits/features/metadata/v1.json") is None
    )
