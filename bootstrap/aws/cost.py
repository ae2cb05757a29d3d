"""What the pipeline costs on EMR: one run, or a year of daily runs, from measured figures.

    python -m bootstrap.aws.cost --images 10000000                 # a year: 365 daily runs
    python -m bootstrap.aws.cost --images 50000 --days 1 --deadline 90m --region eu-west-1

The cluster is the one `bootstrap.aws.emr_cluster create` asks for (FleetLayout) and the
managed scaling policy it sets: at most MaximumCapacityUnits core and task units, On-Demand
first up to MaximumOnDemandCapacityUnits and Spot beyond, and an idle time before
auto-termination that is billed after every run. A deadline the policy cannot meet is said,
with the duration the largest allowed cluster reaches; so is the run when no Spot comes (the
cluster then stops at the On-Demand limit, slower).

Measured figures come from the benchmark (bench/results.json): the pipeline's images/s per
core, the S3 requests per image by type, and from its scale part the sensor's requests per
tick, the PCA refit's seconds and the reduced rows per second; a figure the results lack is
named and left out. Prices: bootstrap/aws/emr/prices.json (dated; what is unverified says so).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap import cli
from bootstrap.aws.emr_cluster import SPOT_TIMEOUT_MIN, FleetLayout
from bootstrap.aws.prices import PRICES_FILE, region_prices
from spark.settings import PROJECT_ROOT, ConfigError, require_eu_region

BENCH_RESULTS = PROJECT_ROOT / "bench" / "results.json"
STARTUP_HOURS = 0.2  # cluster start and bootstrap action, before the first step runs
VCPUS = {"xlarge": 4, "2xlarge": 8, "4xlarge": 16}
# S3's request price tiers: the rest of the types (DELETE) cost nothing.
TIER1 = {"PUT", "COPY", "POST", "LIST", "PUT_PART", "MULTIPART_START", "MULTIPART_COMPLETE",
         "DELETE_MANY"}  # fmt: skip
TIER2 = {"GET", "HEAD"}
# fruits_assets.sensors.new_uploads's minimum_interval_seconds (a test keeps them equal; the
# sensor's module is not imported here, it loads Dagster and Spark).
SENSOR_INTERVAL_S = 60
HOURS_PER_YEAR = 365 * 24


@dataclass(frozen=True)
class Capacity:
    """The managed scaling limits of a FleetLayout, in instances (every WeightedCapacity is 1)."""

    core_units: int
    max_units: int
    max_on_demand_units: int
    idle_hours: float

    @classmethod
    def of(cls, layout: FleetLayout) -> Capacity:
        # The same arithmetic as emr_cluster.cluster_request's ManagedScalingPolicy.
        return cls(
            layout.core_units,
            layout.max_units,
            layout.core_units + layout.task_spot_units,
            layout.idle_timeout_s / 3600,
        )

    @property
    def max_task_units(self) -> int:
        return self.max_units - self.core_units

    @property
    def max_on_demand_task_units(self) -> int:
        return self.max_on_demand_units - self.core_units


@dataclass(frozen=True)
class Estimate:
    task_units: int
    task_on_demand_units: int
    task_spot_units: int
    vcpus: int
    hours: float  # start-up and work
    meets_deadline: bool
    run_usd: float  # primary, core and task units while the run lasts
    usd_per_hour: float  # of that cluster
    idle_usd: float  # primary and core until auto-termination, after the run
    without_spot_hours: float  # no Spot comes: the cluster stops at the On-Demand limit
    without_spot_usd: float

    @property
    def usd(self) -> float:
        return self.run_usd + self.idle_usd


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


def bench_cores(results: dict[str, Any]) -> int:
    return int(results["machine"].split()[0])


def measured_ips_per_vcpu(results_file: Path = BENCH_RESULTS, phone_photos: bool = False) -> float:
    results = json.loads(results_file.read_text())
    return results[f"{workload_prefix(phone_photos)}pipeline_ips"] / bench_cores(results)


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


def node_usd(prices: dict[str, Any], instance_type: str, spot: bool = False) -> float:
    """USD per hour of one node: EC2 (On-Demand or Spot) and the EMR fee."""
    price = prices[instance_type]
    return price["spot" if spot else "ec2"] + price["emr"]


def minimum_usd_per_hour(prices: dict[str, Any], layout: FleetLayout) -> float:
    """Primary and core nodes: what managed scaling keeps (MinimumCapacityUnits) when idle."""
    core = layout.core_units * node_usd(prices, layout.core_types[0])
    return node_usd(prices, layout.primary_type) + core


def estimate(
    images: int, deadline_h: float, ips_per_vcpu: float, prices: dict[str, Any], layout: FleetLayout
) -> Estimate:
    """The cluster managed scaling gives a run that should finish within the deadline
    (start-up included): the task units the cluster starts with (Spot), then, as many as are
    wanted, On-Demand units first up to the On-Demand limit and Spot beyond, no more than
    MaximumCapacityUnits. Without Spot, the start's units come On-Demand after SPOT_TIMEOUT_MIN
    and the On-Demand limit stops the cluster there."""
    work_h = deadline_h - STARTUP_HOURS
    if work_h <= 0:
        raise ConfigError(
            f"a deadline under {STARTUP_HOURS} h leaves no time once the cluster starts"
        )
    capacity = Capacity.of(layout)
    core_type, task_type = layout.core_types[0], layout.task_types[0]
    core_vcpus = layout.core_units * vcpus_of(core_type)
    vcpu_hours = images / ips_per_vcpu / 3600
    wanted = max(0, math.ceil((vcpu_hours / work_h - core_vcpus) / vcpus_of(task_type)))
    start = min(layout.task_spot_units, capacity.max_task_units)
    tasks = min(max(wanted, start), capacity.max_task_units)
    on_demand = min(tasks - start, capacity.max_on_demand_task_units)

    def run(task_units: int, spot_units: int, waited_h: float) -> tuple[int, float, float, float]:
        vcpus = core_vcpus + task_units * vcpus_of(task_type)
        hours = STARTUP_HOURS + waited_h + vcpu_hours / vcpus
        per_hour = minimum_usd_per_hour(prices, layout)
        per_hour += (task_units - spot_units) * node_usd(prices, task_type)
        per_hour += spot_units * node_usd(prices, task_type, spot=True)
        return vcpus, hours, hours * per_hour, per_hour

    vcpus, hours, run_usd, per_hour = run(tasks, tasks - on_demand, 0.0)
    no_spot_units = min(start, capacity.max_on_demand_task_units)
    _, without_spot_hours, without_spot_run, _ = run(no_spot_units, 0, SPOT_TIMEOUT_MIN / 60)
    idle_usd = capacity.idle_hours * minimum_usd_per_hour(prices, layout)
    return Estimate(
        task_units=tasks,
        task_on_demand_units=on_demand,
        task_spot_units=tasks - on_demand,
        vcpus=vcpus,
        hours=hours,
        meets_deadline=hours <= deadline_h + 1e-9,
        run_usd=run_usd,
        usd_per_hour=per_hour,
        idle_usd=idle_usd,
        without_spot_hours=without_spot_hours,
        without_spot_usd=without_spot_run + idle_usd,
    )


@dataclass(frozen=True)
class Line:
    what: str
    usd: float
    note: str


def sensor_line(results: dict[str, Any], s3_prices: dict[str, float], days: int) -> Line | None:
    """The new_uploads sensor's LISTs over `days`, at its measured requests per tick."""
    ticks = results.get("scale_sensor_requests_per_tick")
    if not ticks:
        return None
    most = max(ticks, key=lambda row: row["objects"])
    per_year = days * 24 * 3600 / SENSOR_INTERVAL_S * most["requests"]
    usd = per_year * s3_prices["tier1_per_1000"] / 1000
    note = (
        f"{most['requests']} LISTs per tick at {most['objects']:,} objects (measured), a tick "
        f"every {SENSOR_INTERVAL_S} s: {per_year:,.0f} LISTs"
    )
    return Line("S3 requests: new_uploads sensor", usd, note)


