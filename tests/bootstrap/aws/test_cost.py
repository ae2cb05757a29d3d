import json

import pytest

from bootstrap.aws.cost import (
    STARTUP_HOURS,
    estimate,
    main,
    measured_ips_per_vcpu,
    measured_requests_per_image,
    parse_hours,
    s3_request_usd,
)
from bootstrap.aws.emr_cluster import FleetLayout
from spark.settings import ConfigError

PRICES = {t: {"ec2": 1.0, "emr": 0.25, "spot": 0.5} for t in ("m6i.xlarge", "m6i.2xlarge")}
LAYOUT = FleetLayout(primary_type="m6i.xlarge", core_types=("m6i.2xlarge",), core_units=2,
                     task_types=("m6i.2xlarge",))  # fmt: skip


def test_the_arithmetic() -> None:
    # 2 core nodes = 16 vCPUs at 10 img/s each; 1,440,000 images = 40 vCPU-hours.
    result = estimate(
        1_440_000, deadline_h=1 + STARTUP_HOURS, ips_per_vcpu=10, prices=PRICES, layout=LAYOUT
    )
    assert result.task_nodes == 3  # 16 + 3 x 8 = 40 vCPUs finish 40 vCPU-hours in 1 h
    assert result.vcpus == 40
    assert result.hours == pytest.approx(1 + STARTUP_HOURS)
    per_hour_fixed = 1.25 + 2 * 1.25
    assert result.on_demand_usd == pytest.approx(result.hours * (per_hour_fixed + 3 * 1.25))
    assert result.spot_usd == pytest.approx(result.hours * (per_hour_fixed + 3 * 0.75))
    assert result.spot_usd < result.on_demand_usd


def test_small_jobs_need_no_task_nodes() -> None:
    result = estimate(1_000, 2.0, 10, PRICES, LAYOUT)
    assert result.task_nodes == 0 and result.vcpus == 16


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


def test_the_command(tmp_path, capsys) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    args = [
        "--images",
        "10000000",
        "--region",
        "eu-west-3",
        "--deadline",
        "2h",
        "--bench-results",
        str(results),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "On-Demand" in out
        and "Spot tasks" in out
        and "assumptions" in out
        and "25.0 images/s" in out
        and "S3 requests" in out
        and "GET 1.000" in out
    )
    # 10 million images in eu-west-3: 10M GETs at 0.00042 and 0.3M tier-1 at 0.0053 per 1,000.
    assert f"{10_000 * 0.00042 + 300 * 0.0053:10.2f} USD (feature step)" in out
    assert main([*args, "--phone-photos"]) == 0
    assert "10.0 images/s per vCPU" in capsys.readouterr().out
    assert main([*args[:2], "--region", "us-east-1"]) == 2
    assert "outside the EU" in capsys.readouterr().err
