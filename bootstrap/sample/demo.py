"""The demo: local S3 server and Iceberg catalog, sample images, then the whole asset graph
through Dagster's CLI.

    python -m bootstrap.sample.demo          (what `make demo` runs after installing)

The sample dates are materialized in one run (`dg launch --assets '*' --partition-range A...B`),
then a summary is read back from the Dagster instance, printed, and written as JSON to
.fruits/last_run.json. The local S3 server and catalog keep running so that the outputs can
be inspected; `make stop` stops them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from bootstrap import cli
from bootstrap.local import local_catalog
from bootstrap.local.dagster_home import prepare_dagster_home
from bootstrap.local.local_s3 import STATE_DIR, from_settings
from bootstrap.sample.sample_data import DEFAULT_DATES, synthetic_files, upload
from fruits_assets import names
from fruits_assets.deployments import current_settings
from spark.settings import PROJECT_ROOT

SUMMARY_FILE = STATE_DIR / "last_run.json"


def launch_command(dates: Sequence[str], select: str = "*") -> list[str]:
    """The `dg launch` call that materializes `select` for a range of dates, in one run; run
    from the project root, whose pyproject.toml ([tool.dg]) names the definitions."""
    dg_cli = Path(sys.executable).with_name("dg")
    return [
        str(dg_cli), "launch",
        "--assets", select,
        "--partition-range", f"{min(dates)}...{max(dates)}",
    ]  # fmt: skip


def materialize(dates: Sequence[str], env: dict[str, str]) -> None:
    """Every asset for a range of dates, in one run, through `dg launch`."""
    subprocess.run(launch_command(dates), env=env, check=True, cwd=PROJECT_ROOT)


def asset_keys() -> list[dg.AssetKey]:
    """The assets of the definitions, upstream first."""
    # Imported when needed: loading the definitions loads the deployment's environment.
    from fruits_assets.definitions import defs

    return list(defs.resolve_asset_graph().toposorted_asset_keys)


def _by_date(table: Any) -> dict[str, dict[str, Any]]:
    return {r.data[names.UPLOAD_DATE]: r.data for r in table.records}


def summary_from_instance(dates: Sequence[str]) -> dict[str, Any]:
    """What the last materialization of each asset recorded (its metadata), as one document."""
    with dg.DagsterInstance.get() as instance:
        meta = {}
        for asset in asset_keys():
            event = instance.get_latest_materialization_event(asset)
            if event is None:
                raise RuntimeError(f"{asset.to_user_string()} was never materialized")
            meta[asset] = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    raw, features_meta = meta[names.RAW_IMAGES], meta[names.IMAGE_FEATURES]
    pca, reduced_meta = meta[names.PCA_MODEL], meta[names.REDUCED_FEATURES]
    probe = meta[names.FEATURE_QUALITY]
    images = _by_date(raw[names.IMAGES_PER_DATE])
    features = _by_date(features_meta[names.PER_DATE])
    reduced = _by_date(reduced_meta[names.PER_DATE])
    return {
        "dates": {
            d: {
                "images": images[d][names.N_IMAGES],
                "features": features[d][names.N_FEATURES],
                "rejects": features[d][names.N_REJECTS],
                "reduced": reduced[d][names.N_REDUCED],
            }
            for d in dates
        },
        "rejects": features_meta[names.REJECTS],
        "feature_shape": [sum(features[d][names.N_FEATURES] for d in dates), 1280],
        "weights": {
            "source": features_meta[names.WEIGHTS_SOURCE],
            "sha256": features_meta[names.WEIGHTS_SHA256],
        },
        "pca": {
            "version": pca[names.VERSION],
            "rows": pca[names.ROWS_USED],
            "cumulative_explained_variance": {
                k.removeprefix(names.CUMULATIVE_EXPLAINED_VARIANCE): v
                for k, v in pca.items()
                if k.startswith(names.CUMULATIVE_EXPLAINED_VARIANCE)
            },
        },
        # An inconclusive probe (too few held-out rows: the demo's) may have no accuracies.
        "probe": {
            "verdict": probe[names.PROBE_VERDICT],
            "why": probe.get(names.PROBE_INCONCLUSIVE),
            "full": probe.get(f"{names.ACCURACY}full"),
            "reduced": probe.get(f"{names.ACCURACY}reduced"),
            "ratio": probe.get(names.ACCURACY_RATIO),
            "ratio_interval": [
                probe.get(names.ACCURACY_RATIO_LOW),
                probe.get(names.ACCURACY_RATIO_HIGH),
            ],
            "k": probe[names.PCA_K],
            # Why a verdict is out of reach: held-out rows and the groups (objects) they form.
            "rows_test": probe.get(names.ROWS_TEST),
            "groups": {
                "train": probe.get(names.GROUPS_TRAIN),
                "test": probe.get(names.GROUPS_TEST),
            },
        },
        "outputs": {
            "manifests": raw[names.MANIFESTS_URI],
            # Iceberg tables (features with the rejects), at the snapshot each run published
            "features": f"{features_meta[names.TABLE]} @ {features_meta[names.SNAPSHOT_ID]}",
            "pca_model": pca[names.MODEL_URI],
            "reduced": f"{reduced_meta[names.TABLE]} @ {reduced_meta[names.SNAPSHOT_ID]}",
            "probe_png": probe[names.PROBE_PNG],
        },
    }


def probe_lines(probe: dict[str, Any]) -> list[str]:
    """The probe's verdict; its accuracies and interval when it has them (an inconclusive
    probe, the demo's, may not)."""
    lines = [f"linear probe at k={probe['k']}: {probe['verdict']}"]
    if probe["why"]:
        lines[0] += f" ({probe['why']})"
    if probe["full"] is not None and probe["reduced"] is not None:
        lines.append(
            f"  accuracy {probe['full']:.3f} on the 1280 features, {probe['reduced']:.3f} reduced"
        )
    low, high = probe["ratio_interval"]
    if probe["ratio"] is not None and low is not None and high is not None:
        lines.append(f"  ratio {probe['ratio']:.3f}, 95% interval [{low:.3f}, {high:.3f}]")
    lines.append("  (random weights and synthetic images: this says nothing of real photos)")
    return lines


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
    variance = ", ".join(f"{k}: {v:.3f}" for k, v in pca["cumulative_explained_variance"].items())
    print(f"PCA {pca['version']} fitted on {pca['rows']} rows")
    print(f"  cumulative explained variance at {variance} components")
    for line in probe_lines(summary["probe"]):
        print(line)
    for name, uri in summary["outputs"].items():
        print(f"  {name:10} {uri}")
    print(f"summary written to {SUMMARY_FILE}")


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.sample.demo", __doc__)
    parser.add_argument("--dates", default=",".join(DEFAULT_DATES))
    parser.add_argument("--per-date", type=int, default=60)
    parser.add_argument("--phone-per-date", type=int, default=2)
    args = parser.parse_args(argv)
    dates = sorted(d.strip() for d in args.dates.split(",") if d.strip())

    settings = current_settings()
    settings.require_partition_dates(dates)
    fresh_s3 = False
    if settings.s3_endpoint:
        s3_server = from_settings(settings)
        fresh_s3 = s3_server.pid() is None
        s3_server.start()
    if settings.catalog_type == "jdbc":
        catalog = local_catalog.from_uri(settings.catalog_uri)
        if fresh_s3:  # its tables named the objects of the S3 server that stopped
            catalog.stop()
        catalog.start()
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
