import json
import re

import pytest

from bootstrap.aws.cost import (
    SENSOR_INTERVAL_S,
    STARTUP_HOURS,
    Capacity,
    estimate,
    main,
    measured_ips_per_vcpu,
    measured_requests_per_image,
    parse_hours,
    s3_request_usd,
)
from bootstrap.aws.emr_cluster import (
    PRICES_FILE,
    SPOT_TIMEOUT_MIN,
    ClusterOptions,
    FleetLayout,
    cluster_request,
)
from spark.settings import EU_REGIONS, ConfigError

PRICES = {t: {"ec2": 1.0, "emr": 0.25, "spot": 0.5} for t in ("m6i.xlarge", "m6i.2xlarge")}
# 2 core units (16 vCPUs), 1 Spot task unit at start, at most 6 units, 3 of them On-Demand
# (the core units and room for the start's unit to come On-Demand).
LAYOUT = FleetLayout(primary_type="m6i.xlarge", core_types=("m6i.2xlarge",), core_units=2,
                     task_types=("m6i.2xlarge",), task_spot_units=1, max_units=6,
                     idle_timeout_s=1800)  # fmt: skip
MINIMUM = 1.25 + 2 * 1.25  # primary and core, per hour


def test_on_demand_first_up_to_the_limit_then_spot() -> None:
    # 1,440,000 images at 10 img/s per vCPU = 40 vCPU-hours; in 1 h: 3 task units of 8.
    result = estimate(
        1_440_000, deadline_h=1 + STARTUP_HOURS, ips_per_vcpu=10, prices=PRICES, layout=LAYOUT
    )
    # The start's Spot unit, then On-Demand up to the limit (3 - 2 core = 1), then Spot.
    assert (result.task_units, result.task_on_demand_units, result.task_spot_units) == (3, 1, 2)
    assert result.vcpus == 40 and result.meets_deadline
    assert result.hours == pytest.approx(1 + STARTUP_HOURS)
    assert result.run_usd == pytest.approx(result.hours * (MINIMUM + 1 * 1.25 + 2 * 0.75))
    assert result.idle_usd == pytest.approx(0.5 * MINIMUM)  # 30 min idle, primary and core
    assert result.usd == pytest.approx(result.run_usd + result.idle_usd)


def test_the_maximum_capacity_bounds_the_cluster_and_the_deadline_is_missed() -> None:
    # 100 vCPU-hours in 1 h would want 11 task units; at most 6 - 2 core = 4 are allowed.
    result = estimate(3_600_000, 1 + STARTUP_HOURS, 10, PRICES, LAYOUT)
    assert result.task_units == 4 and result.vcpus == 16 + 4 * 8
    assert (result.task_on_demand_units, result.task_spot_units) == (1, 3)
    assert result.hours == pytest.approx(STARTUP_HOURS + 100 / 48)
    assert not result.meets_deadline


def test_without_spot_the_cluster_stops_at_the_on_demand_limit() -> None:
    result = estimate(3_600_000, 1 + STARTUP_HOURS, 10, PRICES, LAYOUT)
    # The start's 1 unit comes On-Demand after the Spot timeout; no unit beyond the limit.
    waited = SPOT_TIMEOUT_MIN / 60
    assert result.without_spot_hours == pytest.approx(STARTUP_HOURS + waited + 100 / 24)
    run_usd = result.without_spot_hours * (MINIMUM + 1.25)
    assert result.without_spot_usd == pytest.approx(run_usd + result.idle_usd)


def test_small_jobs_keep_the_starting_layout() -> None:
    result = estimate(1_000, 2.0, 10, PRICES, LAYOUT)
    assert (result.task_units, result.task_spot_units, result.vcpus) == (1, 1, 24)


def test_the_capacity_is_the_policy_create_sets() -> None:
    layout = FleetLayout()
    limits = cluster_request_limits(layout)
    capacity = Capacity.of(layout)
    assert capacity.max_units == limits["MaximumCapacityUnits"]
    assert capacity.max_on_demand_units == limits["MaximumOnDemandCapacityUnits"]
    assert capacity.core_units == limits["MinimumCapacityUnits"]


def cluster_request_limits(layout: FleetLayout) -> dict[str, int]:
    from fruits_assets.deployments import current_settings

    env = {"FRUITS_REGION": "eu-west-3", "FRUITS_BUCKET": "b", "FRUITS_S3_ENDPOINT": "http://x"}
    settings = current_settings(env | {"FRUITS_STAGING_BUCKET": "staging"})
    request = cluster_request(settings, ClusterOptions(layout=layout), env)
    assert request["AutoTerminationPolicy"]["IdleTimeout"] == layout.idle_timeout_s
    return request["ManagedScalingPolicy"]["ComputeLimits"]


def test_every_eu_region_has_prices_and_the_unverified_say_so() -> None:
    table = json.loads(PRICES_FILE.read_text())
    layout = FleetLayout()
    types = {layout.primary_type, *layout.core_types, *layout.task_types}
    for region in EU_REGIONS:
        assert set(table["regions"][region]) >= types, region
        assert set(table["s3_requests"][region]) == {"tier1_per_1000", "tier2_per_1000"}
    assert set(table["unverified"]) <= EU_REGIONS
    assert all("not checked" in why for why in table["unverified"].values())


