"""The real bootstrap action (bootstrap/aws/emr/install_python_deps.sh) on a fake node: a clean
Python 3.11, no package index, S3 through the `aws` shim. Tiny wheels stand in for the lock's
(the full wheelhouse is installed by tests/fruits_assets/test_emr_round_trip.py)."""

import gzip
import json
import subprocess
import time
from collections.abc import Iterator

import boto3
import pytest

from bootstrap.aws.wheelhouse import BOOTSTRAP_SCRIPT
from bootstrap.local.fake_emr import FakeEmrServer
from bootstrap.local.fake_node import FakeNode, S3Gateway
from fruits_assets.deployments.emr import cluster_id_on_node

REQUEST = {"Instances": {"InstanceFleets": [
    {"InstanceFleetType": "MASTER", "Name": "primary",
     "InstanceTypeConfigs": [{"InstanceType": "m6i.xlarge"}]},
]}}  # fmt: skip


@pytest.fixture(scope="module")
def gateway(settings, local_s3) -> Iterator[S3Gateway]:
    with S3Gateway(str(settings.s3_endpoint), settings.region) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def node(settings, gateway, tmp_path_factory) -> FakeNode:
    node = FakeNode(tmp_path_factory.mktemp("node"), settings, s3_gateway=gateway.endpoint)
    node.provision("j-NODETEST", REQUEST, time.time())
    return node


