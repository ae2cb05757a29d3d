"""Shared fixtures: a local S3 server and a local Iceberg catalog on free loopback ports, one
Spark session, seeded weights.

Tests never touch the demo's servers or bucket: they get their own ports, bucket and prefix,
and each test using `fresh_layout` its own Iceberg namespace.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrap.aws.buckets import ensure_pipeline_bucket
from bootstrap.local.local_catalog import LocalCatalog, from_uri
from bootstrap.local.local_s3 import LocalS3
from fruits_assets.deployments import current_settings
from fruits_assets.resources import FruitsConfig
from spark.layout import Layout
from spark.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding slow tests run first (stable otherwise): `make test` hands whole files to
    its workers in this order, and a long file started last leaves the other worker idle."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    return free_port()


def catalog_uri(port: int) -> str:
    return f"jdbc:postgresql://127.0.0.1:{port}/fruits?user=fruits"


@pytest.fixture
def unused_catalog_uri() -> str:
    """A catalog database on a free loopback port, for a LocalCatalog to start there."""
    return catalog_uri(free_port())


@pytest.fixture(scope="session")
def test_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The local deployment, re-pointed at test-only servers (S3, catalog) and bucket.

    As FRUITS_* variables (fruits_assets.deployments.environment): the Dagster CLI processes
    that tests start read them there; in this process a test sets configuration through
    `fruits_config` instead."""
    overrides = {
        "FRUITS_DEPLOYMENT": "local",
        "FRUITS_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "FRUITS_CATALOG_URI": catalog_uri(free_port()),
        "FRUITS_BUCKET": "fruits-test",
        "FRUITS_PREFIX": "t",
        "FRUITS_WEIGHTS": "random",
        "FRUITS_SPARK_MASTER": "local[2,3]",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in overrides.items():
            patch.setenv(key, value)
        yield overrides


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]) -> Settings:
    return current_settings()


@pytest.fixture(scope="session")
def fruits_config(test_env: dict[str, str]):
    """fruits_config(**fields): the tests' `fruits` resource with some fields changed."""
    from fruits_assets.deployments import local

    base = local.config(os.environ).model_dump()

    def _config(**fields) -> FruitsConfig:
        return FruitsConfig(**(base | fields))

    return _config


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


# Children inherit ignored signals and the signal mask: a test that leaves SIGTERM ignored or
# blocked in this process makes every later child here deaf to it (servers that never stop,
# EMR steps that stay CANCEL_PENDING), far from the test that did it.
WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _signal_state() -> tuple[object, ...]:
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return (*(signal.getsignal(s) for s in WATCHED_SIGNALS), frozenset(blocked))


def _ignored_here(signum: int, frame: object) -> None:
    """Ignores the signal in this process; being a handler, not SIG_IGN, it is reset to the
    default in children."""


@pytest.fixture(autouse=True)
def signals_left_as_found(request) -> Iterator[None]:
    """Each test leaves SIGINT's and SIGTERM's handlers and the signal mask as it found them;
    one that leaves a signal ignored or blocked, which children inherit, is named in a warning.
    pytest started in the background by a non-interactive shell has SIGINT ignored (POSIX), and
    Dagster's in-process runs end by giving SIGTERM SIGINT's handler
    (dagster._utils.interrupts.capture_interrupts): SIG_IGN there made every child started later
    in the test deaf to SIGTERM (a cancelled EMR step left CANCEL_PENDING). So a test runs with
    SIGINT ignored by a handler, which children do not inherit."""
    found = _signal_state()
    if found[0] == signal.SIG_IGN:
        signal.signal(signal.SIGINT, _ignored_here)
    before = _signal_state()
    yield
    after = _signal_state()
    inherited = signal.SIG_IGN in after[:-1] or bool(set(after[-1]) - set(before[-1]))
    if inherited:
        what = f"{request.node.nodeid} left signals ignored or blocked: {before} -> {after}"
        warnings.warn(what, stacklevel=1)
    for signum, handler in zip(WATCHED_SIGNALS, found, strict=False):
        signal.signal(signum, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, found[-1])


