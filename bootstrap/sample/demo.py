"""The demo: local S3 server, sample images, then the whole asset graph through the Dagster CLI.

    python -m bootstrap.sample.demo          (what `make demo` runs after installing)

The sample dates are materialized in one run (`dagster asset materialize --partition-range`),
then a summary is read back from the Dagster instance, printed, and written as JSON to
.fruits/last_run.json. The local S3 server keeps running so that the outputs can be
inspected; `make stop` stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bootstrap import one_line_errors
from bootstrap.local.dagster_home import prepare_dagster_home
from bootstrap.local.local_s3 import STATE_DIR, from_settings
from bootstrap.sample.sample_data import DEFAULT_DATES, synthetic_files, upload
from fruits_assets.deployments import current_settings
from spark.settings import PROJECT_ROOT

SUMMARY_FILE = STATE_DIR / "last_run.json"
ASSETS = ("raw_images", "image_features", "pca_model", "reduced_features")


def materialize_command(dates: Sequence[str], select: str = "*") -> list[str]:
    """The dagster CLI call that materializes `select` for a range of dates, in one run."""
    dagster = Path(sys.executable).with_name("dagster")
    return [
        str(dagster), "asset", "materialize",
        "-m", "fruits_assets.definitions",
        "--select", select,
        "--partition-range", f"{min(dates)}...{max(dates)}",
    ]  # fmt: skip


def materialize(dates: Sequence[str], env: dict[str, str]) -> None:
    """All four assets for a range of dates, in one run, through the dagster CLI."""
    subprocess.run(materialize_command(dates), env=env, check=True, cwd=PROJECT_ROOT)


def _by_date(table: Any) -> dict[str, dict[str, Any]]:
    return {r.data["upload_date"]: r.data for r in table.records}


def summary_from_instance(dates: Sequence[str]) -> dict[str, Any]:
    """What the last materialization of each asset recorded (its metadata), as one document."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        meta = {}
        for asset in ASSETS:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            if event is None:
                raise RuntimeError(f"{asset} was never materialized")
            meta[asset] = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    images = _by_date(meta["raw_images"]["images_per_date"])
    features = _by_date(meta["image_features"]["per_date"])
    reduced = _by_date(meta["reduced_features"]["per_date"])
    pca = meta["pca_model"]
    return {
        "dates": {
            d: {
                "images": images[d]["images"],
                "features": features[d]["features"],
                "rejects": features[d]["rejects"],
                "reduced": reduced[d]["reduced"],
            }
            for d in dates
        },
        "rejects": meta["image_features"]["rejects"],
        "feature_shape": [sum(features[d]["features"] for d in dates), 1280],
        "weights": {
            "source": meta["image_features"]["weights_source"],
            "sha256": meta["image_features"]["weights_sha256"],
        },
        "pca": {
            "version": pca["version"],
            "rows": pca["rows_used"],
            "cumulative_explained_variance": {
                k.rsplit("_", 1)[-1]: v for k, v in pca.items() if k.startswith("cumulative_")
            },
        },
        "outputs": {
            "manifests": meta["raw_images"]["manifests"],
            "features": meta["image_features"]["features"],
            "rejects": meta["image_features"]["rejects_uri"],
            "pca_model": pca["model_uri"],
            "reduced": meta["reduced_features"]["reduced"],
        },
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
    weights = summary["weights"]
    print(f"features: {rows} x {dim} float32, weights {weights['source']}")
    print(f"  weights sha256 {weights['sha256']}")
    pca = summary["pca"]
    variance = ", ".join(f"{n}: {v:.3f}" for n, v in pca["cumulative_explained_variance"].items())
    print(f"PCA {pca['version']} fitted on {pca['rows']} rows")
    print(f"  cumulative explained variance at {variance} components")
    for name, uri in summary["outputs"].items():
        print(f"  {name:10} {uri}")
    print(f"summary written to {SUMMARY_FILE}")


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bootstrap.sample.demo", description=__doc__)
    parser.add_argument("--dates", default=",".join(DEFAULT_DATES))
    parser.add_argument("--per-date", type=int, default=60)
    parser.add_argument("--phone-per-date", type=int, default=2)
    args = parser.parse_args(argv)
    dates = sorted(d.strip() for d in args.dates.split(",") if d.strip())

    settings = current_settings()
    settings.require_partition_dates(dates)
    if settings.s3_endpoint:
        from_settings(settings).start()
    counts = upload(synthetic_files(dates, args.per_date, args.phone_per_date, seed=7), settings)
    print(f"sample: {sum(counts.values())} files over {len(counts)} upload dates")
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home())  # the Makefile's, overridable
    materialize(dates, dict(os.environ))
    summary = summary_from_instance(dates)
    SUMMARY_FILE.write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
