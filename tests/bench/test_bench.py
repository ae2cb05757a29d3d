"""A smoke run of the benchmark: the same code paths as `make bench`, tiny counts; it reports
every figure with sane values. Not timed: no assertion on a speed."""

import json
import os
import subprocess
import sys

import pytest

from bench.report import render
from bench.run import latency_figures
from bench.targets import TARGETS

pytestmark = pytest.mark.slow
# The keys issue 15 asks of bench/results.json, and the proxy's own CPU.
KEYS = {
    "images", "requests_per_image", "requests_by_type", "latency_30ms_ratio",
    "latency_100ms_ratio", "pipeline_cpu_ms_per_image", "decode_model_cpu_ms_per_image",
    "cpu_ratio", "s3_server_cpu_ms_per_image", "decode_model_ceiling_ips", "pipeline_ips",
    "ratio_to_ceiling", "baseline_ips", "speedup_vs_baseline", "worker_peak_rss_mb",
    "run_peak_rss_mb", "proxy_cpu_ms_per_image", "phone_images", "phone_pipeline_ips",
    "phone_requests_per_image", "phone_cpu_ratio", "phone_ratio_to_ceiling",
    "phone_decode_model_ceiling_ips", "decode_ms_phone", "decode_ms_phone_simplejpeg",
    "tf_threads_2_ips", "tf_threads_2_model_builds", "targets", "machine", "date",
    "decode_model_s3_ceiling_ips", "decode_model_s3_cpu_ms_per_image", "ratio_to_s3_ceiling",
    "phone_decode_model_s3_ceiling_ips", "phone_ratio_to_s3_ceiling",
}  # fmt: skip


def test_each_delay_is_judged_against_the_runs_without_right_before_and_after_it() -> None:
    undelayed = [{"ips": 100.0, "seconds": 100.0}, {"ips": 80.0, "seconds": 120.0},
                 {"ips": 60.0, "seconds": 140.0}]  # fmt: skip
    delayed = {30: {"ips": 81.0, "seconds": 130.0}, 100: {"ips": 35.0, "seconds": 150.0}}
    figures = latency_figures(delayed, undelayed)
    assert figures["latency_30ms_ratio"] == pytest.approx(81 / 90)
    assert figures["latency_30ms_added_s"] == pytest.approx(20.0)
    assert figures["latency_100ms_ratio"] == pytest.approx(35 / 70)
    assert figures["latency_100ms_added_s"] == pytest.approx(20.0)
    assert figures["latency_0ms_seconds"] == [100.0, 120.0, 140.0]


def test_the_benchmark_smoke_run_reports_every_figure(
    tmp_path, repo_root, test_env, local_s3, fresh_layout
) -> None:
    output = tmp_path / "results.json"
    # bench.scale's figures of an earlier run: --no-scale keeps them (and their verdict).
    scale = {"scale_date": "2026-12-06T16:46:00+00:00", "scale_refit_s": 36.7}
    output.write_text(json.dumps(scale | {"images": 1, "targets": {"scale_refit_s": True}}))
    # Its own tables: the tests' catalog is shared by the other tests of this process.
    env = {**os.environ, "FRUITS_NAMESPACE": fresh_layout.namespace}
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--no-e2e", "--no-scale", "--output",
         str(output)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(output.read_text())
    assert set(r) >= KEYS and r["smoke"] is True
    # Counted by the proxy where the requests happen: every image GET once (If-Match), the
    # rest (manifest, Parquet, publication) are JVM and driver requests.
    assert r["requests_by_type"]["GET"] >= r["images"]
    assert r["requests_per_image"] == sum(r["requests_by_type"].values()) / r["images"]
    assert r["phone_requests_by_type"]["GET"] >= r["phone_images"]
    # Counted in the workers: one model per worker and key, none built again after the
    # warm-up; two threads are another key, so a model of their own.
    assert r["python_workers"] >= 1 and r["model_builds_warmup"] <= r["python_workers"]
    assert r["model_builds_after_warmup"] == 0
    assert 1 <= r["tf_threads_2_model_builds"] <= r["python_workers"]
    for role in ("driver", "jvm", "python_workers", "proxy", "s3_server"):
        assert r["cpu_ms_per_image_by_role"][role] > 0, role
    assert r["pipeline_cpu_ms_per_image"] > r["decode_model_cpu_ms_per_image"] > 0
    positive = ("pipeline_ips", "baseline_ips", "decode_model_ceiling_ips", "latency_30ms_ratio",
                "latency_100ms_ratio", "phone_pipeline_ips", "worker_peak_rss_mb")  # fmt: skip
    assert all(r[k] > 0 for k in positive)
    assert r["worker_peak_rss_mb"] < r["run_peak_rss_mb"]
    # One run without delay before each delayed run and one after the last.
    assert len(r["latency_0ms_seconds"]) == len(r["latency_0ms_ips"]) == 3
    assert r["simplejpeg_max_abs_difference"] < 1e-3  # the trial decodes the same pixels
    assert set(r["targets"]) == {key for key, *_ in TARGETS} | {"scale_refit_s"}
    assert r["targets"]["scale_refit_s"] is True and r.items() >= scale.items()
    assert r["images"] != 1  # the rest is this run's
    # The ceiling read through the same S3 server: its GETs go through the proxy too.
    assert r["decode_model_s3_ceiling_ips"] > 0 and r["ratio_to_s3_ceiling"] > 0
    assert r["decode_model_s3_cpu_ms_per_image"] > 0
    # The floors: a bare GET, and Spark with no image (its Python workers return the vectors).
    assert r["floor_get_cpu_ms_per_image"] > 0 and r["floor_spark_cpu_ms_per_image"] > 0
    assert r["floor_spark_cpu_ms_by_role"]["python_workers"] > 0
    for prefix in ("", "phone_"):
        assert r[f"{prefix}floor_cpu_ratio"] > 1 and r[f"{prefix}floor_ratio_to_s3_ceiling"] > 0
    assert "the lowest CPU ratio they leave" in render(r)
    # Each workload's memory in a session of its own: its workers, within its whole run.
    for prefix in ("", "phone_"):
        worker, run = (r[f"{prefix}own_session_{k}_peak_rss_mb"] for k in ("worker", "run"))
        assert 0 < worker < run
    assert "NOT MET" in result.stdout or "met" in result.stdout
    section = render(r)
    assert all(label in section for *_, label in TARGETS)