@contextmanager
def catalog_state() -> Iterator[Path]:
    """A scratch folder for a LocalCatalog (its owner's only, 0700: under root the catalog
    keeps its data where PostgreSQL's system user can reach it)."""
    path = Path(tempfile.mkdtemp(prefix="fruits-catalog-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def catalog_state_dir() -> Iterator[Path]:
    """catalog_state(), for one test."""
    with catalog_state() as path:
        yield path


@pytest.fixture(scope="session")
def local_catalog(settings: Settings) -> Iterator[LocalCatalog]:
    """The tests' catalog database (FRUITS_CATALOG_URI of `test_env`), empty at the start."""
    with catalog_state() as state_dir:
        server = from_uri(settings.catalog_uri, state_dir)
        server.start()
        try:
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
def spark(settings: Settings, local_s3: LocalS3, local_catalog: LocalCatalog):
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


def namespace_for_test(module: str, test: str, node_id: str) -> str:
    """An Iceberg namespace for one test ([a-z][a-z0-9_]*, 60 characters at most): readable
    module and test names, cut short, then a hash of the test's node id that keeps it unique."""
    names = (name.lower().removeprefix("test_") for name in (module, test))
    words = re.sub(r"[^a-z0-9]+", "_", "_".join(names)).strip("_")
    digest = hashlib.sha256(node_id.encode()).hexdigest()[:8]
    return f"t_{words[:49].rstrip('_')}_{digest}"


@pytest.fixture
def fresh_layout(settings: Settings, request: pytest.FixtureRequest) -> Layout:
    """A prefix and an Iceberg namespace of its own for each test, so Spark outputs never mix
    between tests."""
    module = request.module.__name__.split(".")[-1]
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    return Layout(
        settings.bucket,
        f"{settings.prefix}/{module}/{name}",
        namespace_for_test(module, request.node.name, request.node.nodeid),
    )


@pytest.fixture(scope="session")
def upload_sample(settings: Settings, local_s3: LocalS3):
    """Upload synthetic photos (bootstrap.sample.sample_data) under a layout's raw/ prefix."""
    from dataclasses import replace

    from bootstrap.sample.sample_data import synthetic_files, upload

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


# --- the fake EMR control plane, its durations shrunk (bootstrap.local.fake_emr) ------------------
# IdleTimeout 60 s (EMR's minimum) passes in 1.2 s; logs reach S3 1.5 s after a step ends.
QUICK_EMR_IDLE_SCALE = 0.02


@pytest.fixture
def quick_emr(settings: Settings, local_s3: LocalS3, tmp_path: Path, monkeypatch):
    """A fake EMR on loopback with short lifecycle durations; boto3 finds it (and the local
    S3 server) through AWS_ENDPOINT_URL_*, as the step launcher does."""
    from bootstrap.local.fake_emr import FakeEmrServer, FakeEmrTiming

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
        # Bootstrapping a node makes a venv: seconds, more on a busy machine.
        deadline = time.monotonic() + 90
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


# --- an S3 server that enforces the three IAM policies (bootstrap.aws.iam) ------------------------
# moto in server mode with INITIAL_NO_AUTH_ACTION_COUNT=0 checks each request's SigV4 signature
# and the caller's IAM user policies (moto.core.authorization, moto.iam.access_control); it runs
# through moto_signed_headers.py, which lets moto verify S3A's signatures (see there). What it
# evaluates: Allow and Deny, Action and Resource with * wildcards, per request. What it does not,
# so these tests cannot prove it (the policies are still written for AWS's semantics):
# - conditions other than StringEquals (StringLikeIfExists on s3:prefix is ignored: listing
#   outside the granted prefixes is not refused here);
# - non-S3 resources: moto authorizes EMR, KMS, EC2 and Glue calls against "*", so resource-scoped
#   EMR statements (the host's, the operator's) cannot be enforced by moto (the fake EMR
#   decides its own calls, with conditions, from the policies it is given); the nodes' S3
#   requests are decided by the fake's S3 gateway, conditions included; the instance's Glue
#   statement is granted on "*" (its actions are enforced, not its database and tables);
# - S3 action names follow the operation: moto asks s3:HeadBucket where AWS asks s3:ListBucket
#   (MOTO_ALIASES maps it);
# - multi-object delete (S3A's) asks s3:DeleteObject on the bucket, then checks each key
#   against bucket policies only: as_moto_asks grants it on the bucket where the policy grants
#   it on some keys, so a multi-object delete outside the written prefixes is not refused here.
# Used by tests/bootstrap/aws/test_iam.py (the four assets under the instance policy) and by
# tests/fruits_assets/test_emr_round_trip.py (the fake-EMR round trip, each principal its own).
MOTO_ALIASES = {"s3:ListBucket": ["s3:HeadBucket"]}


def as_moto_asks(document: dict) -> dict:
    """The same grants, as moto asks for them (see above)."""
    statements = []
    for statement in document["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        extra = [alias for a in actions for alias in MOTO_ALIASES.get(a, [])]
        statements.append(statement | {"Action": actions + extra})
        if all(a.startswith("glue:") for a in actions):
            statements[-1]["Resource"] = "*"
        if statement["Effect"] == "Allow" and "s3:DeleteObject" in actions:
            resources = statement["Resource"]
            buckets = {
                r.split("/")[0] for r in ([resources] if isinstance(resources, str) else resources)
            }
            statements.append(
                {"Effect": "Allow", "Action": ["s3:DeleteObject"], "Resource": sorted(buckets)}
            )
    return document | {"Statement": statements}


@dataclass
class PrivateNetwork:
    """The account as the runbook (docs/deploying-on-aws.md) has the user set it up: a private
    subnet (no NAT, no internet gateway) with S3's gateway endpoint and KMS's and Glue's
    interface endpoints (private DNS), then `roles` (bootstrap.aws.roles.ensure_roles): the
    roles, the KMS key with its key policy, the subnet and its VPC tagged."""

    subnet_id: str
    kms_key_arn: str
    endpoint: str
    region: str
    service_keys: tuple[str, str]  # EMR's and KMS's own reads (SERVICE_READS)

    def client(self, service: str):
        """An `ec2` or `kms` client with the service side's credentials: what the fake EMR
        describes the network and reads key policies with."""
        import boto3

        key, secret = self.service_keys
        return boto3.client(
            service, region_name=self.region, endpoint_url=self.endpoint,
            aws_access_key_id=key, aws_secret_access_key=secret,
        )  # fmt: skip


# What AWS's side reads on its own (the EMR service role's ec2:Describe* under
# AmazonEMRServicePolicy_v2, KMS reading its key policies): one moto user stands for both.
SERVICE_READS = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow", "Resource": "*",
        "Action": ["ec2:Describe*", "kms:DescribeKey", "kms:GetKeyPolicy"],
    }],
}  # fmt: skip
# moto decides KMS calls by the caller's IAM user policy only, never by the key policy's grants:
# this stands for the grant of bootstrap.aws.roles.key_policy to the instance role (the
# instance policy has no KMS statement), which the fake EMR checks on its own
# (fake_node.key_use_decision) before the node's GenerateDataKey reaches moto.
KEY_POLICY_GRANT_TO_INSTANCE = {
    "Effect": "Allow", "Action": ["kms:GenerateDataKey"], "Resource": "*"
}  # fmt: skip


