"""The EMR cluster the Spark assets run on: roles, doctor, create, describe, steps, terminate.

    python -m bootstrap.aws.emr_cluster roles [--subnet-id S] [--security-group G]
    python -m bootstrap.aws.emr_cluster doctor [--subnet-id S] [--security-group G]
    python -m bootstrap.aws.emr_cluster create [--subnet-id S] [--tls-certificates s3://...zip]
    python -m bootstrap.aws.emr_cluster describe j-XXXX
    python -m bootstrap.aws.emr_cluster steps j-XXXX
    python -m bootstrap.aws.emr_cluster terminate j-XXXX

The region comes from FRUITS_REGION and must be in the EU: anything else is refused with one
line before any API call. The cluster:
- EMR 7.x with Spark 3.5.6, Python 3.11 packages from the project's lock (bootstrap action);
- instance fleets: On-Demand primary and core, Spot task nodes over several instance types;
  what happens when Spot is short is said once, in SPOT_AT_START and SPOT_AT_SCALE_OUT;
- managed scaling limits, auto-termination when idle, logs in S3, a security configuration
  with encryption at rest (the KMS key of `roles`) and in transit, the roles of `roles`
  (bootstrap.aws.roles), tagged for EMR's v2 managed policy;
- every FRUITS_* setting exported to Spark's environment (spark-env), so that the Dagster
  resources' EnvVars resolve on the cluster as on the host. The cluster's own id, only known
  once created, the nodes read from the job-flow.json EMR writes on each of them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from bootstrap import cli
from bootstrap.aws import roles
from bootstrap.aws.doctor import doctor
from bootstrap.aws.iam import PROJECT_TAG
from bootstrap.aws.prices import PRICES_FILE, region_prices
from bootstrap.aws.wheelhouse import (
    BOOTSTRAP_SCRIPT,
    TLS_ZIP,
    bootstrap_uri,
    staging,
    upload_bootstrap,
)
from fruits_assets.deployments import current_settings
from spark.layout import STAGING_BOOTSTRAP
from spark.settings import ConfigError, Settings

RELEASE_LABEL = "emr-7.12.0"  # Spark 3.5.6, Python 3.11 available
# The Apache Iceberg each release ships (Amazon's build of it: emr-7.12.0 has 1.10.0-amzn-0,
# per EMR's Iceberg release history). The local jars (bootstrap/local/jars/pom.xml) pin the
# same version, so the code tested here is the code the cluster runs; a test compares them,
# and a release label missing here fails at import.
ICEBERG_OF_RELEASE = {"emr-7.12.0": "1.10.0"}
ICEBERG_VERSION = ICEBERG_OF_RELEASE[RELEASE_LABEL]
PYTHON = "/usr/bin/python3.11"
SPOT_TIMEOUT_MIN = 10
SPOT_RESIZE_TIMEOUT_MIN = 20
SPOT_AT_START = (
    f"the task fleet asks for Spot; what has not come after {SPOT_TIMEOUT_MIN} minutes is "
    "taken On-Demand (TimeoutAction SWITCH_TO_ON_DEMAND), so the start never waits on Spot"
)
SPOT_AT_SCALE_OUT = (
    "managed scaling adds On-Demand task units first, up to the On-Demand limit (the core "
    "units plus the task units the start may have taken On-Demand), then Spot only; no "
    "timeout switches a scale-out to On-Demand: Spot that has not come after "
    f"{SPOT_RESIZE_TIMEOUT_MIN} minutes is given up and the cluster runs on what it has, "
    "slower, no step fails for it"
)


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
    service_role: str = roles.SERVICE_ROLE
    instance_profile: str = roles.INSTANCE_PROFILE
    security_configuration: str = "fruits-encryption"
    kms_key_arn: str | None = None
    tls_certificates: str | None = None
    subnet_ids: tuple[str, ...] = ()
    layout: FleetLayout = FleetLayout()


def spark_environment(environ: dict[str, str], region: str | None = None) -> dict[str, str]:
    """What the cluster's Spark processes see: the FRUITS_* settings, minus local-only ones,
    and the region for every AWS client (dagster-aws's step runner makes `boto3.client("s3")`
    with none: it would ask us-east-1, which a private subnet's S3 gateway endpoint, regional,
    does not reach)."""
    local_only = {"FRUITS_S3_ENDPOINT", "FRUITS_SPARK_MASTER", "FRUITS_EMR_CLUSTER_ID"}
    exported = {k: v for k, v in environ.items() if k.startswith("FRUITS_") and k not in local_only}
    region = region or environ.get("FRUITS_REGION")
    regional = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region} if region else {}
    return exported | regional | {"FRUITS_DEPLOYMENT": "emr", "PYSPARK_PYTHON": PYTHON}


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
        fleet["LaunchSpecifications"] = {  # at start only (SPOT_AT_START)
            "SpotSpecification": {
                "TimeoutDurationMinutes": SPOT_TIMEOUT_MIN,
                "TimeoutAction": "SWITCH_TO_ON_DEMAND",
                "AllocationStrategy": "price-capacity-optimized",
            },
            "OnDemandSpecification": {"AllocationStrategy": "lowest-price"},
        }
        fleet["ResizeSpecifications"] = {  # at scale-out (SPOT_AT_SCALE_OUT): no switch exists
            "SpotResizeSpecification": {
                "TimeoutDurationMinutes": SPOT_RESIZE_TIMEOUT_MIN,
                "AllocationStrategy": "price-capacity-optimized",
            },
            "OnDemandResizeSpecification": {
                "TimeoutDurationMinutes": SPOT_RESIZE_TIMEOUT_MIN,
                "AllocationStrategy": "lowest-price",
            },
        }
    return fleet


# The v2 service policy acts only on clusters carrying MANAGED_POLICY_TAG; the host's policy
# only on those carrying PROJECT_TAG.
CLUSTER_TAGS = [PROJECT_TAG, {"Key": "data-residency", "Value": "eu"}, roles.MANAGED_POLICY_TAG]


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
                    "Args": [bootstrap_uri(settings), settings.region],
                },
            }
        ],
        "Configurations": [
            {
                "Classification": "spark-env",
                "Configurations": [
                    {
                        "Classification": "export",
                        "Properties": spark_environment(environ, settings.region),
                    }
                ],
            },
            {"Classification": "spark-defaults", "Properties": {"spark.pyspark.python": PYTHON}},
            # The release's own Iceberg (ICEBERG_VERSION) on every node's class path.
            {"Classification": "iceberg-defaults", "Properties": {"iceberg.enabled": "true"}},
        ],
        "ManagedScalingPolicy": {
            "ComputeLimits": {
                "UnitType": "InstanceFleetUnits",
                "MinimumCapacityUnits": layout.core_units,
                "MaximumCapacityUnits": layout.max_units,
                # Room for the start's Spot fallback (SPOT_AT_START); beyond it, Spot only.
                "MaximumOnDemandCapacityUnits": layout.core_units + layout.task_spot_units,
                "MaximumCoreCapacityUnits": layout.core_units,
            }
        },
        "AutoTerminationPolicy": {"IdleTimeout": layout.idle_timeout_s},
        "SecurityConfiguration": options.security_configuration,
        "ServiceRole": options.service_role,
        "JobFlowRole": options.instance_profile,
        "VisibleToAllUsers": True,
        "Tags": CLUSTER_TAGS,
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
    table = region_prices(region, prices_file)
    prices = table["regions"][region]
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


def tls_certificates_uri(settings: Settings, given: str | None = None) -> str:
    """Where the TLS zip lies: under <staging>/bootstrap/, which the instance role may read and
    the staging lifecycle never expires (nodes added by managed scaling read it too)."""
    allowed = staging(settings, STAGING_BOOTSTRAP) + "/"
    uri = given or allowed + TLS_ZIP
    if not uri.startswith(allowed):
        raise ConfigError(
            f"--tls-certificates {uri} lies outside {allowed}, which the instance role reads"
        )
    return uri


def kms_key(settings: Settings, given: str | None = None) -> str:
    """The security configuration's key: the one `roles` created, unless one is given."""
    arn = given or roles.key_arn(boto3.client("kms", region_name=settings.region))
    if arn is None:
        raise ConfigError(
            f"no KMS key {roles.KMS_ALIAS}: run python -m bootstrap.aws.emr_cluster roles"
        )
    return arn


