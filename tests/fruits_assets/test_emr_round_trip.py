"""The `emr` deployment end to end through the real EmrPySparkStepLauncher, against the fake
EMR control plane (bootstrap.fake_emr) and the local S3 server: no AWS, nothing skipped."""

import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from bootstrap.dagster_home import prepare_dagster_home
from bootstrap.demo import materialize_command
from bootstrap.emr_cluster import ClusterOptions, create
from bootstrap.fake_emr import FakeEmrServer, FakeEmrTiming
from spark.settings import Settings

pytestmark = pytest.mark.slow
D1, D2 = "2026-11-13", "2026-11-14"


@pytest.fixture
def fake_emr(settings, local_s3, tmp_path):
    # Step logs come 2 s after a step ends (EMR: minutes), within the launcher's wait.
    timing = FakeEmrTiming(log_push_delay_s=2)
    with FakeEmrServer(settings, tmp_path / "fake_emr", timing=timing) as server:
        yield server


@pytest.fixture
def emr_env(
    settings, fresh_layout, fake_emr, weights, s3, tmp_path, save_legacy_h5
) -> dict[str, str]:
    """The host's environment for FRUITS_DEPLOYMENT=emr, with a cluster created by the CLI."""
    save_legacy_h5(tmp_path / "weights.h5", weights.arrays)
    weights_uri = fresh_layout.weights_uri("mobilenet_v2_no_top.h5")
    s3.upload_file(str(tmp_path / "weights.h5"), settings.bucket, weights_uri.split("/", 3)[3])

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FRUITS_S3_ENDPOINT", "FRUITS_SPARK_MASTER")
    }
    env |= {
        "FRUITS_DEPLOYMENT": "emr",
        "FRUITS_PREFIX": fresh_layout.prefix,
        "FRUITS_WEIGHTS": weights_uri,
        "FRUITS_STAGING_BUCKET": settings.bucket,
        "FRUITS_STAGING_PREFIX": f"{fresh_layout.prefix}/emr_staging",
        # Where an AWS SDK would find AWS, it finds the local stand-ins.
        "AWS_ENDPOINT_URL_EMR": fake_emr.endpoint,
        "AWS_ENDPOINT_URL_S3": settings.s3_endpoint,
        "AWS_DEFAULT_REGION": settings.region,
        "DAGSTER_HOME": str(prepare_dagster_home(tmp_path / "dagster_home")),
    }
    emr_settings = Settings.from_env(env)
    options = ClusterOptions(
        kms_key_arn="arn:aws:kms:eu-west-3:1:key/k", tls_certificates="s3://c/c.zip"
    )
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # boto3 inside create() reads the endpoints from the environment
    try:
        env["FRUITS_EMR_CLUSTER_ID"] = create(emr_settings, options, env)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return env


def materialize(env: dict[str, str], repo_root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        materialize_command([D1, D2], "raw_images,image_features"),
        env=env,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_backfill_runs_as_one_emr_step_and_reports_back(
    emr_env, fresh_layout, upload_sample, repo_root, fake_emr, monkeypatch
) -> None:
    upload_sample(fresh_layout, [D1, D2], per_date=6, broken=False)
    result = materialize(emr_env, repo_root)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    cluster = fake_emr.emr.clusters[emr_env["FRUITS_EMR_CLUSTER_ID"]]
    steps = [s for s in cluster.steps if s.args[0].endswith("spark-submit")]
    assert len(steps) == 1 and steps[0].state == "COMPLETED"  # two dates, one step
    # The run found the cluster starting and queued its step; the step's logs came.
    walk = [state for state, _ in cluster.history]
    assert walk[:3] == ["STARTING", "BOOTSTRAPPING", "WAITING"] and "RUNNING" in walk
    assert cluster.state == "WAITING"
    output = result.stdout + result.stderr
    assert "Spark Driver stdout" in output and "did not appear on S3" not in output
    assert steps[0].args[:5] == [
        "/usr/lib/spark/bin/spark-submit",
        "--master",
        "yarn",
        "--deploy-mode",
        "client",
    ]

    monkeypatch.setenv("DAGSTER_HOME", emr_env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(dg.AssetKey("image_features"), limit=10).records
        assert sorted(r.partition_key for r in records) == [D1, D2]
        metadata = records[0].asset_materialization.metadata
        assert metadata["dagster/row_count"].value == 12
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("image_features"), "every_image_accounted"), limit=5
        )
        statuses = {c.status.value for c in checks}
        assert "SUCCEEDED" in statuses and "FAILED" not in statuses


def test_a_failing_step_fails_the_dagster_step_with_its_stderr(
    emr_env, fresh_layout, upload_sample, repo_root, fake_emr
) -> None:
    upload_sample(fresh_layout, [D1, D2], per_date=2, broken=False)
    # The cluster's environment is what the step sees: break its weights URI there.
    cluster = fake_emr.emr.clusters[emr_env["FRUITS_EMR_CLUSTER_ID"]]
    missing = f"s3://{emr_env['FRUITS_STAGING_BUCKET']}/nowhere/weights.h5"
    with cluster.spark_env_file.open("a") as spark_env:
        spark_env.write(f'export FRUITS_WEIGHTS="{missing}"\n')
    result = materialize(emr_env, repo_root)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'Execution of step "image_features" failed' in output
    assert "Spark Driver stderr" in output  # the step's own stderr, fetched from the LogUri
    assert "nowhere/weights.h5" in output
    # The asset failed, not spark-submit: the failure came back as the step's Dagster events
    # while the EMR step itself ended COMPLETED, and its stderr came within the launcher's wait.
    # (An EMR step that fails itself is reported with FailureDetails: test_emr.py.)
    assert [s.state for s in cluster.steps if s.args[0].endswith("spark-submit")] == ["COMPLETED"]
    assert "did not appear on S3" not in output