def bootstrap(node: FakeNode, folder: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(BOOTSTRAP_SCRIPT), folder, node.settings.region],
        env=node.environment(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("[fruits-bootstrap] ERROR: ")
    return lines[0]


def test_the_node_is_bare_and_names_its_cluster(node) -> None:
    job_flow = json.loads(node.job_flow_file.read_text())
    assert job_flow["jobFlowId"] == "j-NODETEST" and job_flow["masterInstanceType"] == "m6i.xlarge"
    assert cluster_id_on_node(node.environment()) == "j-NODETEST"
    assert cluster_id_on_node({"FRUITS_JOB_FLOW_FILE": str(node.root / "nowhere")}) is None
    # nothing but what `python3.11 -m venv` seeds, and no index to get more from
    freeze = subprocess.run(
        [str(node.python), "-m", "pip", "freeze", "--all"],
        env=node.environment(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert {line.split("==")[0] for line in freeze.stdout.split()} <= {"pip", "setuptools"}
    offline = subprocess.run(
        [str(node.python), "-m", "pip", "download", "--no-deps", "six", "-d", str(node.root)],
        env=node.environment(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert offline.returncode != 0


@pytest.mark.slow
def test_it_installs_the_staged_wheelhouse_once(node, stage_wheelhouse) -> None:
    # (a name as some projects spell it: wheels normalize it to fruits_other_probe)
    folder = stage_wheelhouse(["fruits-probe==1.0", "Fruits.Other-Probe==2.0"])
    done = bootstrap(node, folder)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # pip's output goes to the log only
    imported = subprocess.run(
        [str(node.python), "-c", "import fruits_probe, fruits_other_probe as o; print(o.VERSION)"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert imported.stdout.strip() == "2.0", imported.stderr
    again = bootstrap(node, folder)
    assert again.returncode == 0 and again.stderr == ""
    log = (node.root / "var" / "log" / "fruits-bootstrap.log").read_text()
    assert "already installed" in log and log.count("installing 2 pinned packages") == 1


def test_a_wheel_missing_from_the_wheelhouse_fails_in_one_line(node, stage_wheelhouse) -> None:
    folder = stage_wheelhouse(["fruits-probe==1.1", "fruits-absent==2.0"], ["fruits-probe==1.1"])
    line = one_error_line(bootstrap(node, folder))
    assert "has no wheel for fruits-absent==2.0" in line and folder in line


def test_a_failing_s3_copy_fails_in_one_line(node, settings) -> None:
    folder = f"s3://{settings.bucket}/fake_node/never-staged"
    line = one_error_line(bootstrap(node, folder))
    assert f"cannot copy {folder}/requirements-emr.lock from S3: fatal error:" in line


def test_a_node_without_python_3_11_fails_in_one_line(node, stage_wheelhouse, tmp_path) -> None:
    bare = FakeNode(tmp_path / "bare", node.settings)
    bare.provision("j-BARE", REQUEST, time.time(), python=False)
    folder = stage_wheelhouse(["fruits-probe==1.2"])
    line = one_error_line(bootstrap(bare, folder))
    assert f"no {bare.python} on this node, and dnf could not install python3.11" in line


@pytest.mark.slow
def test_a_failing_bootstrap_action_terminates_the_fake_cluster(
    settings, local_s3, stage_wheelhouse, s3, tmp_path
) -> None:
    folder = stage_wheelhouse(["fruits-probe==1.3", "fruits-absent==2.1"], ["fruits-probe==1.3"])
    request = REQUEST | {
        "Name": "bootstrap-fails",
        "LogUri": f"s3://{settings.bucket}/fake_node/logs/",
        "BootstrapActions": [{"Name": "deps", "ScriptBootstrapAction": {
            "Path": f"{folder}/install_python_deps.sh", "Args": [folder, settings.region]}}],
    }  # fmt: skip
    with FakeEmrServer(settings, tmp_path / "emr") as server:
        emr = boto3.client("emr", region_name=settings.region, endpoint_url=server.endpoint)
        cluster_id = emr.run_job_flow(**request)["JobFlowId"]
        deadline = time.time() + 120
        while (status := emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"])[
            "State"
        ] in ("STARTING", "BOOTSTRAPPING", "TERMINATING") and time.time() < deadline:
            time.sleep(0.5)
    assert status["State"] == "TERMINATED_WITH_ERRORS"
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert (
        "bootstrap action 1 returned a non-zero return code"
        in status["StateChangeReason"]["Message"]
    )
    key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"fake_node/logs/{cluster_id}/")[
            "Contents"
        ]
        if o["Key"].endswith("bootstrap-actions/1/stderr.gz")
    )
    stderr = gzip.decompress(s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read())
    assert b"has no wheel for fruits-absent==2.1" in stderr


def test_the_node_has_no_region_and_reaches_s3_only_in_its_own(node, gateway, s3, settings) -> None:
    """EMR presets no region on a node: an S3 client given none signs for us-east-1, which the
    subnet's regional gateway endpoint does not reach; naming the region reaches S3."""
    env = node.environment()
    assert not {k for k in env if k in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")}
    s3.put_object(Bucket=settings.bucket, Key="fake_node/region/probe.txt", Body=b"probe")
    source = f"s3://{settings.bucket}/fake_node/region/probe.txt"

    def copy(*region: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["aws", "s3", "cp", *region, source, str(node.root / "tmp" / "probe.txt")],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    refused = copy()
    assert refused.returncode == 1 and refused.stderr.startswith("fatal error:"), refused.stderr
    assert gateway.refused and gateway.refused[-1].endswith("signed for us-east-1")
    assert copy("--region", settings.region).returncode == 0
    assert (node.root / "tmp" / "probe.txt").read_bytes() == b"probe"


def test_the_gateway_decides_the_nodes_requests_with_the_policy_s_conditions(
    node, s3, settings
) -> None:
    """Given the instance role's policy, the gateway evaluates its conditions before the S3
    server does (moto's IAM does not: s3:prefix): a listing outside the granted prefixes
    is refused, one under raw/ goes on."""
    from bootstrap.aws.iam import instance_policy
    from spark.layout import Layout

    layout = Layout.of(settings)
    for key in (layout.raw_image_key("2026-11-20", "kiwi", "a.jpg"), "elsewhere/secret.txt"):
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"x")
    with S3Gateway(str(settings.s3_endpoint), settings.region, instance_policy(settings)) as gw:
        env = node.environment() | {"AWS_ENDPOINT_URL_S3": gw.endpoint}

        def copy(source: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["aws", "s3", "cp", "--recursive", "--region", settings.region,
                 f"s3://{settings.bucket}/{source}", str(node.root / "tmp" / "copied")],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        assert copy(layout.raw_date_key("2026-11-20")).returncode == 0
        refused = copy("elsewhere/")
        assert refused.returncode == 1 and "AccessDenied" in refused.stderr, refused.stderr
        assert gw.refused == [
            f"s3:ListBucket on arn:aws:s3:::{settings.bucket} {{'s3:prefix': 'elsewhere/'}}"
        ]


def test_a_head_through_the_gateway_gives_the_object_s_size(gateway, s3, settings) -> None:
    """S3FileIO takes a file's length from HEAD: the gateway passes the S3 server's on."""
    body = b"Obj\x01" + bytes(range(256)) * 4
    s3.put_object(Bucket=settings.bucket, Key="fake_node/head/probe.avro", Body=body)
    through = boto3.client(
        "s3", region_name=settings.region, endpoint_url=gateway.endpoint,
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    head = through.head_object(Bucket=settings.bucket, Key="fake_node/head/probe.avro")
    assert head["ContentLength"] == len(body)
    got = through.get_object(Bucket=settings.bucket, Key="fake_node/head/probe.avro")
    assert got["Body"].read() == body


def test_the_node_reaches_glue_through_its_interface_endpoint(node, settings) -> None:
    """The node's Glue endpoint is the stand-in's (moto serves Glue at the S3 server's address);
    it sets no region for it either."""
    env = node.environment()
    assert env["AWS_ENDPOINT_URL_GLUE"] == settings.s3_endpoint
    assert env["AWS_ENDPOINT_URL_S3"] == node.s3_gateway != settings.s3_endpoint


def test_kms_decides_a_role_s_use_of_a_key_by_its_key_policy_and_the_role_s() -> None:
    """As KMS evaluates: a key policy naming the role allows it alone; one naming only the
    account leaves it to the role's identity policy; a Deny in either refuses."""
    from bootstrap.aws.roles import key_policy
    from bootstrap.local.fake_node import key_use_decision

    account, role = "123456789012", "arn:aws:iam::123456789012:role/fruits-emr-instance"
    key, action = f"arn:aws:kms:eu-west-3:{account}:key/k", "kms:GenerateDataKey"
    context = {"aws:RequestedRegion": "eu-west-3"}
    project = key_policy(account)
    account_only = project | {"Statement": project["Statement"][:1]}
    no_grant = {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    grant = {"Statement": [{"Effect": "Allow", "Action": "kms:GenerateDataKey*", "Resource": key}]}
    deny = {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*"}

    def decision(policy: dict, identity: dict | None) -> str:
        return key_use_decision(policy, identity, role, action, key, context)

    assert decision(project, no_grant) == "Allow"
    assert decision(account_only, no_grant) == "ImplicitDeny"
    assert decision(account_only, grant) == "Allow"
    assert decision(account_only, None) == "Allow"  # the identity side not judged
    other_role = key_policy("210987654321")  # names another account's roles only
    assert decision(other_role, grant) == "ImplicitDeny"
    assert decision(project | {"Statement": [*project["Statement"], deny]}, grant) == "Deny"
    identity_deny = {"Effect": "Deny", "Action": "kms:*", "Resource": "*"}
    assert decision(project, {"Statement": [*grant["Statement"], identity_deny]}) == "Deny"
