"""The IAM policy against the layout, and against every key a real pipeline run writes."""

import json
from dataclasses import replace

import pytest

from bootstrap.aws.iam import READ, WRITE, allows, decide, policy
from bootstrap.local.fake_emr import managed_policy as managed
from spark import tables
from spark.layout import (
    ERASURES,
    MANIFESTS,
    PCA_MODELS,
    RAW,
    TOMBSTONES,
    WAREHOUSE,
    WEIGHTS,
    WRITTEN_PREFIXES,
    Layout,
)
from spark.pca import publish_pca
from spark.pipeline import fit_pca_version, publish_staged, stage_reduced
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
    layout = Layout.of(settings)
    # What the pipeline writes: manifests, the Iceberg warehouse (data and metadata of every
    # table), PCA models, weights, erasure records and tombstones; no locks any more.
    pipeline_outputs = {MANIFESTS, WAREHOUSE, PCA_MODELS, WEIGHTS, ERASURES, TOMBSTONES}
    assert set(WRITTEN_PREFIXES) == pipeline_outputs
    for prefix in WRITTEN_PREFIXES:
        for action in WRITE:
            assert allows(document, action, settings.bucket, layout.key(prefix, "x/part-0.parquet"))
    for name in (tables.FEATURES, tables.REDUCED):
        table = layout.key(WAREHOUSE, layout.namespace, name)
        for key in ("data/upload_date=2026-11-20/00000-0-a.parquet", "metadata/v2.metadata.json"):
            assert allows(document, "s3:PutObject", settings.bucket, f"{table}/{key}")
            assert allows(document, "s3:DeleteObject", settings.bucket, f"{table}/{key}")
    assert not allows(document, "s3:PutObject", settings.bucket, layout.key("locks", "a.lock"))
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
    "ec2:DescribeRouteTables", "ec2:DescribeVpcEndpoints", "ec2:DescribeVpcs",
    "s3:ListAllMyBuckets",
}  # fmt: skip