def create_private_subnet(ec2, region: str) -> str:
    """The user's own part of the runbook's network (no project command creates it): a VPC,
    a subnet on a route table of its own with no default route, S3's gateway endpoint on that
    table, and KMS's and Glue's interface endpoints with private DNS. `roles` tags them."""
    from bootstrap.aws.network import interface_service

    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName=interface_service(region, "s3"), VpcEndpointType="Gateway",
        RouteTableIds=[table],
    )  # fmt: skip
    for service in ("kms", "glue"):
        ec2.create_vpc_endpoint(
            VpcId=vpc, ServiceName=interface_service(region, service),
            VpcEndpointType="Interface", SubnetIds=[subnet], PrivateDnsEnabled=True,
        )  # fmt: skip
    return subnet


def set_up_private_network(target: Settings, endpoint: str) -> tuple[str, str]:
    """create_private_subnet, then `roles` for it (ensure_roles, as the runbook's step 3), by
    the account's administrator before the server enforces IAM; (subnet id, KMS key ARN)."""
    import boto3

    from bootstrap.aws.roles import ensure_roles

    admin = boto3.Session(
        aws_access_key_id="admin", aws_secret_access_key="admin", region_name=target.region
    )
    subnet = create_private_subnet(admin.client("ec2", endpoint_url=endpoint), target.region)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", endpoint)  # ensure_roles's clients name no endpoint
        key_arn = ensure_roles(admin, target, (subnet,), report=lambda line: None)
    return subnet, key_arn


@dataclass
class EnforcedIam:
    settings: Settings  # the enforcing server's endpoint, buckets and prefixes
    keys: dict[str, tuple[str, str]]  # principal -> access key id, secret
    network: PrivateNetwork | None = None  # enforcing_moto(network=True)

    def credentials(self, principal: str) -> dict[str, str]:
        """The principal's credentials as environment variables (what its processes get)."""
        key, secret = self.keys[principal]
        return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}

    def s3(self, principal: str):
        import boto3
        from botocore.config import Config

        key, secret = self.keys[principal]
        return boto3.client(
            "s3", region_name=self.settings.region, endpoint_url=self.settings.s3_endpoint,
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )  # fmt: skip

    @contextmanager
    def acting_as(self, principal: str) -> Iterator[None]:
        """This process's default AWS credentials are the principal's (boto3's default
        session caches what it found, so it is dropped on the way in and out)."""
        import boto3

        with pytest.MonkeyPatch.context() as patch:
            for key, value in self.credentials(principal).items():
                patch.setenv(key, value)
            patch.setattr(boto3, "DEFAULT_SESSION", None)
            yield
            boto3.DEFAULT_SESSION = None

    def upload_photos(self, dates: list[str], per_date: int) -> dict[str, int]:
        """Synthetic photos under raw/, uploaded as the operator (its policy stages images)."""
        from bootstrap.sample.sample_data import synthetic_files, upload

        files = synthetic_files(dates, per_date, phone_per_date=0, seed=3, broken=False)
        with self.acting_as("operator"):
            return upload(files, self.settings)

    @staticmethod
    def refused(call) -> bool:
        """Whether the S3 call was refused for want of permission."""
        from botocore.exceptions import ClientError

        try:
            call()
        except ClientError as error:
            return error.response["Error"]["Code"] in ("AccessDenied", "403")
        return False