def test_the_sensor_interval_is_the_sensors() -> None:
    from fruits_assets.sensors import new_uploads

    assert new_uploads.minimum_interval_seconds == SENSOR_INTERVAL_S


def test_deadlines() -> None:
    assert parse_hours("2h") == 2 and parse_hours("90m") == 1.5
    with pytest.raises(ConfigError, match="2h or 90m"):
        parse_hours("soon")
    with pytest.raises(ConfigError, match="leaves no time"):
        estimate(1, STARTUP_HOURS, 10, PRICES, LAYOUT)


def test_throughput_comes_from_the_benchmark(tmp_path) -> None:
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps({"machine": "4 cores, x86_64", "pipeline_ips": 100.0, "date": "d"})
    )
    assert measured_ips_per_vcpu(results) == 25.0


def test_s3_requests_at_the_tier_prices() -> None:
    prices = {"tier1_per_1000": 5.0, "tier2_per_1000": 0.4}
    # 1,000 images, each 1 GET (tier 2) and 0.02 PUT (tier 1); DELETE is free.
    usd = s3_request_usd(1000, {"GET": 1.0, "PUT": 0.02, "DELETE": 0.01}, prices)
    assert usd == pytest.approx(1000 * 0.4 / 1000 + 20 * 5.0 / 1000)


RESULTS = {
    "machine": "2 cores", "date": "2026-11-25", "images": 1000, "phone_images": 100,
    "pipeline_ips": 50.0, "requests_by_type": {"GET": 1000, "LIST": 10, "PUT": 20},
    "phone_pipeline_ips": 20.0, "phone_requests_by_type": {"GET": 100, "LIST": 10},
}  # fmt: skip


def test_requests_and_rate_per_workload(tmp_path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    assert measured_requests_per_image(results) == {"GET": 1.0, "LIST": 0.01, "PUT": 0.02}
    assert measured_requests_per_image(results, phone_photos=True) == {"GET": 1.0, "LIST": 0.1}
    assert measured_ips_per_vcpu(results, phone_photos=True) == 10.0


def test_one_run(tmp_path, capsys) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    args = ["--images", "10000000", "--days", "1", "--region", "eu-west-3", "--deadline", "2h",
            "--refits", "0", "--bench-results", str(results)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "25.0 images/s per vCPU" in out and "GET 1.000" in out and "dominant:" in out
    # 10 million images in eu-west-3: 10M GETs at 0.00042 and 0.3M tier-1 at 0.0053 per 1,000.
    assert f"{10_000 * 0.00042 + 300 * 0.0053:12.2f} USD" in out
    assert "meets the deadline" in out  # 111 vCPU-hours in 1.8 h: 6 task units
    assert main(["--images", "50000000", *args[2:]]) == 0  # 555 vCPU-hours: 35 task units
    assert "MISSES" in capsys.readouterr().out  # no more than 20 - 2 core are allowed
    assert main([*args, "--phone-photos"]) == 0
    assert "10.0 images/s per vCPU" in capsys.readouterr().out
    assert main([*args[:4], "--region", "us-east-1"]) == 2
    assert "outside the EU" in capsys.readouterr().err


SCALE = RESULTS | {
    "scale_sensor_requests_per_tick": [
        {"objects": 1000, "requests": 4}, {"objects": 100_000, "requests": 4}],
    "scale_refit_s": 36.0, "scale_refit_dates": 365, "scale_reduced_rows_per_s": 20_000.0,
    "scale_cores": 2, "scale_statistics_s": 500.0, "scale_refit_rows": 1_000_000,
}  # fmt: skip


def test_a_year_from_the_measured_figures(tmp_path, capsys) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(SCALE))
    args = ["--images", "10000000", "--region", "eu-west-1", "--bench-results", str(results)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "365 run(s) of 27,398" in out and "not measured" not in out
    parts = [line for line in out.splitlines() if re.search(r"USD +[\d.]+%", line)]
    lines = {line.split("  ")[1].strip(): line for line in parts}
    # A tick a minute for a year, 4 LISTs each, at eu-west-1's 0.005 USD per 1,000.
    lists = 365 * 24 * 60 * 4
    assert f"{lists * 0.005 / 1000:12.2f} USD" in lines["S3 requests: new_uploads sensor"]
    assert f"{lists:,} LISTs" in out
    # 12 refits of 36 s, each followed by reducing half the year's rows on average.
    assert "12 refits" in lines["PCA refits and reduce"]
    # Statistics: 500 s x 2 cores over 1M rows = 1 vCPU-ms per row: 10M rows, 2.78 vCPU-hours.
    assert "1.00 vCPU-ms per row (measured): 2.8 vCPU-hours" in out
    dominant = out.split("dominant: ")[1].split(" (")[0]
    usd = {what: float(line.split("USD")[0].split()[-1]) for what, line in lines.items()}
    assert dominant == max(usd, key=usd.get)


def test_missing_scale_figures_are_named(tmp_path, capsys) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    assert main(["--images", "1000", "--bench-results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "not measured: scale_sensor_requests_per_tick" in out
    assert "not measured: the PCA refit's seconds" in out


def test_unverified_prices_are_said(tmp_path, capsys) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(SCALE))
    assert (
        main(["--images", "1000", "--region", "eu-south-2", "--bench-results", str(results)]) == 0
    )
    assert "UNVERIFIED prices for eu-south-2" in capsys.readouterr().out
