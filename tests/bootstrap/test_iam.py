"""The IAM policy against the layout, and against every key a real pipeline run writes."""

import json
import socket
from dataclasses import dataclass, replace

import pytest

from bootstrap.iam import READ, WRITE, allows, policy
from spark.layout import RAW, WRITTEN_PREFIXES, Layout
from spark.pipeline import fit_and_save_pca, write_reduced
from spark.settings import Settings
from spark.storage import list_keys


def staged(settings: Settings) -> Settings:
    return replace(settings, staging_bucket="fruits-staging", staging_prefix="emr_staging")


def test_no_wildcard_beyond_the_pipeline_prefixes(settings) -> None:
    document = policy(staged(settings))
    text = json.dumps(document)
    assert (
        '"s3:*"' not in text
        and '"*"' not in text
        and f"arn:aws:s3:::{settings.bucket}/*" not in text
    )
    for statement in document["Statement"]:
        resources = statement["Resource"]
        for arn in [resources] if isinstance(resources, str) else resources:
            assert arn.startswith(("arn:aws:s3:::fruits-test", "arn:aws:s3:::fruits-staging"))


def test_the_policy_follows_the_layout(settings) -> None:
    document = policy(staged(settings))
    layout = Layout(settings.bucket, settings.prefix)
    for prefix in WRITTEN_PREFIXES:
        assert allows(
            document, "s3:PutObject", settings.bucket, layout.key(prefix, "x/part-0.parquet")
        )
    raw_key = layout.raw_image_key("2026-11-20", "kiwi", "a.jpg")
    assert allows(document, "s3:GetObject", settings.bucket, raw_key)
    assert not allows(document, "s3:PutObject", settings.bucket, raw_key)  # raw/ is read-only
    assert not allows(document, "s3:GetObject", settings.bucket, "elsewhere/secret.txt")
    assert allows(document, "s3:PutObject", "fruits-staging", "emr_staging/run/step/events.pkl")
    assert set(READ) <= set(WRITE)
    assert RAW not in WRITTEN_PREFIXES


# Actions that have no resource-level permissions in IAM: "*" is the only resource they take.
RESOURCELESS = {
    "elasticmapreduce:RunJobFlow", "elasticmapreduce:AddTags", "elasticmapreduce:ListClusters",
    "elasticmapreduce:CreateSecurityConfiguration",
    "elasticmapreduce:DescribeSecurityConfiguration", "kms:CreateKey", "kms:CreateAlias",
    "kms:ListAliases", "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy",
    "kms:TagResource", "ec2:CreateTags", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
    "ec2:DescribeRouteTables", "ec2:DescribeVpcEndpoints", "s3:ListAllMyBuckets",
}  # fmt: skip