def refit_line(
    results: dict[str, Any],
    images: int,
    refits: int,
    prices: dict[str, Any],
    layout: FleetLayout,
) -> tuple[Line | None, list[str]]:
    """`refits` PCA refits spread over the year, each followed by reducing every row so far,
    on the primary and core nodes; what of it was not measured is named."""
    missing: list[str] = []
    if refits <= 0:
        return None, missing
    if "scale_refit_s" in results:
        refit_h = results["scale_refit_s"] / 3600  # from per-date statistics: rows don't count
        dates = results["scale_refit_dates"]
        how = f"refit {results['scale_refit_s']:.1f} s (measured over {dates} dates)"
    elif "pca_fit_s" in results:
        # The full-read fit's time grows with the rows: scaled from its measured point.
        per_row_h = results["pca_fit_s"] / results["pca_rows"] / 3600
        refit_h = per_row_h * images * (refits + 1) / (2 * refits)  # average rows at a refit
        how = f"refit scaled from {results['pca_fit_s']:.0f} s at {results['pca_rows']:,} rows"
        missing.append("scale_refit_s (the per-date refit): the full-read fit is scaled instead")
    else:
        return None, ["the PCA refit's seconds"]
    # Reducing every row after each refit: on average half the year's rows, times `refits`.
    reduce_h = 0.0
    rate = results.get("scale_reduced_rows_per_s")
    core_vcpus = layout.core_units * vcpus_of(layout.core_types[0])
    if rate:
        per_vcpu = rate / results.get("scale_cores", bench_cores(results))
        reduce_h = images * (refits + 1) / (2 * refits) / per_vcpu / core_vcpus / 3600
        how += f", reduce {per_vcpu:,.0f} rows/s per vCPU on {core_vcpus} core vCPUs"
    else:
        missing.append("scale_reduced_rows_per_s: the reduce after each refit is left out")
    hours = refits * (refit_h + reduce_h)
    usd = hours * minimum_usd_per_hour(prices, layout)
    return Line(
        "PCA refits and reduce", usd, f"{refits} refits, {hours:.2f} h in all; {how}"
    ), missing