@pytest.mark.parametrize("principal", ["instance", "host", "operator"])
def test_each_principal_gets_only_what_it_needs(settings, principal, capsys) -> None:
    from bootstrap.aws import roles
    from bootstrap.aws.iam import main

    document = policy(staged(settings), principal)
    assert main([principal]) == 0 and json.loads(capsys.readouterr().out)["Statement"]
    actions = {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    assert not any(a.endswith(":*") for a in actions)
    for statement in document["Statement"]:
        if statement["Resource"] == ["*"]:  # only where IAM has nothing narrower
            assert set(statement["Action"]) <= RESOURCELESS, statement
    services = {a.split(":")[0] for a in actions}
    if principal == "instance":
        assert services == {"s3"}  # KMS through the key policy (bootstrap.aws.roles)
    if principal == "host":
        steps = {"AddJobFlowSteps", "DescribeStep", "DescribeCluster", "ListSteps", "CancelSteps"}
        assert {f"elasticmapreduce:{a}" for a in steps} <= actions
        assert (
            services == {"s3", "elasticmapreduce"} and "elasticmapreduce:RunJobFlow" not in actions
        )
    if principal == "operator":
        passing = [s for s in document["Statement"] if "iam:PassRole" in s["Action"]]
        two = [[f"arn:aws:iam::*:role/{r}"] for r in (roles.SERVICE_ROLE, roles.INSTANCE_ROLE)]
        assert [s["Resource"] for s in passing] == two
    assert main(["nobody"]) == 2


@pytest.mark.slow
def test_every_key_a_run_writes_is_allowed(
    spark, s3, settings, fresh_layout, upload_sample, weights, extract
) -> None:
    upload_sample(fresh_layout, ["2026-11-15"], per_date=3)
    extract(fresh_layout, ["2026-11-15"], weights)
    version = fit_pca_version(spark, fresh_layout, s3, k=2, weights_sha256=weights.sha256).version
    publish_pca(fresh_layout, s3, version)
    reduced = stage_reduced(spark, fresh_layout, s3, ["2026-11-15"], version)
    publish_staged(spark, fresh_layout, s3, reduced.staged)
    document = policy(replace(settings, prefix=fresh_layout.prefix))
    raw = fresh_layout.raw_prefix()
    written = [
        k for k in list_keys(s3, settings.bucket, fresh_layout.key()) if not k.startswith(raw)
    ]
    assert len(written) > 5
    # Both tables' data and metadata, under the warehouse; nothing outside the prefixes.
    for name in (tables.FEATURES, tables.REDUCED):
        table = fresh_layout.key(WAREHOUSE, fresh_layout.namespace, name)
        assert any(k.startswith(f"{table}/data/") for k in written), name
        assert any(k.startswith(f"{table}/metadata/") for k in written), name
    prefixes = tuple(fresh_layout.key(p) + "/" for p in WRITTEN_PREFIXES)
    assert [k for k in written if not k.startswith(prefixes)] == []
    denied = [k for k in written if not allows(document, "s3:PutObject", settings.bucket, k)]
    assert denied == []


# --- the policies enforced: moto's IAM access control (tests/conftest.py `enforced_iam`) ------
D = "2026-11-15"


@pytest.fixture(scope="module")
def enforced(enforced_iam):
    """The enforcing server, with photos of D uploaded by the operator."""
    enforced_iam.upload_photos([D], per_date=6)
    return enforced_iam


@pytest.mark.slow
def test_the_pipeline_runs_with_the_instance_policy_only(
    enforced, tmp_path, repo_root, settings, local_catalog
) -> None:
    """One real run of the five assets (Spark, S3A and Iceberg's file IO, the workers' boto3,
    the driver's boto3), every S3 request signed by a user that holds only `bootstrap.aws.iam
    instance`; the tables in the tests' catalog."""
    import os
    import subprocess

    from bootstrap.local.dagster_home import prepare_dagster_home
    from bootstrap.sample.demo import launch_command

    key, secret = enforced.keys["instance"]
    target = enforced.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRUITS_", "AWS_"))}
    env |= {
        "FRUITS_DEPLOYMENT": "local", "FRUITS_S3_ENDPOINT": target.s3_endpoint,
        "FRUITS_BUCKET": target.bucket, "FRUITS_PREFIX": target.prefix,
        "FRUITS_CATALOG_URI": settings.catalog_uri, "FRUITS_NAMESPACE": "t_iam_instance_policy",
        "FRUITS_SPARK_MASTER": "local[2]", "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": target.region,
        "DAGSTER_HOME": str(prepare_dagster_home(tmp_path / "dagster_home")),
    }  # fmt: skip
    result = subprocess.run(
        launch_command([D]), env=env, cwd=repo_root, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    s3 = enforced.s3("instance")
    layout = Layout(target.bucket, target.prefix, "t_iam_instance_policy")
    for name in (tables.FEATURES, tables.REDUCED):  # written under the policy
        table = layout.key(WAREHOUSE, layout.namespace, name)
        assert list_keys(s3, target.bucket, f"{table}/data/"), name
        assert list_keys(s3, target.bucket, f"{table}/metadata/"), name
    # feature_quality too: its figures beside the PCA version (written by no other asset)
    models = list_keys(s3, target.bucket, layout.key(PCA_MODELS))
    assert [k for k in models if k.endswith("/feature_quality.json")], models
    # ...and nothing beyond it.
    raw = layout.raw_image_key(D, "x", "new.jpg")
    assert enforced.refused(lambda: s3.put_object(Bucket=target.bucket, Key=raw, Body=b"x"))
    assert enforced.refused(lambda: s3.get_object(Bucket=target.bucket, Key="elsewhere/secret.txt"))
    bootstrap = f"{target.staging_prefix}/bootstrap/install_python_deps.sh"
    assert enforced.refused(
        lambda: s3.put_object(Bucket=target.staging_bucket, Key=bootstrap, Body=b"x")
    )


def test_the_host_stages_steps_and_reads_logs_with_its_policy_only(enforced, tmp_path) -> None:
    """What the Dagster host does on S3 in the emr deployment: the code package (as
    ProjectPackageStepLauncher uploads it), the pickled step, its events and logs; raw_images."""
    import uuid

    from fruits_assets.deployments.emr import build_code_package
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
    assert enforced.refused(
        lambda: s3.put_object(Bucket=target.staging_bucket, Key=bootstrap, Body=b"x")
    )
    features = table_file(target)
    assert enforced.refused(lambda: s3.put_object(Bucket=target.bucket, Key=features, Body=b"x"))


def table_file(target: Settings) -> str:
    """A data file of the features table: the pipeline's output, the cluster's to write."""
    layout = Layout.of(target)
    return layout.key(WAREHOUSE, layout.namespace, tables.FEATURES, "data", "x.parquet")


def test_the_operator_stages_bootstrap_artifacts_with_its_policy_only(
    enforced, wheel_file, tmp_path
) -> None:
    from bootstrap.aws import wheelhouse
    from bootstrap.aws.emr_cluster import bootstrap_uri

    target = enforced.settings
    s3 = enforced.s3("operator")
    # What `emr_cluster stage` does (listing the folder, uploading what it lacks), on a
    # one-wheel stand-in for the real wheelhouse.
    wheel_file(tmp_path, "fruits-probe", "1.0")
    assert len(wheelhouse.stage(s3, bootstrap_uri(target), tmp_path)) == 3
    features = table_file(target)
    assert enforced.refused(lambda: s3.put_object(Bucket=target.bucket, Key=features, Body=b"x"))
    step = f"{target.staging_prefix}/{D}/image_features/events.pkl"
    assert enforced.refused(lambda: s3.get_object(Bucket=target.staging_bucket, Key=step))


# --- the policies evaluated with their conditions (bootstrap.aws.iam.decide) --------------------
ACCOUNT = "123456789012"


def ours(role_arn: str) -> str:
    """Our role for one of AWS's default role names in the managed policies."""
    from bootstrap.aws import roles

    name = {"EMR_DefaultRole_V2": roles.SERVICE_ROLE, "EMR_EC2_DefaultRole": roles.INSTANCE_ROLE}
    return f"arn:aws:iam::{ACCOUNT}:role/{name[role_arn.rsplit('/', 1)[1]]}"


def test_the_evaluator_reads_conditions_as_iam_does() -> None:
    document = {"Statement": [
        {"Effect": "Allow", "Action": "ec2:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/team": "fruits"}}},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
         "Condition": {"StringLikeIfExists": {"s3:prefix": "raw/*"}}},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret*"},
    ]}  # fmt: skip
    tagged = {"aws:ResourceTag/team": "fruits"}
    assert decide([document], "ec2:CreateTags", "arn:aws:ec2:r:a:vpc/v", tagged) == "Allow"
    assert decide([document], "EC2:CreateTags", "x", {"AWS:ResourceTag/team": "f"}) != "Allow"
    assert decide([document], "ec2:CreateTags", "x", {}) == "ImplicitDeny"  # key missing
    assert decide([document], "s3:GetObject", "arn:aws:s3:::b/a") == "Allow"  # ...IfExists
    assert decide([document], "s3:GetObject", "arn:aws:s3:::b/secret.txt") == "Deny"


