"""The demo: local S3 server, sample images, the whole pipeline on local Spark, a summary.

    python -m bootstrap.demo          (what `make demo` runs after installing)

The summary is printed and written as JSON to .fruits/last_run.json. The local S3 server
keeps running so the outputs can be inspected; `make stop` stops it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from bootstrap.local_s3 import STATE_DIR, from_settings
from bootstrap.sample_data import DEFAULT_DATES, synthetic_files, upload
from spark.layout import Layout
from spark.model import load_weights
from spark.pipeline import (
    FeatureRun,
    PcaRun,
    cumulative,
    extract_features,
    fit_and_save_pca,
    write_reduced,
)
from spark.session import build_session
from spark.settings import Settings
from spark.storage import s3_client

SUMMARY_FILE = STATE_DIR / "last_run.json"


def summarize(
    layout: Layout,
    dates: Sequence[str],
    features: FeatureRun,
    pca: PcaRun,
    reduced: dict[str, int],
    seconds: float,
) -> dict[str, Any]:
    return {
        "dates": {
            d: {
                "images": features.features_per_date[d] + features.rejects_per_date[d],
                "features": features.features_per_date[d],
                "rejects": features.rejects_per_date[d],
                "reduced": reduced[d],
            }
            for d in dates
        },
        "rejects": features.rejects,
        "feature_shape": [features.feature_rows, 1280],
        "weights": {"source": features.weights_source, "sha256": features.weights_sha256},
        "model_builds": features.model_builds,
        "pca": {
            "version": pca.version,
            "rows": pca.rows,
            "k": len(pca.explained_variance),
            "cumulative_explained_variance": cumulative(pca.explained_variance),
        },
        "outputs": {
            "features": layout.features_uri(),
            "rejects": layout.rejects_uri(),
            "pca_model": pca.uri,
            "reduced": layout.reduced_uri(),
        },
        "seconds": round(seconds, 1),
    }


def print_summary(summary: dict[str, Any]) -> None:
    print("\nFruits! pipeline run")
    columns = ("images", "features", "rejects", "reduced")
    print(f"{'upload date':12}" + "".join(f"{c:>10}" for c in columns))
    for date, row in summary["dates"].items():
        print(f"{date:12}" + "".join(f"{row[c]:10d}" for c in columns))
    for reject in summary["rejects"]:
        print(f"  rejected {reject['path']}: {reject['reason']}")
    rows, dim = summary["feature_shape"]
    print(
        f"features: {rows} x {dim} float32, weights {summary['weights']['source']} "
        f"(sha256 {summary['weights']['sha256'][:12]}...)"
    )
    pca = summary["pca"]
    variance = ", ".join(f"{n}: {v:.3f}" for n, v in pca["cumulative_explained_variance"].items())
    print(f"PCA {pca['version']}: k={pca['k']} on {pca['rows']} rows")
    print(f"  cumulative explained variance at {variance}")
    for name, uri in summary["outputs"].items():
        print(f"  {name:10} {uri}")
    print(f"done in {summary['seconds']} s; summary in {SUMMARY_FILE}")


def run(
    spark: SparkSession,
    settings: Settings,
    dates: Sequence[str],
    per_date: int,
    phone_per_date: int,
) -> dict[str, Any]:
    started = time.monotonic()
    counts = upload(synthetic_files(dates, per_date, phone_per_date, seed=7), settings)
    print(f"sample: {sum(counts.values())} images over {len(counts)} upload dates")
    layout = Layout(settings.bucket, settings.prefix)
    s3 = s3_client(settings)
    weights = load_weights(settings.weights, settings.weights_seed, s3)
    features = extract_features(spark, layout, dates, weights, settings.tf_intra_op_threads)
    pca = fit_and_save_pca(spark, layout, s3, settings.pca_k)
    reduced = write_reduced(spark, layout, dates, pca.version)
    return summarize(layout, dates, features, pca, reduced, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bootstrap.demo", description=__doc__)
    parser.add_argument("--dates", default=",".join(DEFAULT_DATES))
    parser.add_argument("--per-date", type=int, default=60)
    parser.add_argument("--phone-per-date", type=int, default=2)
    args = parser.parse_args(argv)
    dates = sorted(d.strip() for d in args.dates.split(",") if d.strip())
    settings = Settings.load()
    if settings.s3_endpoint:
        from_settings(settings).start()
    spark = build_session(settings, "fruits-demo")
    try:
        summary = run(spark, settings, dates, args.per_date, args.phone_per_date)
    finally:
        spark.stop()
    SUMMARY_FILE.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY_FILE.write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
