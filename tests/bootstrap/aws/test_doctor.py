"""doctor against moto: a clean account (after roles, buckets and staging) has no finding; each
piece removed gives its finding, with a fix command that, run, makes the account clean again."""

import json
import shlex
from collections.abc import Callable

import boto3
import pytest

from bootstrap.aws import buckets, emr_cluster, roles
from bootstrap.aws.emr_cluster import TLS_ZIP
from bootstrap.aws.wheelhouse import CLUSTER_LOCK
from fruits_assets.deployments import current_settings

STAGED = "emr_staging/bootstrap"
MAINS = {"bootstrap.aws.emr_cluster": emr_cluster.main, "bootstrap.aws.buckets": buckets.main}


@pytest.fixture(scope="module")
def account(aws_account, network):
    assert buckets.main(["create"]) == 0
    assert emr_cluster.main(["roles", "--subnet-id", network.subnet_id,
                             "--security-group", network.group_id]) == 0  # fmt: skip
    assert emr_cluster.main(["stage"]) == 0
    s3 = boto3.client("s3")
    staging = aws_account["FRUITS_STAGING_BUCKET"]
    s3.put_object(Bucket=staging, Key=f"{STAGED}/{TLS_ZIP}", Body=b"zip of PEM files")
    # What the runbook has the operator make in a private subnet: KMS's and Glue's interface
    # endpoints; and the tables' Glue database.
    for service in ("kms", "glue"):
        add_interface_endpoint(network, service)
    boto3.client("glue").create_database(DatabaseInput={"Name": current_settings().namespace})
    return aws_account


def add_interface_endpoint(network, service: str) -> None:
    ec2 = boto3.client("ec2")
    ec2.create_vpc_endpoint(
        VpcId=network.vpc_id, ServiceName=f"com.amazonaws.{ec2.meta.region_name}.{service}",
        VpcEndpointType="Interface", SubnetIds=[network.subnet_id],
        SecurityGroupIds=[network.group_id], PrivateDnsEnabled=True,
    )  # fmt: skip


def run_doctor(account, network, capsys) -> tuple[int, list[str]]:
    """`python -m bootstrap.aws.emr_cluster doctor --subnet-id S --security-group G`, as printed."""
    capsys.readouterr()
    argv = ["doctor", "--subnet-id", network.subnet_id, "--security-group", network.group_id]
    code = emr_cluster.main(argv)
    return code, capsys.readouterr().out.strip().splitlines()


def test_a_clean_account_has_no_findings(account, network, capsys) -> None:
    assert run_doctor(account, network, capsys) == (0, ["doctor: no findings"])


def remove_public_access_block(env, network) -> None:
    boto3.client("s3").delete_public_access_block(Bucket=env["FRUITS_BUCKET"])


def remove_encryption(env, network) -> None:
    boto3.client("s3").delete_bucket_encryption(Bucket=env["FRUITS_STAGING_BUCKET"])


def expire_all_staging(env, network) -> None:  # the old rule: 14 days on the whole prefix
    rule = {"ID": "all", "Status": "Enabled", "Filter": {"Prefix": "emr_staging/"},
            "Expiration": {"Days": 14}}  # fmt: skip
    boto3.client("s3").put_bucket_lifecycle_configuration(
        Bucket=env["FRUITS_STAGING_BUCKET"], LifecycleConfiguration={"Rules": [rule]}
    )


def attach_ec2_managed_role(env, network) -> None:
    boto3.client("iam").attach_role_policy(
        RoleName=roles.INSTANCE_ROLE,
        PolicyArn="arn:aws:iam::aws:policy/service-role/AmazonElasticMapReduceforEC2Role",
    )


def remove_service_role(env, network) -> None:
    iam = boto3.client("iam")
    for name in iam.list_role_policies(RoleName=roles.SERVICE_ROLE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=roles.SERVICE_ROLE, PolicyName=name)
    iam.detach_role_policy(RoleName=roles.SERVICE_ROLE, PolicyArn=roles.SERVICE_POLICY_ARN)
    iam.delete_role(RoleName=roles.SERVICE_ROLE)


def empty_instance_profile(env, network) -> None:
    boto3.client("iam").remove_role_from_instance_profile(
        InstanceProfileName=roles.INSTANCE_PROFILE, RoleName=roles.INSTANCE_ROLE
    )


def key_policy_without_roles(env, network) -> None:
    kms = boto3.client("kms")
    policy = roles.key_policy("123456789012")
    policy["Statement"] = policy["Statement"][:1]  # the account's administration only
    kms.put_key_policy(KeyId=roles.key_arn(kms), PolicyName="default", Policy=json.dumps(policy))


