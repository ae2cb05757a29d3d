"""Checks an AWS account before the first run: `python -m bootstrap.aws.emr_cluster doctor`.

One line per finding, each with the command that fixes it; exit code 1 when there is any.
Reads only (Get/Describe/List calls): the operator's policy (bootstrap.aws.iam operator)
allows them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from bootstrap.aws import buckets, network, roles, wheelhouse
from bootstrap.aws.iam import instance_policy
from bootstrap.aws.prices import PRICES_FILE, region_prices
from bootstrap.aws.wheelhouse import TLS_ZIP, WHEELHOUSE, bootstrap_uri
from fruits_assets.deployments import current_settings
from spark.layout import STAGING_BOOTSTRAP, WAREHOUSE, Layout, split_uri
from spark.settings import ConfigError, Settings

ROLES_FIX = "python -m bootstrap.aws.emr_cluster roles"
BUCKETS_FIX = "python -m bootstrap.aws.buckets create"
STAGE_FIX = "python -m bootstrap.aws.emr_cluster stage"
Finding = tuple[str, str]  # what is wrong, the command that fixes it


def _document(value: Any) -> dict[str, Any]:
    # IAM returns policy documents URL-encoded (boto3 decodes them; some stand-ins do not).
    return value if isinstance(value, dict) else json.loads(unquote(value))


def _code(error: Exception) -> str:
    return getattr(error, "response", {}).get("Error", {}).get("Code", "")


def check_bucket(s3: Any, bucket: str, settings: Settings) -> Iterator[Finding]:
    fix = BUCKETS_FIX
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    except s3.exceptions.ClientError:
        yield f"bucket s3://{bucket} does not exist or cannot be read", fix
        return
    if location != settings.region:
        yield f"bucket s3://{bucket} lies in {location}, not {settings.region}", "a new bucket"
    try:
        s3.get_bucket_encryption(Bucket=bucket)
    except s3.exceptions.ClientError:
        yield f"bucket s3://{bucket} has no default encryption", fix
    try:
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except s3.exceptions.ClientError:
        block = {}
    if len(block) != 4 or not all(block.values()):
        yield f"bucket s3://{bucket} does not block all public access", fix
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except s3.exceptions.ClientError:
        rules = []
    expected = buckets.lifecycle_rules(buckets.bucket_expiry(settings)[bucket])
    if _expiries(rules) != _expiries(expected):
        yield f"bucket s3://{bucket} has not the project's lifecycle rules", fix
    bundle, tls_zip = _staged_artifacts(settings)
    kept = [*bundle, tls_zip]
    if bucket == settings.staging_bucket and any(buckets.expiry_days(rules, k) for k in kept):
        yield f"the lifecycle of s3://{bucket} expires what nodes re-read at start", fix


def _expiries(rules: list[dict[str, Any]]) -> set[tuple[str, int | None]]:
    return {
        (r.get("Filter", {}).get("Prefix", ""), r.get("Expiration", {}).get("Days"))
        for r in rules
        if r.get("Status") == "Enabled"
    }


def check_roles(iam: Any, settings: Settings) -> Iterator[Finding]:
    expected = {
        roles.SERVICE_ROLE: ("elasticmapreduce.amazonaws.com", {roles.PASS_ROLE_POLICY_NAME},
                             {roles.SERVICE_POLICY_ARN}),
        roles.INSTANCE_ROLE: ("ec2.amazonaws.com", {roles.INSTANCE_POLICY_NAME}, set()),
    }  # fmt: skip
    for name, (service, inline, attached) in expected.items():
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            yield f"role {name} does not exist", ROLES_FIX
            continue
        trust = json.dumps(_document(role["AssumeRolePolicyDocument"]))
        if service not in trust:
            yield f"role {name} does not trust {service}", ROLES_FIX
        present = set(iam.list_role_policies(RoleName=name)["PolicyNames"])
        arns = {
            p["PolicyArn"]
            for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        }
        if present != inline or arns != attached:
            grants = sorted(present | arns)
            yield f"role {name} holds {grants}, not exactly {sorted(inline | attached)}", ROLES_FIX
    yield from _instance_grant(iam, settings)
    try:
        profile = iam.get_instance_profile(InstanceProfileName=roles.INSTANCE_PROFILE)
    except iam.exceptions.NoSuchEntityException:
        yield f"instance profile {roles.INSTANCE_PROFILE} does not exist", ROLES_FIX
        return
    if roles.INSTANCE_ROLE not in {r["RoleName"] for r in profile["InstanceProfile"]["Roles"]}:
        yield f"instance profile {roles.INSTANCE_PROFILE} lacks {roles.INSTANCE_ROLE}", ROLES_FIX


def _instance_grant(iam: Any, settings: Settings) -> Iterator[Finding]:
    try:
        document = iam.get_role_policy(
            RoleName=roles.INSTANCE_ROLE, PolicyName=roles.INSTANCE_POLICY_NAME
        )["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        return  # reported above
    if _document(document) != instance_policy(settings):
        yield f"role {roles.INSTANCE_ROLE}'s policy is not bootstrap.aws.iam instance", ROLES_FIX


def check_key(kms: Any, account: str) -> Iterator[Finding]:
    arn = roles.key_arn(kms)
    if arn is None:
        yield f"KMS key {roles.KMS_ALIAS} does not exist", ROLES_FIX
        return
    if kms.describe_key(KeyId=arn)["KeyMetadata"].get("KeyState") != "Enabled":
        yield f"KMS key {roles.KMS_ALIAS} is not enabled", f"aws kms enable-key --key-id {arn}"
    policy = _document(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    for role in (roles.SERVICE_ROLE, roles.INSTANCE_ROLE):
        if not _key_use_granted(policy, roles.role_arn(account, role)):
            yield f"KMS key {roles.KMS_ALIAS}'s policy does not let {role} use it", ROLES_FIX


def _key_use_granted(policy: dict[str, Any], principal: str) -> bool:
    granted: set[str] = set()
    for statement in policy.get("Statement", []):
        principals = statement.get("Principal", {}).get("AWS", [])
        principals = [principals] if isinstance(principals, str) else principals
        actions = statement.get("Action", [])
        if statement.get("Effect") == "Allow" and principal in principals:
            granted |= {actions} if isinstance(actions, str) else set(actions)
    return set(roles.KEY_USE) <= granted


def _staged_artifacts(settings: Settings) -> tuple[list[str], str]:
    """What nodes read at start: the bootstrap bundle's folder (script, cluster lock,
    wheelhouse; bootstrap.aws.wheelhouse) as keys, and the TLS zip's key."""

    bucket, folder = split_uri(bootstrap_uri(settings))
    names = (wheelhouse.BOOTSTRAP_SCRIPT.name, wheelhouse.CLUSTER_LOCK.name, f"{WHEELHOUSE}/")
    bundle = [f"{folder}/{name}" for name in names]
    return bundle, f"{settings.staging_prefix}/{STAGING_BOOTSTRAP}/{TLS_ZIP}"


