"""The IAM roles, instance profile, tags and KMS key an EMR cluster of the project needs.

Run through `python -m bootstrap.aws.emr_cluster roles` (EU region only). Creates what is missing
and puts back what drifted, so running it twice changes nothing:
- the service role SERVICE_ROLE: AWS's managed AmazonEMRServicePolicy_v2 and EMR's trust
  policy (limited to this account's clusters), plus iam:PassRole of the instance role to EC2,
  which the managed policy grants for EMR_EC2_DefaultRole only;
- the instance role INSTANCE_ROLE and its instance profile INSTANCE_PROFILE, whose only grant
  is `python -m bootstrap.aws.iam instance` (no AmazonElasticMapReduceforEC2Role, no s3:* beside
  it: any other policy found on it is removed);
- the customer key KMS_ALIAS for local-disk and EBS encryption, whose key policy lets both
  roles use it (and EBS create grants for the volumes);
- the tag MANAGED_POLICY_TAG on the given subnets, their VPCs and the given security groups:
  the v2 managed policy only acts on resources that carry it (EMR tags the cluster through its
  request's Tags). `create` passes no security groups, so EMR creates its default ones, which
  AmazonEMRServicePolicy_v2 allows only in a VPC carrying the tag.

A key policy naming a role IAM has just created is refused until the role has propagated
(KMS says MalformedPolicyDocumentException): PutKeyPolicy is retried, as AWS documents.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from bootstrap.aws.iam import (
    INSTANCE_PROFILE,
    INSTANCE_ROLE,
    PROJECT_TAG,
    SERVICE_ROLE,
    instance_policy,
)
from spark.settings import Settings

INSTANCE_POLICY_NAME = "fruits-pipeline"
PASS_ROLE_POLICY_NAME = "fruits-pass-instance-role"
KMS_ALIAS = "alias/fruits-emr"
SERVICE_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
MANAGED_POLICY_TAG = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}
# What EMR and EC2 need of the key: data keys for local disks, grants for EBS volumes.
KEY_USE = [
    "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"
]  # fmt: skip
KEY_GRANTS = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]

Report = Callable[[str], None]


def role_arn(account: str, name: str) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def _assumed_by(service: str, **condition: Any) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return {
        "Version": "2012-10-17",
        "Statement": [statement | ({"Condition": condition} if condition else {})],
    }


def service_trust(account: str, region: str) -> dict[str, Any]:
    # Only EMR acting for this account's clusters (confused-deputy guard).
    return _assumed_by(
        "elasticmapreduce.amazonaws.com",
        StringEquals={"aws:SourceAccount": account},
        ArnLike={"aws:SourceArn": f"arn:aws:elasticmapreduce:{region}:{account}:*"},
    )


def instance_trust() -> dict[str, Any]:
    return _assumed_by("ec2.amazonaws.com")


def pass_instance_role(account: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PassInstanceRoleToEc2",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": role_arn(account, INSTANCE_ROLE),
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        }],
    }  # fmt: skip


def key_policy(account: str) -> dict[str, Any]:
    roles = [role_arn(account, SERVICE_ROLE), role_arn(account, INSTANCE_ROLE)]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {   # The account keeps administering the key through IAM (no lock-out).
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "EmrRolesUseTheKey",
                "Effect": "Allow",
                "Principal": {"AWS": roles},
                "Action": KEY_USE,
                "Resource": "*",
            },
            {
                "Sid": "EmrRolesGrantForEbs",
                "Effect": "Allow",
                "Principal": {"AWS": roles},
                "Action": KEY_GRANTS,
                "Resource": "*",
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
        ],
    }  # fmt: skip


def _role(iam: Any, name: str, trust: dict[str, Any], report: Report) -> None:
    try:
        iam.get_role(RoleName=name)
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
        report(f"role {name}: already there")
    except iam.exceptions.NoSuchEntityException:
        iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Tags=[PROJECT_TAG],
            Description="fruits: EMR cluster (bootstrap.aws.roles)",
        )
        report(f"role {name}: created")


def _only_policies(
    iam: Any, role: str, inline: dict[str, dict[str, Any]], attached: set[str], report: Report
) -> None:
    """Make `inline` and `attached` the role's only policies."""
    for name, document in inline.items():
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        if name not in inline:
            iam.delete_role_policy(RoleName=role, PolicyName=name)
            report(f"role {role}: removed inline policy {name}")
    present = {
        p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    }
    for arn in attached - present:
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    for arn in present - attached:
        iam.detach_role_policy(RoleName=role, PolicyArn=arn)
        report(f"role {role}: detached {arn}")