def remove_lock(env, network) -> None:
    bundle = emr_cluster.bootstrap_uri(current_settings()).split("/", 3)[3]
    boto3.client("s3").delete_object(
        Bucket=env["FRUITS_STAGING_BUCKET"], Key=f"{bundle}/{CLUSTER_LOCK.name}"
    )


def untag_subnet(env, network) -> None:
    boto3.client("ec2").delete_tags(
        Resources=[network.subnet_id], Tags=[{"Key": roles.MANAGED_POLICY_TAG["Key"]}]
    )


def untag_vpc(env, network) -> None:
    boto3.client("ec2").delete_tags(
        Resources=[network.vpc_id], Tags=[{"Key": roles.MANAGED_POLICY_TAG["Key"]}]
    )


def remove_kms_endpoint(env, network) -> None:
    ec2 = boto3.client("ec2")
    kms = f"com.amazonaws.{ec2.meta.region_name}.kms"
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "service-name", "Values": [kms]}])[
        "VpcEndpoints"
    ]
    ec2.delete_vpc_endpoints(VpcEndpointIds=[e["VpcEndpointId"] for e in endpoints])


def drop_glue_database(env, network) -> None:
    boto3.client("glue").delete_database(Name=current_settings().namespace)


def remove_s3_endpoint(env, network) -> None:
    boto3.client("ec2").delete_vpc_endpoints(VpcEndpointIds=[network.endpoint_id])


def restore_s3_endpoint(network) -> None:
    ec2 = boto3.client("ec2")
    ec2.create_vpc_endpoint(
        VpcId=network.vpc_id, ServiceName=f"com.amazonaws.{ec2.meta.region_name}.s3",
        VpcEndpointType="Gateway", RouteTableIds=[network.route_table_id],
    )  # fmt: skip


BREAKS: list[tuple[Callable, str]] = [
    (remove_public_access_block, "fruits-account-data does not block all public access"),
    (remove_encryption, "fruits-account-staging has no default encryption"),
    (expire_all_staging, "expires what nodes re-read at start"),
    (attach_ec2_managed_role, f"role {roles.INSTANCE_ROLE} holds"),
    (remove_service_role, f"role {roles.SERVICE_ROLE} does not exist"),
    (empty_instance_profile, f"instance profile {roles.INSTANCE_PROFILE} lacks"),
    (key_policy_without_roles, f"does not let {roles.INSTANCE_ROLE} use it"),
    (remove_lock, f"{CLUSTER_LOCK.name} is not staged"),
    (untag_subnet, "lacks the tag for-use-with-amazon-emr-managed-policies=true -> fix"),
    (remove_s3_endpoint, "has no route to S3 (no gateway endpoint on"),
    (untag_vpc, "(EMR may not create its security groups there)"),
    (remove_kms_endpoint, "has no route to KMS (no interface endpoint"),
    (drop_glue_database, "does not exist (Athena sees no tables before the first run)"),
]
# Findings that come along with another one (same cause, said from another side).
ALONG = [
    "fruits-account-staging has not the project's lifecycle rules",
    f"KMS key {roles.KMS_ALIAS}'s policy does not let {roles.SERVICE_ROLE} use it",
]


def test_each_missing_piece_is_a_finding_and_its_fix_works(account, network, capsys) -> None:
    for remove, _ in BREAKS:
        remove(account, network)
    code, lines = run_doctor(account, network, capsys)
    assert code == 1 and lines[-1] == f"doctor: {len(BREAKS) + len(ALONG)} finding(s)", lines
    fixes = []
    for finding in [f for _, f in BREAKS] + ALONG:
        found = [line for line in lines if finding in line]
        assert len(found) == 1, (finding, lines)
        fixes.append(found[0].split(" -> fix: ")[1])
    for fix in dict.fromkeys(fixes):  # each command once, as printed
        argv = shlex.split(fix)
        if argv[:2] == ["python", "-m"]:
            assert MAINS[argv[2]](argv[3:]) == 0, fix
        elif argv[:3] == ["aws", "glue", "create-database"]:
            database = json.loads(argv[argv.index("--database-input") + 1])
            assert database["LocationUri"].endswith(f"/warehouse/{database['Name']}"), fix
            boto3.client("glue").create_database(DatabaseInput=database)
        elif "Interface" in argv:
            assert argv[:3] == ["aws", "ec2", "create-vpc-endpoint"], fix
            assert network.vpc_id in argv and network.subnet_id in argv
            assert "--private-dns-enabled" in argv and "com.amazonaws.eu-west-3.kms" in argv, fix
            add_interface_endpoint(network, "kms")
        else:
            assert argv[:3] == ["aws", "ec2", "create-vpc-endpoint"], fix
            assert network.vpc_id in argv and network.route_table_id in argv
            restore_s3_endpoint(network)
    assert run_doctor(account, network, capsys) == (0, ["doctor: no findings"])