def statistics_line(results: dict[str, Any], images: int, daily: Estimate) -> Line | None:
    """The per-date PCA statistics, computed with each date's features: their measured
    vCPU-seconds per row, billed at the feature runs' cluster price per vCPU-hour."""
    if "scale_statistics_s" not in results:
        return None
    cores = results.get("scale_cores", bench_cores(results))
    vcpu_s_per_row = results["scale_statistics_s"] * cores / results["scale_refit_rows"]
    vcpu_hours = images * vcpu_s_per_row / 3600
    usd = vcpu_hours * daily.usd_per_hour / daily.vcpus
    note = f"{vcpu_s_per_row * 1000:.2f} vCPU-ms per row (measured): {vcpu_hours:.1f} vCPU-hours"
    return Line("EMR: per-date PCA statistics", usd, note)


@dataclass(frozen=True)
class Plan:
    images: int
    days: int
    region: str
    deadline_h: float
    refits: int
    phone_photos: bool


def year_lines(
    plan: Plan, results: dict[str, Any], table: dict[str, Any], layout: FleetLayout
) -> tuple[list[Line], Estimate, list[str]]:
    """The cost of `plan.days` daily runs of images/days images, by part."""
    prices = table["regions"][plan.region]
    s3_prices = table["s3_requests"][plan.region]
    prefix = workload_prefix(plan.phone_photos)
    ips = results[f"{prefix}pipeline_ips"] / bench_cores(results)
    images_key = f"{prefix}images" if plan.phone_photos else "images"
    per_image = {
        k: n / results[images_key] for k, n in results[f"{prefix}requests_by_type"].items()
    }
    daily = estimate(math.ceil(plan.images / plan.days), plan.deadline_h, ips, prices, layout)
    startup_usd = STARTUP_HOURS * daily.usd_per_hour
    lines = [
        Line(
            "EMR: feature runs",
            plan.days * (daily.run_usd - startup_usd),
            f"{plan.days} runs of {daily.hours:.2f} h, {daily.vcpus} vCPUs; {ips:.1f} images/s "
            "per vCPU (measured)",
        ),
        Line("EMR: cluster start-up", plan.days * startup_usd, f"{STARTUP_HOURS} h a run"),
        Line(
            "EMR: idle before auto-termination",
            plan.days * daily.idle_usd,
            f"{Capacity.of(layout).idle_hours:.2f} h a run, primary and core nodes",
        ),
        Line(
            "S3 requests: feature step",
            s3_request_usd(plan.images, per_image, s3_prices),
            "per image by type, measured: "
            + ", ".join(f"{k} {n:.3f}" for k, n in sorted(per_image.items())),
        ),
    ]
    missing = []
    sensor = sensor_line(results, s3_prices, plan.days)
    if sensor:
        lines.append(sensor)
    else:
        missing.append("scale_sensor_requests_per_tick: the sensor's LISTs are left out")
    refit, refit_missing = refit_line(results, plan.images, plan.refits, prices, layout)
    lines += [refit] if refit else []
    statistics = statistics_line(results, plan.images, daily)
    lines += [statistics] if statistics else []
    return lines, daily, missing + refit_missing


