"""The targets that `make bench` measures (issues 15 and 22), and where its results go: light,
so that the README's renderer and its test need none of the benchmark's imports."""

from spark.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results.json"

# (key, comparison, target, what it is)
TARGETS = [
    ("requests_per_image", "<=", 1.1, "1. S3 requests per image, feature step"),
    ("latency_30ms_ratio", ">=", 0.9, "2. throughput with 30 ms per S3 request / without"),
    ("cpu_ratio", "<=", 1.15, "3. pipeline CPU per image / decode + model alone"),
    ("phone_cpu_ratio", "<=", 1.15, "3. the same, photos 1280x960"),
    ("speedup_vs_baseline", ">=", 3.0, "4. throughput / the common public pattern's"),
    ("worker_peak_rss_mb", "<=", 1536, "6. peak RSS of a Python worker, MB"),
    ("run_peak_rss_mb", "<=", 6144, "6. peak RSS of the whole run, MB"),
    ("ratio_to_s3_ceiling", ">=", 0.85, "7. throughput / decode + model on the same S3 server"),
    ("phone_ratio_to_s3_ceiling", ">=", 0.85, "7. the same, photos 1280x960"),
]
# bench.scale's, merged into the same results.
SCALE_TARGETS = [
    ("scale_refit_s", "<=", 60, "8. PCA refit at 1 million rows over 365 dates, s"),
]


def verdicts(results: dict, targets: list) -> dict[str, bool]:
    """Met or not, for each target whose figure `results` has."""
    return {
        key: bool(results[key] <= target if comparison == "<=" else results[key] >= target)
        for key, comparison, target, _ in targets
        if key in results
    }


# The "before" of the fixed requests (S3 requests of a feature run besides one GET per image):
# the Parquet + pointer + lock design's figure in its last `make bench` (bench/results.json of
# that date); that code is gone, so the Iceberg tables' figure is compared with this record.
POINTER_DESIGN_FIXED_REQUESTS = 156
POINTER_DESIGN_BENCH_DATE = "2026-11-26"