def test_a_region_outside_the_eu_is_a_finding(account, network, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FRUITS_REGION", "us-east-1")
    code, lines = run_doctor(account, network, capsys)
    assert code == 1 and len(lines) == 1
    assert "outside the EU" in lines[0] and "fix: export FRUITS_REGION=" in lines[0]


def test_then_create_uses_the_roles_key_and_staged_zip(account, network, capsys) -> None:
    """The README's last set-up step, in moto's EMR: the cluster gets the roles, key and TLS
    zip the steps before made, and the tags the v2 managed policy and the host policy need."""
    assert emr_cluster.main(["create", "--subnet-id", network.subnet_id]) == 0
    cluster_id = capsys.readouterr().out.strip()
    emr = boto3.client("emr")
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert (cluster["ServiceRole"], cluster["Ec2InstanceAttributes"]["IamInstanceProfile"]) == (
        roles.SERVICE_ROLE,
        roles.INSTANCE_PROFILE,
    )
    assert roles.MANAGED_POLICY_TAG in cluster["Tags"]
    assert {"Key": "project", "Value": "fruits"} in cluster["Tags"]
    name = cluster["SecurityConfiguration"]
    config = json.loads(emr.describe_security_configuration(Name=name)["SecurityConfiguration"])[
        "EncryptionConfiguration"
    ]
    disks = config["AtRestEncryptionConfiguration"]["LocalDiskEncryptionConfiguration"]
    assert disks["AwsKmsKey"] == roles.key_arn(boto3.client("kms"))
    tls = config["InTransitEncryptionConfiguration"]["TLSCertificateConfiguration"]["S3Object"]
    assert tls == f"s3://{account['FRUITS_STAGING_BUCKET']}/{STAGED}/{TLS_ZIP}"
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_create_refuses_a_tls_zip_the_instance_role_cannot_read(account, capsys) -> None:
    outside = f"s3://{account['FRUITS_STAGING_BUCKET']}/certs/{TLS_ZIP}"
    assert emr_cluster.main(["create", "--tls-certificates", outside]) == 2
    assert "outside" in capsys.readouterr().err


def test_a_subnet_with_a_nat_needs_no_interface_endpoint(account, network, capsys) -> None:
    """Through a NAT gateway the nodes reach KMS's and Glue's public endpoints."""
    ec2 = boto3.client("ec2")
    remove_kms_endpoint(account, network)
    assert any("has no route to KMS" in line for line in run_doctor(account, network, capsys)[1])
    public = ec2.create_subnet(VpcId=network.vpc_id, CidrBlock="10.0.2.0/24")["Subnet"]
    nat = ec2.create_nat_gateway(SubnetId=public["SubnetId"])["NatGateway"]["NatGatewayId"]
    route = {"RouteTableId": network.route_table_id, "DestinationCidrBlock": "0.0.0.0/0"}
    ec2.create_route(**route, NatGatewayId=nat)
    try:
        assert run_doctor(account, network, capsys) == (0, ["doctor: no findings"])
    finally:
        ec2.delete_route(**route)
        add_interface_endpoint(network, "kms")


def test_a_region_without_prices_is_a_finding(tmp_path) -> None:
    from bootstrap.aws.doctor import check_prices
    from bootstrap.aws.emr_cluster import PRICES_FILE

    table = json.loads(PRICES_FILE.read_text())
    assert list(check_prices("eu-west-3")) == []
    del table["regions"]["eu-west-3"]
    (tmp_path / "prices.json").write_text(json.dumps(table))
    ((what, fix),) = check_prices("eu-west-3", tmp_path / "prices.json")
    assert what.startswith("no prices for eu-west-3 in prices.json") and "eu-west-3" in fix


# --- every call of the operator's tools, under the operator policy with its conditions ---------
ACCOUNT = "123456789012"  # moto's
S3_ACTIONS = {
    "HeadBucket": "ListBucket", "ListObjectsV2": "ListBucket", "ListBuckets": "ListAllMyBuckets",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "HeadObject": "GetObject", "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
}  # fmt: skip
NO_PERMISSION = {("sts", "GetCallerIdentity")}  # allowed to every caller


def iam_requests(service: str, operation: str, params: dict, region: str) -> list[tuple]:
    """What IAM authorizes for one API call: (action, resource, condition keys)."""
    asked = {"aws:RequestedRegion": region}
    arn = f"arn:aws:{{}}:{region}:{ACCOUNT}:{{}}"
    if service == "s3":
        action = f"s3:{S3_ACTIONS.get(operation, operation)}"
        bucket, key = params.get("Bucket"), params.get("Key")
        if operation == "ListBuckets":
            return [(action, "*", asked)]
        if key is None:
            prefix = {"s3:prefix": params["Prefix"]} if "Prefix" in params else {}
            return [(action, f"arn:aws:s3:::{bucket}", asked | prefix)]
        return [(action, f"arn:aws:s3:::{bucket}/{key}", asked)]
    if service == "iam":
        requests = []
        if "RoleName" in params:
            requests.append(
                (f"iam:{operation}", f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}", {})
            )
        if "InstanceProfileName" in params:
            profile = f"arn:aws:iam::{ACCOUNT}:instance-profile/{params['InstanceProfileName']}"
            requests.append((f"iam:{operation}", profile, {}))
        if operation == "AddRoleToInstanceProfile":  # passes the role to EC2
            role = f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}"
            requests.append(("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"}))
        return requests
    if service == "kms":
        key = params.get("KeyId", "")
        resource = key if key.startswith("arn:") else "*"
        return [(f"kms:{operation}", resource, asked)]
    if service == "ec2":
        if operation == "CreateTags":
            kinds = {"subnet": "subnet", "vpc": "vpc", "sg": "security-group"}
            return [
                ("ec2:CreateTags", arn.format("ec2", f"{kinds[r.split('-')[0]]}/{r}"), asked)
                for r in params["Resources"]
            ]
        return [(f"ec2:{operation}", "*", asked)]
    if service == "glue":
        database = arn.format("glue", f"database/{params['Name']}")
        return [(f"glue:{operation}", database, asked)]
    if service == "emr":
        action = f"elasticmapreduce:{operation}"
        if operation != "RunJobFlow":
            cluster = params.get("ClusterId") or (params.get("JobFlowIds") or [None])[0]
            resource = arn.format("elasticmapreduce", f"cluster/{cluster}") if cluster else "*"
            return [(action, resource, asked)]
        tags = {f"aws:RequestTag/{t['Key']}": t["Value"] for t in params.get("Tags", [])}
        role = f"arn:aws:iam::{ACCOUNT}:role/{{}}"
        return [
            (action, "*", asked | tags),
            ("iam:PassRole", role.format(params["ServiceRole"]),
             {"iam:PassedToService": "elasticmapreduce.amazonaws.com"}),
            ("iam:PassRole", role.format(roles.INSTANCE_ROLE),
             {"iam:PassedToService": "ec2.amazonaws.com"}),
        ]  # fmt: skip
    raise AssertionError(f"no IAM mapping for {service}:{operation}: add one")