def _staged(s3: Any, bucket: str, prefix: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"))


def check_staged(s3: Any, settings: Settings) -> Iterator[Finding]:
    bucket = settings.staging_bucket
    bundle, tls_zip = _staged_artifacts(settings)
    for key in bundle:
        if not _staged(s3, bucket, key):
            yield f"s3://{bucket}/{key} is not staged", STAGE_FIX
    if not _staged(s3, bucket, tls_zip):
        name = tls_zip.rsplit("/", 1)[-1]
        yield (
            f"no TLS certificates at s3://{bucket}/{tls_zip}",
            f"aws s3 cp {name} s3://{bucket}/{tls_zip}",
        )


def check_network(
    ec2: Any,
    region: str,
    subnet_ids: list[str],
    group_ids: list[str],
    interface_services: tuple[str, ...] = ("kms",),
) -> Iterator[Finding]:
    """The tags of the v2 managed policies (subnets, their VPCs, the groups), and the routes
    the nodes need from a private subnet: S3's gateway endpoint, and an interface endpoint
    for each of `interface_services` (KMS: every node decrypts its disks at boot) unless the
    subnet routes to the internet."""
    tag = roles.MANAGED_POLICY_TAG
    tag_fix = f"{ROLES_FIX} " + " ".join(
        [f"--subnet-id {s}" for s in subnet_ids] + [f"--security-group {g}" for g in group_ids]
    )
    subnets = ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"] if subnet_ids else []
    groups = ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"] if group_ids else []
    vpc_ids = sorted({s["VpcId"] for s in subnets})
    vpcs = ec2.describe_vpcs(VpcIds=vpc_ids)["Vpcs"] if vpc_ids else []
    tagged = [(s["SubnetId"], s) for s in subnets] + [(g["GroupId"], g) for g in groups]
    for rid, resource in tagged + [(v["VpcId"], v) for v in vpcs]:
        if {"Key": tag["Key"], "Value": tag["Value"]} not in resource.get("Tags", []):
            why = " (EMR may not create its security groups there)" if rid in vpc_ids else ""
            yield f"{rid} lacks the tag {tag['Key']}=true{why}", tag_fix
    for subnet in subnets:
        table = network.route_table(ec2, subnet)
        yield from _s3_route(ec2, region, subnet, table)
        for service in interface_services:
            yield from _interface_route(ec2, region, subnet, table, service, group_ids)


def _interface_route(
    ec2: Any,
    region: str,
    subnet: dict[str, Any],
    table: dict[str, Any],
    service: str,
    group_ids: list[str],
) -> Iterator[Finding]:
    """An interface endpoint for `service` in the subnet's VPC, with private DNS (so the
    service's usual name reaches it), or a route to the internet (bootstrap.aws.network, the
    fake EMR's nodes' rule too)."""
    if network.reaches_service(ec2, region, subnet, service, table):
        return
    vpc, name = subnet["VpcId"], network.interface_service(region, service)
    groups = "".join(f" --security-group-ids {g}" for g in group_ids)
    yield (
        f"{subnet['SubnetId']} has no route to {service.upper()} (no interface endpoint "
        f"{name} with private DNS in {vpc}, no NAT)",
        f"aws ec2 create-vpc-endpoint --vpc-id {vpc} --vpc-endpoint-type Interface "
        f"--service-name {name} --subnet-ids {subnet['SubnetId']}{groups} --private-dns-enabled",
    )


def _s3_route(
    ec2: Any, region: str, subnet: dict[str, Any], route_table: dict[str, Any]
) -> Iterator[Finding]:
    """A gateway endpoint for S3 on the subnet's route table."""
    vpc = subnet["VpcId"]
    table = route_table["RouteTableId"]
    service = f"com.amazonaws.{region}.s3"
    endpoints = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "service-name", "Values": [service]}]
    )["VpcEndpoints"]
    if not any(
        e.get("VpcEndpointType") == "Gateway"
        and e.get("State", "").lower() == "available"
        and table in e.get("RouteTableIds", [])
        for e in endpoints
    ):
        yield (
            f"{subnet['SubnetId']} has no route to S3 (no gateway endpoint on {table})",
            f"aws ec2 create-vpc-endpoint --vpc-id {vpc} --vpc-endpoint-type Gateway "
            f"--service-name {service} --route-table-ids {table}",
        )


