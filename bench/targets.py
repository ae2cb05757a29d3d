"""The targets of issue 15 that `make bench` measures, and where its results go: light, so that
the README's renderer and its test need none of the benchmark's imports."""

from spark.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results.json"

# (key, comparison, target, what it is)
TARGETS = [
    ("requests_per_image", "<=", 1.1, "1. S3 requests per image, feature step"),
    ("latency_30ms_ratio", ">=", 0.9, "2. throughput with 30 ms per S3 request / without"),
    ("cpu_ratio", "<=", 1.5, "3. pipeline CPU per image / decode + model alone"),
    ("speedup_vs_baseline", ">=", 3.0, "4. throughput / the common public pattern's"),
    ("worker_peak_rss_mb", "<=", 1536, "6. peak RSS of a Python worker, MB"),
    ("run_peak_rss_mb", "<=", 6144, "6. peak RSS of the whole run, MB"),
]

# The "before" of the fixed requests (S3 requests of a feature run besides one GET per image):
# the Parquet + pointer + lock design's figure in its last `make bench` (bench/results.json of
# that date); that code is gone, so the Iceberg tables' figure is compared with this record.
POINTER_DESIGN_FIXED_REQUESTS = 156
POINTER_DESIGN_BENCH_DATE = "2026-11-26"
