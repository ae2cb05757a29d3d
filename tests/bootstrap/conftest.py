"""A fresh AWS account in moto (in-process), for the roles command and doctor."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest

REGION = "eu-west-3"
ACCOUNT_ENV = {
    "FRUITS_DEPLOYMENT": "emr",
    "FRUITS_REGION": REGION,
    "FRUITS_BUCKET": "fruits-account-data",
    "FRUITS_STAGING_BUCKET": "fruits-account-staging",
    "FRUITS_PREFIX": "fruits",
    "FRUITS_STAGING_PREFIX": "emr_staging",
    "FRUITS_WEIGHTS": "s3://fruits-account-data/fruits/models/weights/mobilenet_v2.h5",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",  # AmazonEMRServicePolicy_v2 must exist
}


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_id: str
    group_id: str
    route_table_id: str
    endpoint_id: str


@pytest.fixture(scope="module")
def aws_account() -> Iterator[dict[str, str]]:
    """moto's AWS for this module, with the environment of an `emr` deployment pointing at it
    (the process environment is restored afterwards: Settings.load() fills it)."""
    from moto import mock_aws

    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith(("FRUITS_", "AWS_"))]:
        del os.environ[key]
    os.environ.update(ACCOUNT_ENV)
    try:
        with mock_aws():
            yield ACCOUNT_ENV
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def network(aws_account) -> Network:
    """A VPC with a subnet on its own route table, a security group, and S3's gateway endpoint."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")[
        "Subnet"
    ]["SubnetId"]
    group = ec2.create_security_group(GroupName="fruits-emr", Description="emr", VpcId=vpc)[
        "GroupId"
    ]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    endpoint = ec2.create_vpc_endpoint(
        VpcId=vpc,
        ServiceName=f"com.amazonaws.{REGION}.s3",
        VpcEndpointType="Gateway",
        RouteTableIds=[table],
    )["VpcEndpoint"]["VpcEndpointId"]
    return Network(vpc, subnet, group, table, endpoint)
