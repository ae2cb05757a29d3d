"""What a node in a subnet can reach, read from EC2 (Describe calls only).

One predicate, used by `doctor` (bootstrap.aws.doctor, a finding per subnet) and by the fake
EMR (bootstrap.local.fake_emr, a node that cannot reach KMS at boot fails), so that the two
never disagree on what counts as a route.
"""

from __future__ import annotations

from typing import Any


def describe_subnet(ec2: Any, subnet_id: str) -> dict[str, Any]:
    return ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]


def route_table(ec2: Any, subnet: dict[str, Any]) -> dict[str, Any]:
    """The subnet's route table: its own, else the VPC's main one."""
    own = [{"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}]
    main = [
        {"Name": "vpc-id", "Values": [subnet["VpcId"]]},
        {"Name": "association.main", "Values": ["true"]},
    ]
    tables = (
        ec2.describe_route_tables(Filters=own)["RouteTables"]
        or ec2.describe_route_tables(Filters=main)["RouteTables"]
    )
    return tables[0] if tables else {"RouteTableId": "?", "Routes": []}


def routes_to_internet(table: dict[str, Any]) -> bool:
    """A default route through a NAT or internet gateway: AWS's public endpoints are reached."""
    return any(
        r.get("DestinationCidrBlock") == "0.0.0.0/0"
        and (r.get("NatGatewayId") or str(r.get("GatewayId", "")).startswith("igw-"))
        and r.get("State", "active") == "active"
        for r in table.get("Routes", [])
    )


def interface_service(region: str, service: str) -> str:
    return f"com.amazonaws.{region}.{service}"


def has_interface_endpoint(ec2: Any, region: str, vpc_id: str, service: str) -> bool:
    """An available interface endpoint for `service` in the VPC, with private DNS (so that
    the service's usual name, which the SDKs and EMR's agents call, reaches it)."""
    filters = [
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "service-name", "Values": [interface_service(region, service)]},
    ]
    return any(
        e.get("VpcEndpointType") == "Interface"
        and e.get("State", "").lower() == "available"
        and e.get("PrivateDnsEnabled")
        for e in ec2.describe_vpc_endpoints(Filters=filters)["VpcEndpoints"]
    )


def reaches_service(
    ec2: Any, region: str, subnet: dict[str, Any], service: str, table: dict[str, Any] | None = None
) -> bool:
    """Whether a node in the subnet reaches `service` (kms, glue...): a route to the internet
    (NAT or internet gateway), or the service's interface endpoint with private DNS in its VPC."""
    table = table if table is not None else route_table(ec2, subnet)
    return routes_to_internet(table) or has_interface_endpoint(
        ec2, region, subnet["VpcId"], service
    )