@pytest.fixture(scope="module")
def enforced_iam(settings: Settings, tmp_path_factory) -> Iterator[EnforcedIam]:
    """A moto server of the module's own that enforces IAM, with the pipeline and staging
    buckets and a user per principal holding only its policy (`bootstrap.aws.iam`)."""
    with enforcing_moto(settings, tmp_path_factory.mktemp("enforcing_s3") / "moto.log") as server:
        yield server


@pytest.fixture(scope="session")
def enforcing_iam(settings: Settings):
    """enforcing_moto(log, **changes): enforced_iam's server, for a module whose policies are
    written for other settings."""
    return lambda log, **changes: enforcing_moto(settings, log, **changes)


@contextmanager
def enforcing_moto(
    settings: Settings, log: Path, network: bool = False, **changes: object
) -> Iterator[EnforcedIam]:
    """enforced_iam's server; `changes` are Settings fields the policies are written for
    (catalog_type="glue": the instance's Glue grants). `network`: the account also has the
    runbook's private subnet, roles and KMS key (PrivateNetwork), and the instance user may
    ask KMS for data keys (KEY_POLICY_GRANT_TO_INSTANCE)."""
    import json
    import subprocess
    import sys
    import time
    import urllib.request
    from dataclasses import replace

    import boto3

    from bootstrap.aws.iam import PRINCIPALS, policy
    from bootstrap.local.processes import stop_group

    endpoint = f"http://127.0.0.1:{free_port()}"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("moto_signed_headers.py")),
             "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1]],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # `roles` attaches AmazonEMRServicePolicy_v2, which moto then has to know.
            env=os.environ | ({"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"} if network else {}),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not LocalS3(endpoint).responds():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        target = replace(
            settings, s3_endpoint=endpoint, bucket="fruits-iam", prefix="fruits",
            staging_bucket="fruits-iam-staging", staging_prefix="emr_staging", **changes,
        )  # fmt: skip
        s3 = boto3.client("s3", region_name=target.region, endpoint_url=endpoint)
        iam = boto3.client("iam", region_name=target.region, endpoint_url=endpoint)
        for bucket in (target.bucket, target.staging_bucket):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": target.region}
            )
        keys = {}
        for principal in PRINCIPALS:
            document = as_moto_asks(policy(target, principal))
            if network and principal == "instance":
                document["Statement"].append(KEY_POLICY_GRANT_TO_INSTANCE)
            iam.create_user(UserName=principal)
            iam.put_user_policy(
                UserName=principal, PolicyName="only", PolicyDocument=json.dumps(document)
            )
            key = iam.create_access_key(UserName=principal)["AccessKey"]
            keys[principal] = (key["AccessKeyId"], key["SecretAccessKey"])
        private = None
        if network:
            subnet, key_arn = set_up_private_network(target, endpoint)
            iam.create_user(UserName="aws-service")
            iam.put_user_policy(
                UserName="aws-service", PolicyName="only", PolicyDocument=json.dumps(SERVICE_READS)
            )
            key = iam.create_access_key(UserName="aws-service")["AccessKey"]
            service_keys = (key["AccessKeyId"], key["SecretAccessKey"])
            private = PrivateNetwork(subnet, key_arn, endpoint, target.region, service_keys)
        # From now on every request is authenticated and authorized.
        reset = urllib.request.Request(  # as text: a form body would not reach moto's handler
            f"{endpoint}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(reset, timeout=10).read()
        yield EnforcedIam(target, keys, private)
    finally:
        stop_group(server, timeout_s=10)


@pytest.fixture(scope="session")
def outside_readers():
    """tests/outside_readers.py: Spark SQL, pyiceberg and DuckDB reading the tables."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "outside_readers", Path(__file__).with_name("outside_readers.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def last_run_messages():
    """Every message of a Dagster instance's last run, one per line, read from the instance as
    the UI reads it. A CLI's own output is no substitute: it shows a step's lines through a
    `tail -F` of the step's captured log that Dagster stops without waiting for it, so a step's
    last lines may never reach it."""
    import dagster as dg

    def messages(dagster_home: str) -> str:
        with dg.DagsterInstance.from_config(dagster_home) as instance:
            run = instance.get_runs(limit=1)[0]
            return "\n".join(record.user_message for record in instance.all_logs(run.run_id))

    return messages