def test_every_call_of_the_set_up_is_allowed_to_the_operator(
    account, network, capsys, monkeypatch
) -> None:
    """buckets, roles, stage, doctor and create again (all idempotent), each API call they make
    recorded and decided under `bootstrap.aws.iam operator` with its conditions."""
    from botocore.client import BaseClient

    from bootstrap.aws.iam import decide, policy

    calls: list[tuple[str, str, dict]] = []
    original = BaseClient._make_api_call

    def recording(client, operation, params):
        calls.append((client.meta.service_model.service_name, operation, dict(params)))
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    assert buckets.main(["create"]) == 0
    assert emr_cluster.main(["roles", "--subnet-id", network.subnet_id,
                             "--security-group", network.group_id]) == 0  # fmt: skip
    assert emr_cluster.main(["stage"]) == 0
    assert run_doctor(account, network, capsys) == (0, ["doctor: no findings"])
    assert emr_cluster.main(["create", "--subnet-id", network.subnet_id]) == 0
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    settings = current_settings()
    operator = policy(settings, "operator")
    services = {service for service, _, _ in calls}
    assert {"iam", "kms", "ec2", "s3", "emr", "glue"} <= services
    requests = [
        (service, operation, request)
        for service, operation, params in calls
        if (service, operation) not in NO_PERMISSION
        for request in iam_requests(service, operation, params, settings.region)
    ]
    asked = {request[:2] for _, _, request in requests}
    # Among them what the policy long lacked: the instance role passed to EC2, the VPCs'
    # tags read, the Glue database read.
    instance = f"arn:aws:iam::{ACCOUNT}:role/{roles.INSTANCE_ROLE}"
    assert {("iam:PassRole", instance), ("ec2:DescribeVpcs", "*")} <= asked
    assert any(action == "glue:GetDatabase" for action, _ in asked)
    refused = [r for r in requests if decide([operator], *r[2]) != "Allow"]
    assert refused == []