def _instance_profile(iam: Any, report: Report) -> None:
    try:
        profile = iam.get_instance_profile(InstanceProfileName=INSTANCE_PROFILE)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = iam.create_instance_profile(InstanceProfileName=INSTANCE_PROFILE)[
            "InstanceProfile"
        ]
        report(f"instance profile {INSTANCE_PROFILE}: created")
    if INSTANCE_ROLE not in {r["RoleName"] for r in profile.get("Roles", [])}:
        iam.add_role_to_instance_profile(
            InstanceProfileName=INSTANCE_PROFILE, RoleName=INSTANCE_ROLE
        )


def key_arn(kms: Any) -> str | None:
    """The ARN of the project's key (found by its alias), or None."""
    try:
        return kms.describe_key(KeyId=KMS_ALIAS)["KeyMetadata"]["Arn"]
    except kms.exceptions.NotFoundException:
        return None


def _key(kms: Any, account: str, report: Report) -> str:
    arn = key_arn(kms)
    if arn is None:
        arn = kms.create_key(
            Description="fruits: EMR local disk and EBS encryption",
            Tags=[{"TagKey": PROJECT_TAG["Key"], "TagValue": PROJECT_TAG["Value"]}],
        )["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName=KMS_ALIAS, TargetKeyId=arn)
        report(f"KMS key {KMS_ALIAS}: created ({arn})")
    put_key_policy(kms, arn, key_policy(account))
    return arn


# Seconds between PutKeyPolicy tries while IAM propagates new roles (about 2 minutes in all).
KEY_POLICY_RETRIES_S = (2, 4, 8, 15, 15, 30, 30, 30)


def put_key_policy(
    kms: Any,
    arn: str,
    policy: dict[str, Any],
    sleep: Callable[[float], None] = time.sleep,
    waits: Iterable[float] = KEY_POLICY_RETRIES_S,
) -> None:
    """PutKeyPolicy, tried again while KMS does not see the roles the policy names yet."""
    for wait in [*waits, None]:
        try:
            kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(policy))
            return
        except kms.exceptions.MalformedPolicyDocumentException:
            if wait is None:
                raise
            sleep(wait)


def vpcs_of(ec2: Any, subnet_ids: Iterable[str]) -> list[str]:
    subnet_ids = list(subnet_ids)
    if not subnet_ids:
        return []
    return sorted({s["VpcId"] for s in ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]})


def ensure_roles(
    session: Any,
    settings: Settings,
    subnet_ids: tuple[str, ...] = (),
    security_group_ids: tuple[str, ...] = (),
    report: Report = print,
) -> str:
    """Create or put back everything; returns the KMS key's ARN."""
    iam = session.client("iam")
    kms = session.client("kms", region_name=settings.region)
    account = session.client("sts", region_name=settings.region).get_caller_identity()["Account"]
    _role(iam, SERVICE_ROLE, service_trust(account, settings.region), report)
    _only_policies(
        iam, SERVICE_ROLE, {PASS_ROLE_POLICY_NAME: pass_instance_role(account)},
        {SERVICE_POLICY_ARN}, report,
    )  # fmt: skip
    _role(iam, INSTANCE_ROLE, instance_trust(), report)
    _only_policies(
        iam, INSTANCE_ROLE, {INSTANCE_POLICY_NAME: instance_policy(settings)}, set(), report
    )
    _instance_profile(iam, report)
    arn = _key(kms, account, report)
    report(f"KMS key {KMS_ALIAS}: key policy lets {SERVICE_ROLE} and {INSTANCE_ROLE} use it")
    ec2 = session.client("ec2", region_name=settings.region)
    resources = [*subnet_ids, *vpcs_of(ec2, subnet_ids), *security_group_ids]
    if resources:
        ec2.create_tags(Resources=resources, Tags=[MANAGED_POLICY_TAG])
        report(f"tagged {', '.join(resources)} {MANAGED_POLICY_TAG['Key']}=true")
    return arn
