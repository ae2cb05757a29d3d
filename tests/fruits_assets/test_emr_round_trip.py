"""The `emr` deployment end to end through the real EmrPySparkStepLauncher, against the fake
EMR control plane (bootstrap.local.fake_emr) and an S3 server that enforces IAM (tests/conftest.py
`enforced_iam`): no AWS, nothing skipped. Each principal acts with credentials that hold only
its policy (bootstrap.aws.iam): the operator stages the weights and photos and creates the cluster
(its S3 staging; the fake EMR's API holds the operator and the host to their policies, with
their conditions), the Dagster host materializes (code package, step files, events, log reads,
raw_images) on the cluster it finds by its tag, and everything on the node runs as the
instance role (the bootstrap action's `aws s3 cp`, the step's S3A and boto3, log pushes), with
EMR's environment (no region preset) and S3 only through the subnet's regional endpoint.

The account is set up as the runbook has the user set it up (conftest.PrivateNetwork): a
private subnet without NAT, with S3's gateway endpoint and KMS's and Glue's interface
endpoints, then `roles` (the roles, the KMS key and its key policy, the subnet and its VPC
tagged); `create` starts the cluster in that subnet with that key. The fake EMR, given the
account's EC2, provisions there as the service role, and the node boots through its KMS call
for its local disks' data key (GenerateDataKey as the instance role, on moto's KMS).

The tables' catalog is the EMR deployment's: Iceberg's GlueCatalog with S3FileIO on the node
(catalog_type glue, the deployment's default), against moto's Glue, which the node reaches
through the subnet's Glue interface endpoint (AWS_ENDPOINT_URL_GLUE: bootstrap.local.fake_node)
under the instance policy's Glue grants. The checks read the tables through Glue. This proves
the wiring, not Glue's optimistic concurrency: moto's UpdateTable ignores VersionId."""

import os
import subprocess
import time
from pathlib import Path

import boto3
import dagster as dg
import pytest
from pyiceberg.catalog.glue import GlueCatalog

from bootstrap.aws.emr_cluster import ClusterOptions, create
from bootstrap.aws.iam import policy
from bootstrap.aws.wheelhouse import canonical, lock_pins
from bootstrap.local.dagster_home import prepare_dagster_home
from bootstrap.local.fake_emr import FakeEmrServer, FakeEmrTiming
from bootstrap.sample.demo import launch_command
from fruits_assets.deployments import current_settings
from spark import tables
from spark.layout import Layout, split_uri

pytestmark = pytest.mark.slow
D1, D2 = "2026-11-13", "2026-11-14"
CLUSTER_KEY = "TEST_EMR_CLUSTER_ID"


@pytest.fixture(scope="module")
def enforced_iam(enforcing_iam, tmp_path_factory):
    """The conftest's enforcing moto server, its policies written for catalog_type glue (the
    instance's Glue grants): moto serves Glue there too; and EC2 and KMS, with the runbook's
    private subnet (S3 gateway, KMS and Glue interface endpoints), roles and KMS key
    (conftest.PrivateNetwork)."""
    log = tmp_path_factory.mktemp("enforcing_s3") / "moto.log"
    with enforcing_iam(log, catalog_type="glue", catalog_uri=None, network=True) as server:
        yield server


@pytest.fixture(scope="module")
def fake_emr(enforced_iam, tmp_path_factory):
    """The fake EMR on the enforcing S3 server; its nodes hold the instance role's credentials.
    Given the account's network, it provisions in the cluster's subnet as EMR's service role
    and boots the node through its KMS call for the local disks' data key."""
    # Step logs come 2 s after a step ends (EMR: minutes), within the launcher's wait.
    timing = FakeEmrTiming(log_push_delay_s=2)
    principals = {
        enforced_iam.keys[p][0]: policy(enforced_iam.settings, p) for p in ("operator", "host")
    }
    with FakeEmrServer(
        enforced_iam.settings, tmp_path_factory.mktemp("fake_emr"), timing=timing,
        instance_credentials=enforced_iam.credentials("instance"), principals=principals,
        instance_policy=policy(enforced_iam.settings, "instance"),
        network=enforced_iam.network.client("ec2"), kms=enforced_iam.network.client("kms"),
    ) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def cluster_layout(enforced_iam) -> Layout:
    """The cluster's FRUITS_PREFIX: a cluster's settings are fixed when it is created."""
    return Layout(enforced_iam.settings.bucket, enforced_iam.settings.prefix)


