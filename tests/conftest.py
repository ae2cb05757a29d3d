"""Shared fixtures: a local S3 server on a free loopback port, one Spark session, seeded weights.

Tests never touch the demo's server or bucket: they get their own port, bucket and prefix.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.buckets import ensure_pipeline_bucket
from bootstrap.local_s3 import LocalS3
from spark.layout import Layout
from spark.settings import Settings, load_deployment_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def test_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The local deployment, re-pointed at a test-only server and bucket."""
    overrides = {
        "FRUITS_DEPLOYMENT": "local",
        "FRUITS_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "FRUITS_BUCKET": "fruits-test",
        "FRUITS_PREFIX": "t",
        "FRUITS_WEIGHTS": "random",
        "FRUITS_SPARK_MASTER": "local[2,3]",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in overrides.items():
            patch.setenv(key, value)
        load_deployment_env(os.environ)
        yield overrides


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]) -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def local_s3(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    assert settings.s3_endpoint
    server = LocalS3(settings.s3_endpoint, state_dir=tmp_path_factory.mktemp("local_s3"))
    server.start()
    try:
        ensure_pipeline_bucket(settings)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def layout(settings: Settings) -> Layout:
    return Layout(settings.bucket, settings.prefix)


@pytest.fixture(scope="session")
def s3(settings: Settings, local_s3: LocalS3):
    from spark.storage import s3_client

    return s3_client(settings)


@pytest.fixture(scope="session")
def spark(settings: Settings, local_s3: LocalS3):
    from spark.session import build_session

    session = build_session(settings, "fruits-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def weights():
    from spark.model import load_weights

    return load_weights("random", seed=42)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_layout(settings: Settings, request: pytest.FixtureRequest) -> Layout:
    """A prefix of its own for each test, so Spark outputs never mix between tests."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    return Layout(
        settings.bucket, f"{settings.prefix}/{request.module.__name__.split('.')[-1]}/{name}"
    )


@pytest.fixture(scope="session")
def upload_sample(settings: Settings, local_s3: LocalS3):
    """Upload synthetic photos (bootstrap.sample_data) under a layout's raw/ prefix."""
    from dataclasses import replace

    from bootstrap.sample_data import synthetic_files, upload

    def _upload(layout: Layout, dates: list[str], per_date: int, **options) -> dict[str, int]:
        options.setdefault("phone_per_date", 0)
        options.setdefault("seed", 3)
        return upload(
            synthetic_files(dates, per_date, **options),
            replace(settings, bucket=layout.bucket, prefix=layout.prefix),
        )

    return _upload


@pytest.fixture(scope="session")
def save_legacy_h5():
    """Writes MobileNetV2 weights (or any Keras model's) in the legacy HDF5 layout that Keras
    publishes its ImageNet weights in."""

    def _save(path: Path, arrays=None, model=None) -> Path:
        import h5py
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

        from spark.model import build_mobilenet

        if model is None:
            model = build_mobilenet(None)
            model.set_weights(arrays)
        with h5py.File(path, "w") as handle:
            save_weights_to_hdf5_group(handle, model)
        return path

    return _save


KEY_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret assignment": re.compile(
        r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b", re.IGNORECASE
    ),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def scan(text: str) -> list[str]:
    return [name for name, pattern in KEY_PATTERNS.items() if pattern.search(text)]


@pytest.fixture(scope="session")
def scan_credentials():
    """Names of the credential patterns found in a text (empty when it is clean)."""

    def _scan(text: str) -> list[str]:
        return [name for name, pattern in KEY_PATTERNS.items() if pattern.search(text)]

    return _scan


@pytest.fixture(scope="session")
def extract(spark, s3, settings):
    """What raw_images then image_features do, without the audit: manifests, then features."""
    from spark.fetch import ImageSource
    from spark.manifest import write_manifests
    from spark.pipeline import extract_features

    def _extract(layout: Layout, dates: list[str], weights, **options):
        write_manifests(s3, layout, list(dates))
        options.setdefault("tf_threads", 1)
        source = options.pop("source", ImageSource.of(settings))
        return extract_features(spark, layout, s3, dates, weights, source=source, **options)

    return _extract


# --- the fake EMR control plane, its durations shrunk (bootstrap.fake_emr) --------------------
# IdleTimeout 60 s (EMR's minimum) passes in 1.2 s; logs reach S3 1.5 s after a step ends.
QUICK_EMR_IDLE_SCALE = 0.02


@pytest.fixture
def quick_emr(settings: Settings, local_s3: LocalS3, tmp_path: Path, monkeypatch):
    """A fake EMR on loopback with short lifecycle durations; boto3 finds it (and the local
    S3 server) through AWS_ENDPOINT_URL_*, as the step launcher does."""
    from bootstrap.fake_emr import FakeEmrServer, FakeEmrTiming

    timing = FakeEmrTiming(
        starting_s=0.2, terminating_s=0.2, log_push_delay_s=1.5, idle_scale=QUICK_EMR_IDLE_SCALE
    )
    with FakeEmrServer(settings, tmp_path / "fake_emr", timing=timing) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EMR", server.endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", str(settings.s3_endpoint))
        monkeypatch.setenv("AWS_DEFAULT_REGION", settings.region)
        yield server


@pytest.fixture
def start_cluster(quick_emr, settings: Settings, fresh_layout: Layout):
    """RunJobFlow with what the control plane reads (LogUri, keep-alive, idle timeout);
    returns the EMR client and the cluster id once the cluster is WAITING."""
    import time

    import boto3

    emr = boto3.client("emr", region_name=settings.region)

    def _start(idle_timeout_s: int = 3600, wait: bool = True) -> tuple[object, str]:
        cluster_id = emr.run_job_flow(
            Name="fruits-test",
            ReleaseLabel="emr-7.12.0",
            LogUri=f"s3://{fresh_layout.bucket}/{fresh_layout.prefix}/logs/",
            Instances={"KeepJobFlowAliveWhenNoSteps": True},
            AutoTerminationPolicy={"IdleTimeout": idle_timeout_s},
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole_V2",
        )["JobFlowId"]
        deadline = time.monotonic() + 10
        while (
            wait
            and emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
            != "WAITING"
        ):
            assert time.monotonic() < deadline, "the fake cluster never reached WAITING"
            time.sleep(0.05)
        return emr, cluster_id

    return _start


@pytest.fixture
def step_reaches():
    """Polls DescribeStep until the step is in one of `states`; returns its Status."""
    import time

    def _reaches(emr, cluster_id: str, step_id: str, *states: str, timeout_s: float = 20):
        deadline = time.monotonic() + timeout_s
        while True:
            status = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]
            if status["State"] in states:
                return status
            assert time.monotonic() < deadline, f"step {step_id} stayed {status['State']}"
            time.sleep(0.05)

    return _reaches
