"""Cluster size, duration and cost for N images, On-Demand against Spot task nodes.

    python -m bootstrap.cost --images 10000000 --region eu-west-3 --deadline 2h

Throughput comes from the benchmark (bench/results.json: the pipeline's images/s on the
machine it ran on, divided by its cores); prices from bootstrap/emr/prices.json (dated).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap import one_line_errors
from bootstrap.emr_cluster import PRICES_FILE, FleetLayout
from spark.settings import PROJECT_ROOT, ConfigError, require_eu_region

BENCH_RESULTS = PROJECT_ROOT / "bench" / "results.json"
STARTUP_HOURS = 0.2  # cluster start and bootstrap action, before the first step runs
VCPUS = {"xlarge": 4, "2xlarge": 8, "4xlarge": 16}


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


def measured_ips_per_vcpu(results_file: Path = BENCH_RESULTS) -> float:
    results = json.loads(results_file.read_text())
    cores = int(results["machine"].split()[0])
    return results["pipeline_ips"] / cores


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


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bootstrap.cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--deadline", default="2h")
    parser.add_argument("--bench-results", type=Path, default=BENCH_RESULTS)
    args = parser.parse_args(argv)
    require_eu_region(args.region)
    table = json.loads(PRICES_FILE.read_text())
    if args.region not in table["regions"]:
        raise ConfigError(f"no prices for {args.region} in {PRICES_FILE}")
    ips = measured_ips_per_vcpu(args.bench_results)
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
    print(f"  On-Demand    {result.on_demand_usd:10.2f} USD (EC2 + EMR fee)")
    print(f"  Spot tasks   {result.spot_usd:10.2f} USD (primary and core stay On-Demand)")
    print("assumptions:")
    print(
        f"  {ips:.1f} images/s per vCPU: the pipeline's figure in {args.bench_results.name} "
        f"({json.loads(args.bench_results.read_text())['date']}), scaled linearly"
    )
    print(
        f"  {STARTUP_HOURS} h of cluster start-up; prices of {table['taken']} ({PRICES_FILE.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
