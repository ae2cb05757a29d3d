"""Cluster size, duration and cost for N images, On-Demand against Spot task nodes, plus the
S3 requests the feature step makes.

    python -m bootstrap.aws.cost --images 10000000 --region eu-west-3 --deadline 2h [--phone-photos]

Throughput and requests per image come from the benchmark (bench/results.json: the
pipeline's images/s on the machine it ran on, divided by its cores, and the S3 requests by
type the latency proxy counted; phone photos' figures with --phone-photos); prices from
bootstrap/aws/emr/prices.json (dated).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap import cli
from bootstrap.aws.emr_cluster import PRICES_FILE, FleetLayout
from spark.settings import PROJECT_ROOT, ConfigError, require_eu_region

BENCH_RESULTS = PROJECT_ROOT / "bench" / "results.json"
STARTUP_HOURS = 0.2  # cluster start and bootstrap action, before the first step runs
VCPUS = {"xlarge": 4, "2xlarge": 8, "4xlarge": 16}
# S3's request price tiers: the rest of the types (DELETE) cost nothing.
TIER1 = {"PUT", "COPY", "POST", "LIST", "PUT_PART", "MULTIPART_START", "MULTIPART_COMPLETE",
         "DELETE_MANY"}  # fmt: skip
TIER2 = {"GET", "HEAD"}


@dataclass(frozen=True)
class Estimate:
    task_nodes: int
    vcpus: int
    hours: float
    on_demand_usd: float
    spot_usd: float


def vcpus_of(instance_type: str) -> int:
    return VCPUS[instance_type.split(".", 1)[1]]


def parse_hours(deadline: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(h|m)", deadline.strip())
    if not match:
        raise ConfigError(f"deadline must look like 2h or 90m, got {deadline!r}")
    value = float(match[1])
    return value if match[2] == "h" else value / 60


def workload_prefix(phone_photos: bool) -> str:
    return "phone_" if phone_photos else ""


def measured_ips_per_vcpu(results_file: Path = BENCH_RESULTS, phone_photos: bool = False) -> float:
    results = json.loads(results_file.read_text())
    cores = int(results["machine"].split()[0])
    return results[f"{workload_prefix(phone_photos)}pipeline_ips"] / cores


def measured_requests_per_image(
    results_file: Path = BENCH_RESULTS, phone_photos: bool = False
) -> dict[str, float]:
    """S3 requests per image by type, as the benchmark counted them in the feature step."""
    results = json.loads(results_file.read_text())
    prefix = workload_prefix(phone_photos)
    images = results[f"{prefix}images" if phone_photos else "images"]
    return {kind: n / images for kind, n in results[f"{prefix}requests_by_type"].items()}


def s3_request_usd(images: int, per_image: dict[str, float], prices: dict[str, float]) -> float:
    """USD of the S3 requests of a run over `images` images, at the table's request prices."""
    tier1 = sum(n for kind, n in per_image.items() if kind in TIER1)
    tier2 = sum(n for kind, n in per_image.items() if kind in TIER2)
    per_image_usd = (tier1 * prices["tier1_per_1000"] + tier2 * prices["tier2_per_1000"]) / 1000
    return images * per_image_usd


def estimate(
    images: int, deadline_h: float, ips_per_vcpu: float, prices: dict[str, Any], layout: FleetLayout
) -> Estimate:
    """Smallest number of task nodes that finishes within the deadline (start-up included)."""
    work_h = deadline_h - STARTUP_HOURS
    if work_h <= 0:
        raise ConfigError(
            f"a deadline under {STARTUP_HOURS} h leaves no time once the cluster starts"
        )
    core_type, task_type = layout.core_types[0], layout.task_types[0]
    core_vcpus = layout.core_units * vcpus_of(core_type)
    vcpu_hours = images / ips_per_vcpu / 3600
    needed = max(0, math.ceil((vcpu_hours / work_h - core_vcpus) / vcpus_of(task_type)))
    vcpus = core_vcpus + needed * vcpus_of(task_type)
    hours = STARTUP_HOURS + vcpu_hours / vcpus
    fixed = prices[layout.primary_type]["ec2"] + prices[layout.primary_type]["emr"]
    fixed += layout.core_units * (prices[core_type]["ec2"] + prices[core_type]["emr"])
    task_od = needed * (prices[task_type]["ec2"] + prices[task_type]["emr"])
    task_spot = needed * (prices[task_type]["spot"] + prices[task_type]["emr"])
    return Estimate(needed, vcpus, hours, hours * (fixed + task_od), hours * (fixed + task_spot))


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.aws.cost", __doc__)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--deadline", default="2h")
    parser.add_argument("--bench-results", type=Path, default=BENCH_RESULTS)
    parser.add_argument(
        "--phone-photos", action="store_true", help="the workload is phone photos (1280x960)"
    )
    args = parser.parse_args(argv)
    require_eu_region(args.region)
    table = json.loads(PRICES_FILE.read_text())
    if args.region not in table["regions"] or args.region not in table["s3_requests"]:
        raise ConfigError(f"no prices for {args.region} in {PRICES_FILE}")
    ips = measured_ips_per_vcpu(args.bench_results, args.phone_photos)
    per_image = measured_requests_per_image(args.bench_results, args.phone_photos)
    requests_usd = s3_request_usd(args.images, per_image, table["s3_requests"][args.region])
    layout = FleetLayout()
    result = estimate(
        args.images, parse_hours(args.deadline), ips, table["regions"][args.region], layout
    )
    print(f"{args.images:,} images in {args.region}, deadline {args.deadline}")
    core = f"{layout.core_units} x {layout.core_types[0]} core"
    tasks = f"{result.task_nodes} x {layout.task_types[0]} task"
    print(f"  cluster      1 x {layout.primary_type} primary, {core}, {tasks}")
    print(f"  working      {result.vcpus} vCPUs")
    print(f"  duration     {result.hours:.2f} h")
    print(f"  S3 requests  {requests_usd:10.2f} USD (feature step)")
    print(f"  On-Demand    {result.on_demand_usd + requests_usd:10.2f} USD (EC2 + EMR fee + S3)")
    print(
        f"  Spot tasks   {result.spot_usd + requests_usd:10.2f} USD "
        "(primary and core stay On-Demand)"
    )
    print("assumptions:")
    workload = "phone photos (1280x960)" if args.phone_photos else "100x100 images"
    print(
        f"  {ips:.1f} images/s per vCPU: the pipeline's figure for {workload} in "
        f"{args.bench_results.name} ({json.loads(args.bench_results.read_text())['date']}), "
        "scaled linearly"
    )
    rates = ", ".join(f"{kind} {n:.3f}" for kind, n in sorted(per_image.items()))
    print(f"  S3 requests per image, counted by the benchmark: {rates}")
    print(
        f"  {STARTUP_HOURS} h of cluster start-up; prices of {table['taken']} ({PRICES_FILE.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