@pytest.fixture(scope="module")
def emr_cluster(
    enforced_iam, cluster_layout, fake_emr, weights, tmp_path_factory, save_legacy_h5
) -> dict[str, str]:
    """One cluster for the module, created by the CLI as the operator (which stages the
    wheelhouse) and bootstrapped by the real bootstrap action as the instance role; the
    host's environment for it, with the host's credentials."""
    target = enforced_iam.settings
    scratch = tmp_path_factory.mktemp("emr_cluster")
    save_legacy_h5(scratch / "weights.h5", weights.arrays)
    weights_uri = cluster_layout.weights_uri("mobilenet_v2_no_top.h5")
    enforced_iam.s3("operator").upload_file(
        str(scratch / "weights.h5"), target.bucket, weights_uri.split("/", 3)[3]
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRUITS_", "AWS_"))}
    env |= {
        "FRUITS_DEPLOYMENT": "emr",
        "FRUITS_REGION": target.region,
        "FRUITS_BUCKET": target.bucket,
        "FRUITS_PREFIX": cluster_layout.prefix,
        "FRUITS_WEIGHTS": weights_uri,
        "FRUITS_STAGING_BUCKET": target.staging_bucket,
        "FRUITS_STAGING_PREFIX": target.staging_prefix,
        "FRUITS_NAMESPACE": target.namespace,  # the Glue database the policies grant
        # No FRUITS_CATALOG_TYPE: the emr deployment's own, glue.
        # Where an AWS SDK would find AWS, it finds the local stand-ins.
        "AWS_ENDPOINT_URL_EMR": fake_emr.endpoint,
        "AWS_ENDPOINT_URL_S3": target.s3_endpoint,
        "AWS_ENDPOINT_URL_GLUE": target.s3_endpoint,
        "AWS_DEFAULT_REGION": target.region,
    }
    emr_settings = current_settings(env)
    assert emr_settings.catalog_type == "glue"
    # As `create --subnet-id S --kms-key-arn K` (the key `roles` made) on the runbook's subnet.
    options = ClusterOptions(
        kms_key_arn=enforced_iam.network.kms_key_arn,
        tls_certificates=f"s3://{target.staging_bucket}/{target.staging_prefix}/bootstrap/t.zip",
        subnet_ids=(enforced_iam.network.subnet_id,),
    )
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # boto3 inside create() reads the endpoints from the environment
    try:
        with enforced_iam.acting_as("operator"):
            cluster_id = create(emr_settings, options, env)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    # The host finds the cluster by its tag at each launch: no FRUITS_EMR_CLUSTER_ID (the id
    # travels to the tests below under a name nothing of the project reads).
    env |= enforced_iam.credentials("host") | {CLUSTER_KEY: cluster_id}  # the Dagster host's
    cluster = fake_emr.emr.clusters[cluster_id]
    deadline = time.time() + 900  # a bare node installs the whole wheelhouse
    while cluster.state in ("STARTING", "BOOTSTRAPPING") and time.time() < deadline:
        time.sleep(1)
    bootstrap_log = cluster.node.root / "var" / "log" / "fruits-bootstrap.log"
    assert cluster.state == "WAITING", (
        cluster.reason,
        bootstrap_log.read_text()[-3000:] if bootstrap_log.exists() else "no bootstrap log",
    )
    return env


@pytest.fixture
def emr_env(emr_cluster, tmp_path) -> dict[str, str]:
    return emr_cluster | {"DAGSTER_HOME": str(prepare_dagster_home(tmp_path / "dagster_home"))}


def glue_catalog(enforced_iam) -> GlueCatalog:
    """pyiceberg's Glue catalog on moto's Glue, files through pyarrow's S3: a reader outside
    the cluster, with the instance role's credentials (a principal that may read the tables)."""
    target = enforced_iam.settings
    key, secret = enforced_iam.keys["instance"]
    return GlueCatalog(
        "glue",
        **{
            "glue.endpoint": target.s3_endpoint,
            "glue.region": target.region,
            "glue.access-key-id": key,
            "glue.secret-access-key": secret,
            "s3.endpoint": target.s3_endpoint,
            "s3.region": target.region,
            "s3.access-key-id": key,
            "s3.secret-access-key": secret,
            "s3.force-virtual-addressing": "false",
        },
    )


def glue_table(enforced_iam, name: str) -> dict:
    """The Glue table of one of the pipeline's tables, as boto3 sees it (the instance role)."""
    target = enforced_iam.settings
    key, secret = enforced_iam.keys["instance"]
    glue = boto3.client(
        "glue", region_name=target.region, endpoint_url=target.s3_endpoint,
        aws_access_key_id=key, aws_secret_access_key=secret,
    )  # fmt: skip
    return glue.get_table(DatabaseName=target.namespace, Name=name)["Table"]


def materialize(
    env: dict[str, str], repo_root: Path, dates: tuple[str, str] = (D1, D2)
) -> subprocess.CompletedProcess:
    return subprocess.run(
        launch_command(list(dates), "raw_images,image_features"),
        env=env,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_backfill_runs_as_one_emr_step_and_reports_back(
    emr_env, enforced_iam, repo_root, fake_emr, monkeypatch, last_run_messages
) -> None:
    enforced_iam.upload_photos([D1, D2], per_date=6)
    result = materialize(emr_env, repo_root)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    cluster = fake_emr.emr.clusters[emr_env[CLUSTER_KEY]]
    steps = [s for s in cluster.steps if s.args[0].endswith("spark-submit")]
    assert len(steps) == 1 and steps[0].state == "COMPLETED"  # two dates, one step
    # The node booted in the runbook's private subnet, through its KMS call for the local
    # disks' data key (the key `roles` made), granted under the key policy.
    network = enforced_iam.network
    assert cluster.request["Instances"]["Ec2SubnetIds"] == [network.subnet_id]
    assert cluster.node.kms_calls == [f"kms:GenerateDataKey {network.kms_key_arn}: granted"]
    # The cluster walked through its start before the run; the step's logs came.
    walk = [state for state, _ in cluster.history]
    assert walk[:3] == ["STARTING", "BOOTSTRAPPING", "WAITING"] and "RUNNING" in walk
    assert cluster.state == "WAITING"
    # The step's driver logs, fetched from the LogUri, are in the run's event log.
    messages = last_run_messages(emr_env["DAGSTER_HOME"])
    assert "Spark Driver stdout:" in messages and "Spark Driver stderr:" in messages
    assert "did not appear on S3" not in messages
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
        snapshots = {r.asset_materialization.metadata["snapshot_id"].value for r in records}

    # The step's commits went to Glue: the table is Iceberg's, its metadata file on S3 is the
    # one Iceberg reads, and its `main` is the snapshot both dates were published in.
    found = glue_table(enforced_iam, tables.FEATURES)
    assert found["Parameters"]["table_type"] == "ICEBERG"
    metadata_location = found["Parameters"]["metadata_location"]
    bucket, key = split_uri(metadata_location)
    assert enforced_iam.s3("instance").head_object(Bucket=bucket, Key=key)
    features = glue_catalog(enforced_iam).load_table(
        f"{enforced_iam.settings.namespace}.{tables.FEATURES}"
    )
    assert features.metadata_location == metadata_location
    assert snapshots == {features.current_snapshot().snapshot_id}  # one commit, both dates
    rows = features.scan().to_arrow()
    dates = rows["upload_date"].to_pylist()
    assert {d: dates.count(d) for d in set(dates)} == {D1: 6, D2: 6}
    layout = Layout(enforced_iam.settings.bucket, enforced_iam.settings.prefix)
    paths = rows["path"].to_pylist()
    assert all(p.startswith(layout.raw_date_uri(d)) for p, d in zip(paths, dates, strict=True))
    assert rows["reject_reason"].null_count == 12  # the photos are all readable


def test_a_failing_step_fails_the_dagster_step_with_its_stderr(
    emr_env, enforced_iam, repo_root, fake_emr, last_run_messages
) -> None:
    dates = ("2026-11-15", "2026-11-16")
    enforced_iam.upload_photos(list(dates), per_date=2)
    # The cluster's environment is what the step sees: break its weights URI there (a key
    # the instance role may read, so the step fails for its absence, not for a refusal).
    cluster = fake_emr.emr.clusters[emr_env[CLUSTER_KEY]]
    target = enforced_iam.settings
    missing = f"s3://{target.staging_bucket}/{target.staging_prefix}/nowhere/weights.h5"
    spark_env = cluster.spark_env_file.read_text()
    cluster.spark_env_file.write_text(spark_env + f'export FRUITS_WEIGHTS="{missing}"\n')
    try:
        result = materialize(emr_env, repo_root, dates)
    finally:
        cluster.spark_env_file.write_text(spark_env)  # the module's other tests share it
    assert result.returncode != 0
    messages = last_run_messages(emr_env["DAGSTER_HOME"])
    assert 'Execution of step "image_features" failed' in messages
    assert "Spark Driver stderr" in messages  # the step's own stderr, fetched from the LogUri
    assert "nowhere/weights.h5" in messages
    # The asset failed, not spark-submit: the failure came back as the step's Dagster events
    # while the EMR step itself ended COMPLETED, and its stderr came within the launcher's wait.
    # (An EMR step that fails itself is reported with FailureDetails: test_emr.py.)
    assert [s for s in cluster.steps if s.args[0].endswith("spark-submit")][-1].state == "COMPLETED"
    assert "did not appear on S3" not in messages


def test_the_node_runs_the_cluster_lock_and_the_cluster_s_spark(emr_cluster, fake_emr) -> None:
    """What the bootstrap action left on the node: exactly requirements-emr.lock in a Python
    that reaches pyspark only through Spark's own PYTHONPATH, as on EMR."""
    node = fake_emr.emr.clusters[emr_cluster[CLUSTER_KEY]].node

    def node_python(code: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(node.python), "-c", code],
            env=node.environment() | env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    freeze = node_python(
        "import importlib.metadata as m\n"
        "for d in m.distributions(): print(f'{d.name}=={d.version}')"
    )
    names_versions = [line.split("==") for line in freeze.stdout.split()]
    installed = {f"{canonical(name)}=={version}" for name, version in names_versions}
    locked = {f"{canonical(pin.name)}=={pin.version}" for pin in lock_pins()}
    assert locked <= installed and not {p.split("==")[0] for p in installed} & {
        "pytest", "moto", "ruff", "playwright", "pyspark", "py4j"
    }  # fmt: skip
    assert node_python("import pyspark").returncode != 0
    spark_path = node.spark_python_path()
    spark = node_python("import pyspark; print(pyspark.__file__)", PYTHONPATH=spark_path)
    assert spark.returncode == 0 and "pyspark.zip" in spark.stdout, spark.stderr
    assert fake_emr.emr.spark_master.startswith("local-cluster[")


def test_each_principal_is_refused_outside_its_policy(emr_cluster, enforced_iam, fake_emr) -> None:
    """The round trip's own server, users and staged files: what the tests above did passed
    under the policies, and a request beyond each policy is refused."""
    cluster = fake_emr.emr.clusters[emr_cluster[CLUSTER_KEY]]
    target = enforced_iam.settings
    layout = Layout(target.bucket, target.prefix)
    # The bootstrap action the node ran, and its stdout the node pushed to the LogUri.
    script = split_uri(cluster.request["BootstrapActions"][0]["ScriptBootstrapAction"]["Path"])
    log = split_uri(
        f"{cluster.log_uri}{cluster.id}/node/{cluster.node.instance_id}"
        "/bootstrap-actions/1/stdout.gz"
    )
    instance, host, operator = (enforced_iam.s3(p) for p in ("instance", "host", "operator"))
    refused = enforced_iam.refused
    assert host.get_object(Bucket=log[0], Key=log[1])["Body"].read()  # both exist
    assert instance.get_object(Bucket=script[0], Key=script[1])["Body"].read()

    # The cluster cannot rewrite what every node re-reads, nor the photos.
    assert refused(lambda: instance.put_object(Bucket=script[0], Key=script[1], Body=b"x"))
    raw = layout.raw_image_key(D1, "kiwi", "new.jpg")
    assert refused(lambda: instance.put_object(Bucket=target.bucket, Key=raw, Body=b"x"))
    # The host neither, nor the pipeline's outputs.
    assert refused(lambda: host.put_object(Bucket=script[0], Key=script[1], Body=b"x"))
    features = layout.key("features", "x.parquet")
    assert refused(lambda: host.put_object(Bucket=target.bucket, Key=features, Body=b"x"))
    # The operator reads no step logs and writes no outputs.
    assert refused(lambda: operator.get_object(Bucket=log[0], Key=log[1]))
    assert refused(lambda: operator.put_object(Bucket=target.bucket, Key=features, Body=b"x"))
