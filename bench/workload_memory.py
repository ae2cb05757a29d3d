"""Peak memory of one workload, in a Spark session of its own (its own JVM and Python
workers), so that a workload's figure is its own need, not what an earlier one retained.

    python -m bench.workload_memory --date 2026-10-02 --images 2500

The date's manifest must be written (bench.run does). Prints one JSON line: the largest
Python worker's peak RSS and the whole run's (driver, JVM, workers), sampled while
extract_features runs, with the benchmark's weights ('random', seed 42).
"""

from __future__ import annotations

import json
import sys

from bench.measure import Roles, Window
from bootstrap import cli


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bench.workload_memory", __doc__)
    parser.add_argument("--date", required=True)
    parser.add_argument("--images", type=int, required=True, help="the manifest's count")
    args = parser.parse_args(argv)

    from fruits_assets.deployments import current_settings
    from spark.fetch import ImageSource
    from spark.layout import Layout
    from spark.model import load_weights
    from spark.pipeline import extract_features
    from spark.session import build_session
    from spark.storage import s3_client

    settings = current_settings()
    weights = load_weights("random", 42)
    spark = build_session(settings, "fruits-bench-memory")
    try:
        with Window(Roles()) as window:
            run = extract_features(
                spark, Layout.of(settings), s3_client(settings), [args.date], weights,
                source=ImageSource.of(settings), expected={args.date: args.images},
            )  # fmt: skip
    finally:
        spark.stop()
    if run.features_per_date.get(args.date) != args.images:
        raise SystemExit(f"{args.date}: {run.features_per_date} features, not {args.images}")
    figures = {
        "worker_peak_rss_mb": window.worker_peak_rss_mb,
        "run_peak_rss_mb": window.run_peak_rss_mb,
        "seconds": window.seconds,
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
