"""The roles command against moto's IAM, KMS and EC2: what it creates, that it is idempotent,
that it strips grants beside the project's policy, and that the cluster CLI uses it."""

import json
import subprocess
import sys

import boto3
import pytest

from bootstrap.aws import roles
from bootstrap.aws.emr_cluster import ClusterOptions, cluster_request, kms_key, main
from bootstrap.aws.iam import instance_policy
from fruits_assets.deployments import current_settings

EC2_MANAGED_ROLE = "arn:aws:iam::aws:policy/service-role/AmazonElasticMapReduceforEC2Role"


@pytest.fixture(scope="module")
def created(aws_account, network):
    assert main(["roles", "--subnet-id", network.subnet_id,
                 "--security-group", network.group_id]) == 0  # fmt: skip
    return current_settings()


def attached(iam, role: str) -> set[str]:
    return {
        p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    }


def test_roles_profile_key_and_tags(created, network) -> None:
    iam = boto3.client("iam")
    account = boto3.client("sts").get_caller_identity()["Account"]
    service = iam.get_role(RoleName=roles.SERVICE_ROLE)["Role"]
    trust = service["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "elasticmapreduce.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": account}
    assert attached(iam, roles.SERVICE_ROLE) == {roles.SERVICE_POLICY_ARN}
    # The v2 managed policy passes only EMR_EC2_DefaultRole: ours needs its own PassRole.
    passing = iam.get_role_policy(
        RoleName=roles.SERVICE_ROLE, PolicyName=roles.PASS_ROLE_POLICY_NAME
    )
    assert passing["PolicyDocument"]["Statement"][0]["Resource"] == roles.role_arn(
        account, roles.INSTANCE_ROLE
    )

    # The instance role's only grant is the project's policy.
    assert attached(iam, roles.INSTANCE_ROLE) == set()
    assert iam.list_role_policies(RoleName=roles.INSTANCE_ROLE)["PolicyNames"] == [
        roles.INSTANCE_POLICY_NAME
    ]
    document = iam.get_role_policy(
        RoleName=roles.INSTANCE_ROLE, PolicyName=roles.INSTANCE_POLICY_NAME
    )["PolicyDocument"]
    assert document == instance_policy(created) and "s3:*" not in json.dumps(document)
    profile = iam.get_instance_profile(InstanceProfileName=roles.INSTANCE_PROFILE)
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [roles.INSTANCE_ROLE]

    kms = boto3.client("kms")
    key = roles.key_arn(kms)  # GetKeyPolicy takes no alias, on AWS as in moto
    policy = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    users = next(s for s in policy["Statement"] if s["Sid"] == "EmrRolesUseTheKey")
    assert users["Principal"]["AWS"] == [
        roles.role_arn(account, roles.SERVICE_ROLE),
        roles.role_arn(account, roles.INSTANCE_ROLE),
    ]
    assert "kms:GenerateDataKey*" in users["Action"] and "kms:Decrypt" in users["Action"]

    ec2 = boto3.client("ec2")
    for tags in (
        ec2.describe_subnets(SubnetIds=[network.subnet_id])["Subnets"][0]["Tags"],
        ec2.describe_security_groups(GroupIds=[network.group_id])["SecurityGroups"][0]["Tags"],
    ):
        assert roles.MANAGED_POLICY_TAG in tags


def test_the_cluster_request_uses_what_roles_created(created) -> None:
    options = ClusterOptions(kms_key_arn=kms_key(created), tls_certificates="s3://x/y.zip")
    request = cluster_request(created, options, {})
    iam = boto3.client("iam")
    iam.get_role(RoleName=request["ServiceRole"])
    iam.get_instance_profile(InstanceProfileName=request["JobFlowRole"])
    assert roles.MANAGED_POLICY_TAG in request["Tags"]
    key = boto3.client("kms").describe_key(KeyId=roles.KMS_ALIAS)["KeyMetadata"]["Arn"]
    assert options.kms_key_arn == key


def test_a_second_run_changes_nothing_and_strips_extra_grants(created, capsys) -> None:
    iam = boto3.client("iam")
    keys_before = boto3.client("kms").list_keys()["Keys"]
    iam.attach_role_policy(RoleName=roles.INSTANCE_ROLE, PolicyArn=EC2_MANAGED_ROLE)
    anything = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    everything = {"Version": "2012-10-17", "Statement": [anything]}
    iam.put_role_policy(
        RoleName=roles.INSTANCE_ROLE, PolicyName="extra", PolicyDocument=json.dumps(everything)
    )
    capsys.readouterr()
    assert main(["roles"]) == 0
    out = capsys.readouterr().out
    assert f"role {roles.INSTANCE_ROLE}: detached {EC2_MANAGED_ROLE}" in out
    assert f"role {roles.INSTANCE_ROLE}: removed inline policy extra" in out
    assert "created" not in out  # nothing new: the same roles, profile and key
    assert attached(iam, roles.INSTANCE_ROLE) == set()
    assert iam.list_role_policies(RoleName=roles.INSTANCE_ROLE)["PolicyNames"] == [
        roles.INSTANCE_POLICY_NAME
    ]
    assert boto3.client("kms").list_keys()["Keys"] == keys_before


def test_roles_outside_the_eu_is_refused_in_one_line() -> None:
    env = {"FRUITS_REGION": "us-east-1", "FRUITS_BUCKET": "b", "PATH": "/usr/bin",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "bootstrap.aws.emr_cluster", "roles"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "outside the EU" in result.stderr
