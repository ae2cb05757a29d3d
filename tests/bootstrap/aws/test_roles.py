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
from bootstrap.local.fake_emr import default_groups_refusal
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


def test_emr_may_create_its_default_security_groups_in_the_vpc_roles_tagged(
    created, network
) -> None:
    """create passes no security groups: EMR creates its default ones as the service role,
    which AmazonEMRServicePolicy_v2 allows only in a VPC tagged for the managed policies."""
    ec2 = boto3.client("ec2")
    tags = ec2.describe_vpcs(VpcIds=[network.vpc_id])["Vpcs"][0]["Tags"]
    assert roles.MANAGED_POLICY_TAG in tags
    options = ClusterOptions(subnet_ids=(network.subnet_id,))
    request = cluster_request(created, options, {})
    assert "EmrManagedMasterSecurityGroup" not in request["Instances"]
    assert default_groups_refusal(ec2, request, created.region) is None
    untagged = [{"Key": roles.MANAGED_POLICY_TAG["Key"]}]
    ec2.delete_tags(Resources=[network.vpc_id], Tags=untagged)
    try:
        refusal = default_groups_refusal(ec2, request, created.region)
        assert f"ec2:CreateSecurityGroup on arn:aws:ec2:{created.region}" in refusal
        assert f"vpc/{network.vpc_id}" in refusal
    finally:
        assert main(["roles", "--subnet-id", network.subnet_id]) == 0


def test_the_fake_emr_ends_a_cluster_in_an_untagged_vpc_as_emr_does(
    created, network, tmp_path
) -> None:
    """The fake's service role provisions under AmazonEMRServicePolicy_v2: in an untagged VPC
    the cluster ends TERMINATED_WITH_ERRORS (VALIDATION_ERROR) before any node starts."""
    import time

    from bootstrap.local.fake_emr import FakeEmr, FakeEmrTiming

    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    fake = FakeEmr(created, tmp_path, timing=FakeEmrTiming(starting_s=0.05), network=ec2)
    request = {"Name": "x", "Instances": {"Ec2SubnetIds": [subnet],
               "KeepJobFlowAliveWhenNoSteps": True}, "ServiceRole": roles.SERVICE_ROLE}  # fmt: skip
    try:
        cluster_id = fake.call("RunJobFlow", request)["JobFlowId"]
        deadline = time.monotonic() + 10
        while fake.clusters[cluster_id].state != "TERMINATED_WITH_ERRORS":
            assert time.monotonic() < deadline, fake.clusters[cluster_id].history
            time.sleep(0.05)
        reason = fake.call("DescribeCluster", {"ClusterId": cluster_id})["Cluster"]["Status"]
        assert reason["StateChangeReason"]["Code"] == "VALIDATION_ERROR"
        assert "ec2:CreateSecurityGroup" in reason["StateChangeReason"]["Message"]
        assert "BOOTSTRAPPING" not in [state for state, _ in fake.clusters[cluster_id].history]
    finally:
        fake.stop()


def test_put_key_policy_is_retried_while_iam_propagates_new_roles() -> None:
    """KMS refuses a key policy naming a role it does not see yet (MalformedPolicyDocument):
    tried again, and the error is raised only once the waits are spent."""
    kms = boto3.client("kms", region_name="eu-west-3")
    refusal = kms.exceptions.MalformedPolicyDocumentException(
        {"Error": {"Code": "MalformedPolicyDocumentException", "Message": "invalid principals"}},
        "PutKeyPolicy",
    )
    calls, slept = [], []

    class Propagating:
        exceptions = kms.exceptions

        def __init__(self, refusals: int) -> None:
            self.refusals = refusals

        def put_key_policy(self, **request) -> None:
            calls.append(request)
            if len(calls) <= self.refusals:
                raise refusal

    roles.put_key_policy(Propagating(2), "arn:k", {"Statement": []}, slept.append, (1, 2, 3))
    assert len(calls) == 3 and slept == [1, 2]
    calls.clear()
    with pytest.raises(kms.exceptions.MalformedPolicyDocumentException):
        roles.put_key_policy(Propagating(9), "arn:k", {"Statement": []}, slept.append, (1, 2))
    assert len(calls) == 3