def test_the_operator_passes_each_role_to_the_service_aws_s_own_policy_does(settings) -> None:
    """RunJobFlow passes the service role to EMR and the instance role to EC2 (and
    AddRoleToInstanceProfile passes it to EC2): AmazonEMRFullAccessPolicy_v2 says which."""
    document = policy(staged(settings), "operator")
    reference = managed("AmazonEMRFullAccessPolicy_v2")
    passing = [
        s for s in reference["Statement"]
        if s["Action"] == "iam:PassRole" and "AutoScaling" not in s["Resource"]
    ]  # fmt: skip
    assert len(passing) == 2
    services = {s["Condition"]["StringLike"]["iam:PassedToService"] for s in passing}
    for statement in passing:
        to = statement["Condition"]["StringLike"]["iam:PassedToService"].rstrip("*")
        aws_role = statement["Resource"].replace("*", ACCOUNT)
        context = {"iam:PassedToService": to}
        assert decide([reference], "iam:PassRole", aws_role, context) == "Allow"
        assert decide([document], "iam:PassRole", ours(aws_role), context) == "Allow", to
        (elsewhere,) = {s.rstrip("*") for s in services} - {to}
        refused = decide(
            [document], "iam:PassRole", ours(aws_role), {"iam:PassedToService": elsewhere}
        )
        assert refused == "ImplicitDeny", (aws_role, elsewhere)


def test_the_operator_may_create_emr_s_cleanup_role_as_aws_s_own_policy_may(settings) -> None:
    document = policy(staged(settings), "operator")
    role = (
        f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/elasticmapreduce.amazonaws.com/"
        "AWSServiceRoleForEMRCleanup"
    )
    context = {"iam:AWSServiceName": "elasticmapreduce.amazonaws.com"}
    for reference in (managed("AmazonEMRFullAccessPolicy_v2"), document):
        assert decide([reference], "iam:CreateServiceLinkedRole", role, context) == "Allow"
    other = {"iam:AWSServiceName": "ec2.amazonaws.com"}
    assert decide([document], "iam:CreateServiceLinkedRole", role, other) == "ImplicitDeny"