def check_prices(region: str, prices_file: Path | None = None) -> Iterator[Finding]:
    """The region in the price table `create` and bootstrap.aws.cost read."""
    prices_file = prices_file or PRICES_FILE
    try:
        region_prices(region, prices_file)
    except ConfigError:
        yield (
            f"no prices for {region} in {prices_file.name}: create cannot say its hourly cost",
            f"add {region}'s EC2, Spot, EMR and S3 request prices to {prices_file}",
        )


def check_glue_database(glue: Any, settings: Settings) -> Iterator[Finding]:
    """The tables' database in the Glue Data Catalog (catalog_type glue; spark.settings has
    checked that the namespace is a name Glue and Athena take)."""
    name = settings.namespace
    try:
        glue.get_database(Name=name)
    except glue.exceptions.EntityNotFoundException:
        location = Layout.of(settings).uri(WAREHOUSE, name)
        database = json.dumps({"Name": name, "LocationUri": location})
        yield (
            f"Glue database {name} does not exist (Athena sees no tables before the first run)",
            f"aws glue create-database --region {settings.region} --database-input '{database}'",
        )


def findings(
    session: Any, settings: Settings, subnet_ids: list[str], group_ids: list[str]
) -> Iterator[Finding]:
    s3 = session.client("s3", region_name=settings.region, endpoint_url=settings.s3_endpoint)
    bucket_names = dict.fromkeys([settings.bucket, settings.staging_bucket])
    for bucket in filter(None, bucket_names):
        yield from check_bucket(s3, bucket, settings)
    yield from check_roles(session.client("iam"), settings)
    account = session.client("sts", region_name=settings.region).get_caller_identity()["Account"]
    yield from check_key(session.client("kms", region_name=settings.region), account)
    if settings.staging_bucket:
        yield from check_staged(s3, settings)
    glue = settings.catalog_type == "glue"
    if glue:
        yield from check_glue_database(
            session.client("glue", region_name=settings.region), settings
        )
    yield from check_prices(settings.region)
    ec2 = session.client("ec2", region_name=settings.region)
    services = ("kms", "glue") if glue else ("kms",)  # the nodes' Iceberg catalog is Glue
    yield from check_network(ec2, settings.region, subnet_ids, group_ids, services)


def doctor(
    session: Any, environ: Mapping[str, str], subnet_ids: list[str], group_ids: list[str]
) -> int:
    try:
        settings = current_settings(environ)
    except ConfigError as error:
        print(f"finding: {error} -> fix: export FRUITS_REGION=eu-west-3 (any EU region)")
        return 1
    if not settings.staging_bucket:
        print("finding: FRUITS_STAGING_BUCKET is not set -> fix: export FRUITS_STAGING_BUCKET=...")
        return 1
    count = 0
    for what, fix in findings(session, settings, subnet_ids, group_ids):
        print(f"finding: {what} -> fix: {fix}")
        count += 1
    print(f"doctor: {count} finding(s)" if count else "doctor: no findings")
    return 1 if count else 0