@pytest.mark.parametrize("principal", ["instance", "host", "operator"])
def test_each_principal_gets_only_what_it_needs(settings, principal, capsys) -> None:
    from bootstrap import roles
    from bootstrap.iam import main

    document = policy(staged(settings), principal)
    assert main([principal]) == 0 and json.loads(capsys.readouterr().out)["Statement"]
    actions = {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    assert not any(a.endswith(":*") for a in actions)
    for statement in document["Statement"]:
        if statement["Resource"] == ["*"]:  # only where IAM has nothing narrower
            assert set(statement["Action"]) <= RESOURCELESS, statement
    services = {a.split(":")[0] for a in actions}
    if principal == "instance":
        assert services == {"s3"}  # KMS through the key policy (bootstrap.roles)
    if principal == "host":
        steps = {"AddJobFlowSteps", "DescribeStep", "DescribeCluster", "ListSteps", "CancelSteps"}
        assert {f"elasticmapreduce:{a}" for a in steps} <= actions
        assert (
            services == {"s3", "elasticmapreduce"} and "elasticmapreduce:RunJobFlow" not in actions
        )
    if principal == "operator":
        passing = [s for s in document["Statement"] if "iam:PassRole" in s["Action"]]
        two = [f"arn:aws:iam::*:role/{r}" for r in (roles.SERVICE_ROLE, roles.INSTANCE_ROLE)]
        assert [s["Resource"] for s in passing] == [two]
    assert main(["nobody"]) == 2


@pytest.mark.slow
def test_every_key_a_run_writes_is_allowed(
    spark, s3, settings, fresh_layout, upload_sample, weights, extract
) -> None:
    upload_sample(fresh_layout, ["2026-11-15"], per_date=3)
    extract(fresh_layout, ["2026-11-15"], weights)
    version = fit_and_save_pca(spark, fresh_layout, s3, k=2, weights_sha256=weights.sha256).version
    write_reduced(spark, fresh_layout, s3, ["2026-11-15"], version)
    document = policy(replace(settings, prefix=fresh_layout.prefix))
    raw = fresh_layout.raw_prefix()
    written = [
        k for k in list_keys(s3, settings.bucket, fresh_layout.key()) if not k.startswith(raw)
    ]
    assert len(written) > 5
    denied = [k for k in written if not allows(document, "s3:PutObject", settings.bucket, k)]
    assert denied == []


# --- the policies enforced: moto's IAM access control -----------------------------------------
# moto in server mode with INITIAL_NO_AUTH_ACTION_COUNT=0 checks each request's SigV4 signature
# and the caller's IAM user policies (moto.core.authorization, moto.iam.access_control); it runs
# through moto_signed_headers.py, which lets moto verify S3A's signatures (see there). What it
# evaluates: Allow and Deny, Action and Resource with * wildcards, per request. What it does not,
# so these tests cannot prove it (the policies are still written for AWS's semantics):
# - conditions other than StringEquals (StringLikeIfExists on s3:prefix is ignored: listing
#   outside the granted prefixes is not refused here);
# - non-S3 resources: moto authorizes EMR, KMS and EC2 calls against "*", so resource-scoped EMR
#   statements (the host's, the operator's) cannot be enforced; the fake EMR checks nothing;
# - S3 action names follow the operation: moto asks s3:HeadBucket where AWS asks s3:ListBucket
#   (MOTO_ALIASES maps it);
# - multi-object delete (S3A's) asks s3:DeleteObject on the bucket, then checks each key
#   against bucket policies only: as_moto_asks grants it on the bucket where the policy grants
#   it on some keys, so a multi-object delete outside the written prefixes is not refused here.
# The fake-EMR round trip under these three users (operator creates the cluster, the host
# materializes, steps and log pushes run as the instance role) passed once, in commit 5414dbc;
# it is not kept: about 8 minutes, where make test's budget allows one Spark run here.
MOTO_ALIASES = {"s3:ListBucket": ["s3:HeadBucket"]}
D = "2026-11-15"


def as_moto_asks(document: dict) -> dict:
    """The same grants, as moto asks for them (see above)."""
    statements = []
    for statement in document["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        extra = [alias for a in actions for alias in MOTO_ALIASES.get(a, [])]
        statements.append(statement | {"Action": actions + extra})
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
class Enforced:
    settings: Settings
    keys: dict[str, tuple[str, str]]  # principal -> access key id, secret

    def s3(self, principal: str):
        import boto3
        from botocore.config import Config

        key, secret = self.keys[principal]
        return boto3.client(
            "s3", region_name=self.settings.region, endpoint_url=self.settings.s3_endpoint,
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )  # fmt: skip


@pytest.fixture(scope="module")
def enforced(settings, tmp_path_factory):
    """A moto server of its own that enforces IAM, a user per principal holding only its policy,
    and photos uploaded (before enforcement) under raw/."""
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    import boto3

    from bootstrap.local_s3 import LocalS3
    from bootstrap.processes import stop_group
    from bootstrap.sample_data import synthetic_files, upload

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    log = tmp_path_factory.mktemp("enforcing_s3") / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("moto_signed_headers.py")),
             "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1]],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not LocalS3(endpoint).responds():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        target = replace(
            settings, s3_endpoint=endpoint, bucket="fruits-iam", prefix="fruits",
            staging_bucket="fruits-iam-staging", staging_prefix="emr_staging",
        )  # fmt: skip
        s3 = boto3.client("s3", region_name=target.region, endpoint_url=endpoint)
        iam = boto3.client("iam", region_name=target.region, endpoint_url=endpoint)
        for bucket in (target.bucket, target.staging_bucket):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": target.region}
            )
        upload(synthetic_files([D], 6, phone_per_date=0, seed=3, broken=False), target)
        keys = {}
        for principal in ("instance", "host", "operator"):
            iam.create_user(UserName=principal)
            iam.put_user_policy(
                UserName=principal, PolicyName="only",
                PolicyDocument=json.dumps(as_moto_asks(policy(target, principal))),
            )  # fmt: skip
            key = iam.create_access_key(UserName=principal)["AccessKey"]
            keys[principal] = (key["AccessKeyId"], key["SecretAccessKey"])
        # From now on every request is authenticated and authorized.
        reset = urllib.request.Request(  # as text: a form body would not reach moto's handler
            f"{endpoint}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(reset, timeout=10).read()
        yield Enforced(target, keys)
    finally:
        stop_group(server, timeout_s=10)


def denied(call) -> bool:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


@pytest.mark.slow
def test_the_pipeline_runs_with_the_instance_policy_only(enforced, tmp_path, repo_root) -> None:
    """One real run of the four assets (Spark, S3A, the workers' boto3, the driver's boto3),
    every S3 request signed by a user that holds only `bootstrap.iam instance`."""
    import os
    import subprocess

    from bootstrap.dagster_home import prepare_dagster_home
    from bootstrap.demo import materialize_command

    key, secret = enforced.keys["instance"]
    target = enforced.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRUITS_", "AWS_"))}
    env |= {
        "FRUITS_DEPLOYMENT": "local", "FRUITS_S3_ENDPOINT": target.s3_endpoint,
        "FRUITS_BUCKET": target.bucket, "FRUITS_PREFIX": target.prefix,
        "FRUITS_SPARK_MASTER": "local[2]", "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": target.region,
        "DAGSTER_HOME": str(prepare_dagster_home(tmp_path / "dagster_home")),
    }  # fmt: skip
    result = subprocess.run(
        materialize_command([D]), env=env, cwd=repo_root, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    s3 = enforced.s3("instance")
    layout = Layout(target.bucket, target.prefix)
    assert list_keys(s3, target.bucket, layout.key("reduced"))  # written under the policy
    # ...and nothing beyond it.
    raw = layout.raw_image_key(D, "x", "new.jpg")
    assert denied(lambda: s3.put_object(Bucket=target.bucket, Key=raw, Body=b"x"))
    assert denied(lambda: s3.get_object(Bucket=target.bucket, Key="elsewhere/secret.txt"))
    bootstrap = f"{target.staging_prefix}/bootstrap/install_python_deps.sh"
    assert denied(lambda: s3.put_object(Bucket=target.staging_bucket, Key=bootstrap, Body=b"x"))


def test_the_host_stages_steps_and_reads_logs_with_its_policy_only(enforced, tmp_path) -> None:
    """What the Dagster host does on S3 in the emr deployment: the code package (as
    ProjectPackageStepLauncher uploads it), the pickled step, its events and logs; raw_images."""
    import uuid

    from fruits_assets.emr import build_code_package
    from spark.manifest import write_manifests
    from spark.storage import SSE, preflight

    target = enforced.settings
    s3 = enforced.s3("host")
    sha = build_code_package(tmp_path / "code.zip")
    staging = target.staging_prefix
    s3.upload_file(str(tmp_path / "code.zip"), target.staging_bucket,
                   f"{staging}/code/{sha[:16]}.zip", ExtraArgs=SSE)  # fmt: skip
    step = f"{staging}/{uuid.uuid4()}/image_features"
    s3.put_object(Bucket=target.staging_bucket, Key=f"{step}/step_run_ref.pkl", Body=b"ref")
    s3.put_object(Bucket=target.staging_bucket, Key=f"{step}/events.pkl", Body=b"events")
    assert s3.get_object(Bucket=target.staging_bucket, Key=f"{step}/events.pkl")["Body"].read()
    assert s3.list_objects_v2(Bucket=target.staging_bucket, Prefix=f"{staging}/logs/")
    preflight(s3, target)  # HeadBucket
    write_manifests(s3, Layout(target.bucket, target.prefix), [D])  # raw_images on the host
    # Outside its policy: what nodes re-read, and the pipeline's outputs.
    bootstrap = f"{staging}/bootstrap/requirements.lock"
    assert denied(lambda: s3.put_object(Bucket=target.staging_bucket, Key=bootstrap, Body=b"x"))
    features = Layout(target.bucket, target.prefix).key("features", "x.parquet")
    assert denied(lambda: s3.put_object(Bucket=target.bucket, Key=features, Body=b"x"))


def test_the_operator_stages_bootstrap_artifacts_with_its_policy_only(
    enforced, wheel_file, tmp_path
) -> None:
    from bootstrap import wheelhouse
    from bootstrap.emr_cluster import bootstrap_uri

    target = enforced.settings
    s3 = enforced.s3("operator")
    # What `emr_cluster stage` does (listing the folder, uploading what it lacks), on a
    # one-wheel stand-in for the real wheelhouse.
    wheel_file(tmp_path, "fruits-probe", "1.0")
    assert len(wheelhouse.stage(s3, bootstrap_uri(target), tmp_path)) == 3
    features = Layout(target.bucket, target.prefix).key("features", "x.parquet")
    assert denied(lambda: s3.put_object(Bucket=target.bucket, Key=features, Body=b"x"))
    step = f"{target.staging_prefix}/{D}/image_features/events.pkl"
    assert denied(lambda: s3.get_object(Bucket=target.staging_bucket, Key=step))