def operator_calls(target: Settings) -> list[tuple[str, str, dict]]:
    """Every call the bootstrap tools make as the operator, with the condition keys AWS gives
    them (roles, doctor, stage, create)."""
    from bootstrap.aws import roles

    region = target.region
    asked = {"aws:RequestedRegion": region}
    service, instance = (f"arn:aws:iam::{ACCOUNT}:role/{r}"
                         for r in (roles.SERVICE_ROLE, roles.INSTANCE_ROLE))  # fmt: skip
    profile = f"arn:aws:iam::{ACCOUNT}:instance-profile/{roles.INSTANCE_PROFILE}"
    key = f"arn:aws:kms:{region}:{ACCOUNT}:key/1234abcd"
    calls = [
        ("iam:CreateRole", service, {}), ("iam:PutRolePolicy", instance, {}),
        ("iam:AttachRolePolicy", service, {}), ("iam:CreateInstanceProfile", profile, {}),
        ("iam:AddRoleToInstanceProfile", profile, {}),
        ("iam:PassRole", instance, {"iam:PassedToService": "ec2.amazonaws.com"}),
        ("kms:CreateKey", "*", asked), ("kms:PutKeyPolicy", key, asked),
        ("ec2:CreateTags", f"arn:aws:ec2:{region}:{ACCOUNT}:vpc/vpc-1", asked),
        ("ec2:DescribeVpcs", "*", asked), ("ec2:DescribeVpcEndpoints", "*", asked),
        ("elasticmapreduce:CreateSecurityConfiguration", "*", asked),
        ("elasticmapreduce:RunJobFlow", "*",
         asked | {"aws:RequestTag/for-use-with-amazon-emr-managed-policies": "true"}),
        ("iam:PassRole", service, {"iam:PassedToService": "elasticmapreduce.amazonaws.com"}),
        ("iam:CreateServiceLinkedRole",
         f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/elasticmapreduce.amazonaws.com/"
         "AWSServiceRoleForEMRCleanup", {"iam:AWSServiceName": "elasticmapreduce.amazonaws.com"}),
        ("s3:PutObject", f"arn:aws:s3:::{target.staging_bucket}/emr_staging/bootstrap/x", {}),
    ]  # fmt: skip
    if target.catalog_type == "glue":
        database = f"arn:aws:glue:{region}:{ACCOUNT}:database/{target.namespace}"
        calls.append(("glue:GetDatabase", database, asked))
    return calls


def test_every_call_of_the_operator_is_allowed_with_its_conditions(settings) -> None:
    target = replace(staged(settings), catalog_type="glue")
    document = policy(target, "operator")
    refused = [call for call in operator_calls(target) if decide([document], *call) != "Allow"]
    assert refused == []
    elsewhere = {"aws:RequestedRegion": "us-east-1"}
    assert decide([document], "elasticmapreduce:RunJobFlow", "*", elsewhere) == "ImplicitDeny"


def test_with_the_glue_catalog_only_the_instance_role_reaches_glue_on_the_namespace(
    settings,
) -> None:
    """Iceberg's Glue catalog runs on the nodes: the instance role gets exactly its calls on the
    namespace's database and tables; the host (no Spark) none; the operator reads the
    database for doctor."""
    from bootstrap.aws.iam import GLUE_TABLES

    target = replace(staged(settings), catalog_type="glue")
    glue = {
        p: [
            s
            for s in policy(target, p)["Statement"]
            if any(a.startswith("glue:") for a in s["Action"])
        ]
        for p in ("instance", "host", "operator")
    }
    assert glue["host"] == []
    ((instance,),) = [glue["instance"]]
    assert set(instance["Action"]) == set(GLUE_TABLES)
    database = f"arn:aws:glue:{target.region}:{ACCOUNT}:database/{target.namespace}"
    for action in GLUE_TABLES:
        for arn in (
            database,
            f"arn:aws:glue:{target.region}:{ACCOUNT}:table/{target.namespace}/features",
        ):
            assert decide([policy(target, "instance")], action, arn) == "Allow", (action, arn)
        other = f"arn:aws:glue:{target.region}:{ACCOUNT}:database/someone_else"
        assert decide([policy(target, "instance")], action, other) == "ImplicitDeny"
    ((operator,),) = [glue["operator"]]
    assert operator["Action"] == ["glue:GetDatabase"]