def emr_client(settings: Settings) -> Any:
    # The endpoint comes from AWS_ENDPOINT_URL_EMR when set (the local stand-ins), else AWS.
    return boto3.client("emr", region_name=settings.region)


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
    current_settings(spark_environment(environ))
    emr = emr_client(settings)
    upload_bootstrap(settings)
    ensure_security_configuration(emr, options)
    # The nodes read their cluster's id from job-flow.json (spark.settings), written by EMR.
    return emr.run_job_flow(**cluster_request(settings, options, environ))["JobFlowId"]


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.aws.emr_cluster", __doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("create", help="create the cluster, print its id and hourly cost")
    make.add_argument("--name", default=ClusterOptions.name)
    make.add_argument("--service-role", default=ClusterOptions.service_role)
    make.add_argument("--instance-profile", default=ClusterOptions.instance_profile)
    make.add_argument("--security-configuration", default=ClusterOptions.security_configuration)
    make.add_argument("--kms-key-arn", help=f"KMS key for local disks and EBS ({roles.KMS_ALIAS})")
    make.add_argument(
        "--tls-certificates", help=f"s3:// zip of PEM certificates (<staging>/bootstrap/{TLS_ZIP})"
    )
    make.add_argument("--subnet-id", action="append", default=[], help="EU subnets, repeatable")
    network = {
        "roles": "create or put back the roles, instance profile, KMS key and network tags",
        "doctor": "check the account before the first run; one line per finding",
    }
    for name, help_text in network.items():
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--subnet-id", action="append", default=[])
        command.add_argument("--security-group", action="append", default=[])
    commands.add_parser("stage", help="stage what nodes read at start under <staging>/bootstrap/")
    for name in ("describe", "steps", "terminate"):
        commands.add_parser(name).add_argument("cluster_id")
    args = parser.parse_args(argv)
    if args.command == "doctor":  # a region outside the EU is one of its findings
        return doctor(boto3.Session(), os.environ, args.subnet_id, args.security_group)
    settings = current_settings()  # refuses a non-EU region before any API call
    if args.command == "roles":
        roles.ensure_roles(
            boto3.Session(), settings, tuple(args.subnet_id), tuple(args.security_group)
        )
    elif args.command == "stage":
        upload_bootstrap(settings)
        print(f"staged under {staging(settings, STAGING_BOOTSTRAP)}/")
    elif args.command == "create":
        options = ClusterOptions(
            name=args.name,
            service_role=args.service_role,
            instance_profile=args.instance_profile,
            security_configuration=args.security_configuration,
            kms_key_arn=kms_key(settings, args.kms_key_arn),
            tls_certificates=tls_certificates_uri(settings, args.tls_certificates),
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
