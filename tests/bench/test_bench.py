"""A smoke run of the benchmark: it works end to end and reports every figure. Not timed."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
KEYS = {
    "ceiling_ips", "pipeline_ips", "ratio_to_ceiling", "baseline_ips", "speedup_vs_baseline",
    "model_builds_per_worker", "weight_reads", "worker_peak_rss_mb", "pca_fit_s", "featurize_s",
    "machine", "date", "phone_pipeline_ips", "decode_share_phone", "run_peak_rss_mb",
}  # fmt: skip


def test_the_benchmark_smoke_run_reports_every_figure(
    tmp_path, repo_root, test_env, local_s3
) -> None:
    output = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--no-e2e", "--output", str(output)],
        cwd=repo_root, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    assert set(results) >= KEYS
    assert results["smoke"] is True
    assert results["weight_reads"] == 1  # once, on the driver
    assert results["worker_downloads"] == 0
    assert 0 < results["model_builds_per_worker"] <= 1
    assert all(results[k] > 0 for k in ("ceiling_ips", "pipeline_ips", "baseline_ips", "pca_fit_s"))
    assert "ratio to ceiling" in result.stdout
