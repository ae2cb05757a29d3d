"""A smoke run of the scale benchmark (bench.scale): the same code paths as `make bench`, tiny
sizes; every figure is reported, the report renders it and the cost model prices from it. Not
timed: no assertion on a speed."""

import json
import os
import subprocess
import sys

import pytest

from bench.report import render
from bench.scale import merge
from bootstrap.aws.cost import main as cost

pytestmark = pytest.mark.slow


def test_the_scale_smoke_run_reports_every_figure(
    tmp_path, repo_root, test_env, local_s3, local_catalog, fresh_layout, capsys
) -> None:
    output = tmp_path / "results.json"
    earlier = json.loads((repo_root / "bench" / "results.json").read_text())
    output.write_text(json.dumps(earlier | {"scale_refit_s": -1.0}))  # replaced, not kept
    env = {**os.environ, "FRUITS_NAMESPACE": fresh_layout.namespace}
    result = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--smoke", "--output", str(output)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(output.read_text())
    assert r["scale_smoke"] is True and r["images"] == earlier["images"]  # merged, not replaced

    ticks = r["scale_sensor_requests_per_tick"]
    assert [t["objects"] for t in ticks] == [30, 120]
    assert len({t["requests"] for t in ticks}) == 1 and ticks[0]["requests"] >= 2  # flat
    assert all(t["requested"] == [] for t in ticks)  # a steady tick: nothing new

    assert r["scale_refit_s"] > 0 and r["scale_refit_rows"] == 600
    # Its target's verdict joins bench.run's, and the report shows it.
    assert r["targets"]["scale_refit_s"] is (r["scale_refit_s"] <= 60)
    assert set(r["targets"]) > set(earlier["targets"]) - {"scale_refit_s"}
    assert r["scale_reduced_rows_per_s"] > 0
    assert r["scale_statistics_s"] > 0
    assert r["scale_files_dates"] == 6 and r["scale_files_per_date_max"] >= 1
    assert r["scale_backfill_dates"] == 6 and r["scale_backfill_runs"] >= 1
    assert r["scale_backfill_plan_s"] >= 0 and r["scale_backfill_launch_s"] > 0

    section = render(r)
    assert "`new_uploads` S3 requests per steady tick" in section
    assert "8. PCA refit at 1 million rows" in section
    assert "a 6-date backfill" in section and "PCA refit, 600 rows over 6 dates" in section

    assert cost(["--images", "10000000", "--bench-results", str(output)]) == 0
    priced = capsys.readouterr().out
    assert "S3 requests: new_uploads sensor" in priced and "dominant:" in priced
    assert "not measured: scale_" not in priced


def test_a_partial_run_replaces_every_earlier_scale_figure_and_verdict(tmp_path) -> None:
    """Parts merge as they complete: a run stopped after the sensor leaves no earlier refit
    figure, nor its verdict, beside its own (the report would show them as this run's)."""
    output = tmp_path / "results.json"
    verdicts = {"cpu_ratio": False, "scale_refit_s": True}
    output.write_text(json.dumps({"images": 1, "scale_refit_s": 30.0, "targets": verdicts}))
    merge(output, {"scale_smoke": False, "scale_sensor_requests_per_tick": []})
    assert json.loads(output.read_text()) == {
        "images": 1,
        "scale_smoke": False,
        "scale_sensor_requests_per_tick": [],
        "targets": {"cpu_ratio": False},
    }
    merge(output, {"scale_smoke": False, "scale_refit_s": 61.0})
    assert json.loads(output.read_text())["targets"] == {"cpu_ratio": False, "scale_refit_s": False}
