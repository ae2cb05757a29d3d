"""The EMR cluster the Spark assets run on: create, describe, list steps, terminate (boto3).

    python -m bootstrap.emr_cluster create --kms-key-arn ARN --tls-certificates s3://.../certs.zip
    python -m bootstrap.emr_cluster describe j-XXXX
    python -m bootstrap.emr_cluster steps j-XXXX
    python -m bootstrap.emr_cluster terminate j-XXXX

The region comes from FRUITS_REGION and must be in the EU: anything else is refused with one
line before any API call. The cluster:
- EMR 7.x with Spark 3.5.6, Python 3.11 packages from the project's lock (bootstrap action);
- instance fleets: On-Demand primary and core, Spot task nodes over several instance types
  that fall back to On-Demand when Spot capacity does not come;
- managed scaling limits, auto-termination when idle, logs in S3, a security configuration
  with encryption at rest and in transit, IAM roles given by name;
- every FRUITS_* setting exported to Spark's environment (spark-env), so that the Dagster
  resources' EnvVars resolve on the cluster as on the host. The cluster's own id, only known
  once created, the nodes read from the job-flow.json EMR writes on each of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from bootstrap import one_line_errors, wheelhouse
from bootstrap.wheelhouse import BOOTSTRAP_SCRIPT
from spark.layout import staging_uri
from spark.settings import PROJECT_ROOT, ConfigError, Settings
from spark.storage import s3_client

RELEASE_LABEL = "emr-7.12.0"  # Spark 3.5.6, Python 3.11 available
PYTHON = "/usr/bin/python3.11"
PRICES_FILE = PROJECT_ROOT / "bootstrap" / "emr" / "prices.json"


@dataclass(frozen=True)
class FleetLayout:
    primary_type: str = "m6i.xlarge"
    core_types: tuple[str, ...] = ("m6i.2xlarge", "m5.2xlarge")
    core_units: int = 2
    task_types: tuple[str, ...] = (
        "m6i.2xlarge",
        "m5.2xlarge",
        "m5a.2xlarge",
        "m6a.2xlarge",
        "c6i.2xlarge",
    )
    task_spot_units: int = 4
    max_units: int = 20
    idle_timeout_s: int = 3600


@dataclass(frozen=True)
class ClusterOptions:
    name: str = "fruits-features"
    service_role: str = "EMR_DefaultRole_V2"
    instance_profile: str = "EMR_EC2_DefaultRole"
    security_configuration: str = "fruits-encryption"
    kms_key_arn: str | None = None
    tls_certificates: str | None = None
    subnet_ids: tuple[str, ...] = ()
    layout: FleetLayout = FleetLayout()


def staging(settings: Settings, *parts: str) -> str:
    if not settings.staging_bucket:
        raise ConfigError("FRUITS_STAGING_BUCKET is not set")
    return staging_uri(settings.staging_bucket, settings.staging_prefix, *parts)


def spark_environment(environ: dict[str, str]) -> dict[str, str]:
    """What the cluster's Spark processes see: the FRUITS_* settings, minus local-only ones."""
    local_only = {"FRUITS_S3_ENDPOINT", "FRUITS_SPARK_MASTER", "FRUITS_EMR_CLUSTER_ID"}
    exported = {k: v for k, v in environ.items() if k.startswith("FRUITS_") and k not in local_only}
    return exported | {"FRUITS_DEPLOYMENT": "emr", "PYSPARK_PYTHON": PYTHON}


def _fleet(
    name: str, role: str, types: tuple[str, ...], on_demand: int, spot: int
) -> dict[str, Any]:
    fleet: dict[str, Any] = {
        "Name": name,
        "InstanceFleetType": role,
        "TargetOnDemandCapacity": on_demand,
        "TargetSpotCapacity": spot,
        "InstanceTypeConfigs": [{"InstanceType": t, "WeightedCapacity": 1} for t in types],
    }
    if spot:
        fleet["LaunchSpecifications"] = {
            "SpotSpecification": {
                "TimeoutDurationMinutes": 10,
                # No Spot capacity after 10 minutes: take On-Demand instead of waiting.
                "TimeoutAction": "SWITCH_TO_ON_DEMAND",
                "AllocationStrategy": "price-capacity-optimized",
            },
            "OnDemandSpecification": {"AllocationStrategy": "lowest-price"},
        }
    return fleet


