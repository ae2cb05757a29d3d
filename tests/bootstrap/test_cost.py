import json

import pytest

from bootstrap.cost import STARTUP_HOURS, estimate, main, measured_ips_per_vcpu, parse_hours
from bootstrap.emr_cluster import FleetLayout
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


def test_the_command(tmp_path, capsys) -> None:
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps({"machine": "2 cores", "pipeline_ips": 50.0, "date": "2026-11-25"})
    )
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
    )
    assert main([*args[:2], "--region", "us-east-1"]) == 2
    assert "outside the EU" in capsys.readouterr().err
