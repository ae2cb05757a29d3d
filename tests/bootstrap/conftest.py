"""Fixtures of the bootstrap tests: a tiny stand-in for the cluster's wheelhouse (wheels
written here, staged on the test S3), and a fresh AWS account in moto (in-process) for the
roles command and doctor."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from bootstrap.aws import wheelhouse


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A pure-Python wheel of one module holding VERSION (PEP 427, with its RECORD), named as
    wheels are: `Fruits.Probe` gives fruits_probe-<version>-py3-none-any.whl."""
    module = re.sub(r"[-_.]+", "_", name).lower()
    dist = f"{module}-{version}"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: fruits-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items())
    files[f"{dist}.dist-info/RECORD"] = (record + f"{dist}.dist-info/RECORD,,\n").encode()
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name_in_zip, data in files.items():
            archive.writestr(name_in_zip, data)
    return path


@pytest.fixture(scope="session")
def stage_wheelhouse(settings, s3, tmp_path_factory):
    """stage(pins, wheels=...) -> the s3:// folder of a bootstrap bundle whose lock pins `pins`
    (name==version) and whose wheelhouse holds wheels of `wheels` only (all pins by default)."""

    def _stage(pins: list[str], wheels: list[str] | None = None) -> str:
        folder = tmp_path_factory.mktemp("wheelhouse")
        house = folder / "wheelhouse"
        house.mkdir()
        lock = folder / wheelhouse.CLUSTER_LOCK.name
        lock.write_text("".join(f"{pin} \\\n    --hash=sha256:{'0' * 64}\n" for pin in pins))
        for pin in pins if wheels is None else wheels:
            make_wheel(house, *pin.split("=="))
        kept = [p for p in pins if wheels is None or p in wheels]
        wheelhouse.write_install_list(_lock_of(folder, kept), house)
        uri = f"s3://{settings.bucket}/fake_node/{folder.name}"
        wheelhouse.stage(s3, uri, house, lock)
        return uri

    def _lock_of(folder: Path, pins: list[str]) -> Path:
        lock = folder / "installable.lock"
        lock.write_text("".join(f"{pin}\n" for pin in pins))
        return lock

    return _stage


@pytest.fixture(scope="session")
def wheel_file():
    """make_wheel, for tests: wheel_file(folder, name, version) -> the .whl written."""
    return make_wheel


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
    (the process environment is restored afterwards)."""
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