def cluster_request(
    settings: Settings, options: ClusterOptions, environ: dict[str, str]
) -> dict[str, Any]:
    """The RunJobFlow request, as a plain dict (tested for shape)."""
    layout = options.layout
    instances: dict[str, Any] = {
        "InstanceFleets": [
            _fleet("primary", "MASTER", (layout.primary_type,), 1, 0),
            _fleet("core", "CORE", layout.core_types, layout.core_units, 0),
            _fleet("task-spot", "TASK", layout.task_types, 0, layout.task_spot_units),
        ],
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if options.subnet_ids:
        instances["Ec2SubnetIds"] = list(options.subnet_ids)
    return {
        "Name": options.name,
        "ReleaseLabel": RELEASE_LABEL,
        "Applications": [{"Name": "Spark"}],
        "LogUri": staging(settings, "logs") + "/",
        "Instances": instances,
        "BootstrapActions": [
            {
                "Name": "install-python-deps",
                "ScriptBootstrapAction": {
                    "Path": f"{bootstrap_uri(settings)}/{BOOTSTRAP_SCRIPT.name}",
                    "Args": [bootstrap_uri(settings)],
                },
            }
        ],
        "Configurations": [
            {
                "Classification": "spark-env",
                "Configurations": [
                    {"Classification": "export", "Properties": spark_environment(environ)}
                ],
            },
            {"Classification": "spark-defaults", "Properties": {"spark.pyspark.python": PYTHON}},
        ],
        "ManagedScalingPolicy": {
            "ComputeLimits": {
                "UnitType": "InstanceFleetUnits",
                "MinimumCapacityUnits": layout.core_units,
                "MaximumCapacityUnits": layout.max_units,
                "MaximumOnDemandCapacityUnits": layout.core_units,
                "MaximumCoreCapacityUnits": layout.core_units,
            }
        },
        "AutoTerminationPolicy": {"IdleTimeout": layout.idle_timeout_s},
        "SecurityConfiguration": options.security_configuration,
        "ServiceRole": options.service_role,
        "JobFlowRole": options.instance_profile,
        "VisibleToAllUsers": True,
        "Tags": [{"Key": "project", "Value": "fruits"}, {"Key": "data-residency", "Value": "eu"}],
    }


def security_configuration(options: ClusterOptions) -> dict[str, Any]:
    """Encryption at rest (S3 SSE, KMS-encrypted local disks and EBS) and in transit (TLS)."""
    if not options.kms_key_arn or not options.tls_certificates:
        raise ConfigError(
            "--kms-key-arn and --tls-certificates are needed to create the security configuration"
        )
    return {
        "EncryptionConfiguration": {
            "EnableInTransitEncryption": True,
            "EnableAtRestEncryption": True,
            "InTransitEncryptionConfiguration": {
                "TLSCertificateConfiguration": {
                    "CertificateProviderType": "PEM",
                    "S3Object": options.tls_certificates,
                }
            },
            "AtRestEncryptionConfiguration": {
                "S3EncryptionConfiguration": {"EncryptionMode": "SSE-S3"},
                "LocalDiskEncryptionConfiguration": {
                    "EncryptionKeyProviderType": "AwsKms",
                    "AwsKmsKey": options.kms_key_arn,
                    "EnableEbsEncryption": True,
                },
            },
        }
    }


def hourly_cost(
    layout: FleetLayout, region: str, prices_file: Path = PRICES_FILE
) -> dict[str, Any]:
    """USD per hour of the starting layout (EC2 + EMR fee), Spot tasks at the table's Spot price."""
    table = json.loads(prices_file.read_text())
    prices = table["regions"].get(region)
    if prices is None:
        raise ConfigError(f"no prices for {region} in {prices_file}")
    core_type, task_type = layout.core_types[0], layout.task_types[0]
    lines = {
        "primary (On-Demand)": prices[layout.primary_type]["ec2"]
        + prices[layout.primary_type]["emr"],
        "core (On-Demand)": layout.core_units
        * (prices[core_type]["ec2"] + prices[core_type]["emr"]),
        "task (Spot)": layout.task_spot_units
        * (prices[task_type]["spot"] + prices[task_type]["emr"]),
    }
    return {"prices_taken": table["taken"], "lines": lines, "total": sum(lines.values())}


def emr_client(settings: Settings) -> Any:
    # The endpoint comes from AWS_ENDPOINT_URL_EMR when set (the local stand-ins), else AWS.
    return boto3.client("emr", region_name=settings.region)


def bootstrap_uri(settings: Settings) -> str:
    """The staged bootstrap action, cluster lock and wheelhouse (bootstrap.wheelhouse)."""
    return staging(settings, "bootstrap", wheelhouse.bundle_digest())


def upload_bootstrap(settings: Settings) -> str:
    """Stages what the bootstrap action installs from (the wheelhouse is built here, once per
    lock); returns the staged folder."""
    folder = bootstrap_uri(settings)
    wheelhouse.stage(s3_client(settings), folder, wheelhouse.build())
    return folder


def ensure_security_configuration(emr: Any, options: ClusterOptions) -> None:
    try:
        emr.describe_security_configuration(Name=options.security_configuration)
    except emr.exceptions.InvalidRequestException:  # not there yet
        emr.create_security_configuration(
            Name=options.security_configuration,
            SecurityConfiguration=json.dumps(security_configuration(options)),
        )


def create(settings: Settings, options: ClusterOptions, environ: dict[str, str]) -> str:
    # What the cluster will run with must be valid there (EU region, weights on S3...).
    Settings.from_env(spark_environment(environ))
    emr = emr_client(settings)
    upload_bootstrap(settings)
    ensure_security_configuration(emr, options)
    # The nodes read their cluster's id from job-flow.json (spark.settings), written by EMR.
    return emr.run_job_flow(**cluster_request(settings, options, environ))["JobFlowId"]


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bootstrap.emr_cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("create", help="create the cluster, print its id and hourly cost")
    make.add_argument("--name", default=ClusterOptions.name)
    make.add_argument("--service-role", default=ClusterOptions.service_role)
    make.add_argument("--instance-profile", default=ClusterOptions.instance_profile)
    make.add_argument("--security-configuration", default=ClusterOptions.security_configuration)
    make.add_argument("--kms-key-arn", help="KMS key for local disk and EBS encryption")
    make.add_argument("--tls-certificates", help="s3:// zip of PEM certificates for in-transit TLS")
    make.add_argument("--subnet-id", action="append", default=[], help="EU subnets, repeatable")
    for name in ("describe", "steps", "terminate"):
        commands.add_parser(name).add_argument("cluster_id")
    args = parser.parse_args(argv)
    settings = Settings.load()  # refuses a non-EU region before any API call
    if args.command == "create":
        options = ClusterOptions(
            name=args.name,
            service_role=args.service_role,
            instance_profile=args.instance_profile,
            security_configuration=args.security_configuration,
            kms_key_arn=args.kms_key_arn,
            tls_certificates=args.tls_certificates,
            subnet_ids=tuple(args.subnet_id),
        )
        cost = hourly_cost(options.layout, settings.region)
        cluster_id = create(settings, options, dict(os.environ))
        print(cluster_id)
        print(f"hourly cost at start, USD (prices of {cost['prices_taken']}):", file=sys.stderr)
        for line, usd in cost["lines"].items():
            print(f"  {line:22} {usd:7.3f}", file=sys.stderr)
        print(f"  {'total':22} {cost['total']:7.3f}", file=sys.stderr)
    elif args.command == "describe":
        cluster = emr_client(settings).describe_cluster(ClusterId=args.cluster_id)["Cluster"]
        print(json.dumps(cluster, indent=2, default=str))
    elif args.command == "steps":
        for step in emr_client(settings).list_steps(ClusterId=args.cluster_id)["Steps"]:
            print(f"{step['Id']}  {step['Status']['State']:10}  {step['Name']}")
    else:
        emr_client(settings).terminate_job_flows(JobFlowIds=[args.cluster_id])
        print(f"terminating {args.cluster_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