def print_report(
    plan: Plan, lines: list[Line], daily: Estimate, missing: list[str], layout: FleetLayout
) -> None:
    total = sum(line.usd for line in lines)
    per_run = math.ceil(plan.images / plan.days)
    print(
        f"{plan.images:,} images in {plan.region}: {plan.days} run(s) of {per_run:,}, "
        f"deadline {plan.deadline_h:g} h each"
    )
    capacity = Capacity.of(layout)
    print(
        f"  cluster      1 x {layout.primary_type} primary, {layout.core_units} x "
        f"{layout.core_types[0]} core, {daily.task_units} x {layout.task_types[0]} task "
        f"({daily.task_on_demand_units} On-Demand, {daily.task_spot_units} Spot)"
    )
    print(
        f"  limits       {capacity.max_units} units at most, {capacity.max_on_demand_units} "
        f"On-Demand (On-Demand first), idle {capacity.idle_hours:g} h before termination"
    )
    verdict = "meets" if daily.meets_deadline else "MISSES (at the largest cluster allowed)"
    print(f"  a run        {daily.hours:.2f} h, {daily.vcpus} vCPUs: {verdict} the deadline")
    print(
        f"  no Spot      {daily.without_spot_hours:.2f} h a run, "
        f"{plan.days * daily.without_spot_usd:.2f} USD of EMR in all"
    )
    for line in sorted(lines, key=lambda item: -item.usd):
        share = line.usd / total if total else 0.0
        print(f"  {line.what:36} {line.usd:12.2f} USD {share:6.1%}  {line.note}")
    print(f"  {'total':36} {total:12.2f} USD")
    if lines:
        top = max(lines, key=lambda item: item.usd)
        print(f"dominant: {top.what} ({top.usd / total:.0%} of the total)")
    for item in missing:
        print(f"  not measured: {item} (run `make bench`)")


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.aws.cost", __doc__)
    parser.add_argument("--images", type=int, required=True, help="images in all")
    parser.add_argument("--days", type=int, default=365, help="daily runs they arrive in")
    parser.add_argument("--region", default=os.environ.get("FRUITS_REGION", "eu-west-3"))
    parser.add_argument("--deadline", default="2h", help="of each run")
    parser.add_argument("--refits", type=int, default=12, help="PCA refits over the period")
    parser.add_argument("--bench-results", type=Path, default=BENCH_RESULTS)
    parser.add_argument(
        "--phone-photos", action="store_true", help="the workload is phone photos (1280x960)"
    )
    args = parser.parse_args(argv)
    require_eu_region(args.region)
    table = region_prices(args.region)
    if args.days < 1:
        raise ConfigError("--days must be at least 1")
    results = json.loads(args.bench_results.read_text())
    plan = Plan(
        args.images, args.days, args.region, parse_hours(args.deadline), args.refits,
        args.phone_photos,
    )  # fmt: skip
    layout = FleetLayout()
    lines, daily, missing = year_lines(plan, results, table, layout)
    print_report(plan, lines, daily, missing, layout)
    workload = "phone photos (1280x960)" if args.phone_photos else "100x100 images"
    print("assumptions:")
    print(
        f"  figures for {workload} from {args.bench_results.name} ({results['date']}), "
        "throughput scaled linearly with vCPUs"
    )
    print(
        "  task units: the first task type of the fleet; idle time and refits billed at the "
        "primary and core nodes (managed scaling's minimum)"
    )
    print(f"  prices of {table['taken']} ({PRICES_FILE.name})")
    unverified = table.get("unverified", {}).get(args.region)
    if unverified:
        print(f"  UNVERIFIED prices for {args.region}: {unverified}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
