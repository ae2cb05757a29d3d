"""The scale benchmark (issue 22): a year of uploads on synthetic feature rows, no images.

    python -m bench.scale [--smoke] [--output bench/results.json]

Measures, and merges into the results file under `scale_*` keys:
- the `new_uploads` sensor's S3 requests and seconds per steady tick at 10^3, 10^4 and 10^5
  objects over 365 dates (bench.sensor_scale; moto in this process: its seconds grow with the
  objects because moto scans every key to answer a listing, S3 does not; the requests are
  the figure that carries over);
- the PCA refit at >= 1 million random 1280-d rows over 365 dates: with spark.pca's per-date
  statistics when the library has them (the statistics' seconds apart: they are paid once per
  date, when its features are written), spark.pca.fit_pca on every row otherwise;
- reduced rows per second after that refit (PCAModel.transform into a no-op sink);
- data files per date of the features table after a 365-date write (the target file size);
- the seconds Dagster takes to plan a 365-date backfill of the ingest assets and to launch
  its runs (queued, not executed: no Spark runs for it), after its code location has loaded.
`make bench` runs it after bench.run; the smoke sizes show it works (tests/bench).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.sensor_scale import dates_ending
from bench.sensor_scale import measure as sensor_ticks
from bench.targets import RESULTS, SCALE_TARGETS, verdicts
from bootstrap import cli
from spark.layout import PARTITION_COLUMN, Layout
from spark.settings import Settings

FEATURE_DIM = 1280
LAST_DATE = "2027-10-31"  # the bench's year of dates ends there: no real partition needs it
BENCH_BUCKET = "fruits-bench-scale"


@dataclass(frozen=True)
class ScaleSizes:
    sensor_objects: tuple[int, ...] = (1_000, 10_000, 100_000)
    dates: int = 365
    refit_rows: int = 1_000_000
    k: int = 100
    files_rows_per_date: int = 40  # rows of the features table per date, for its files
    backfill_dates: int = 365


FULL = ScaleSizes()
SMOKE = ScaleSizes(
    sensor_objects=(30, 120), dates=6, refit_rows=600, k=4, files_rows_per_date=3, backfill_dates=6
)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


# --- the sensor --------------------------------------------------------------------------------
def sensor(sizes: ScaleSizes) -> list[dict[str, Any]]:
    """Steady ticks at each number of objects, against moto in this process."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(
            Bucket=BENCH_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        layout = Layout(BENCH_BUCKET, "scale")
        objects = list(sizes.sensor_objects)
        return sensor_ticks(s3, layout, objects, sizes.dates, LAST_DATE, put=moto_put())


def moto_put() -> Callable[[str, str, bytes], Any]:
    """Objects straight into moto's store: 10^5 PutObject calls through boto3 take minutes and
    are not what is measured (the sensor's requests are counted on its own client)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    return lambda bucket, key, body: backend.put_object(bucket, key, body)


# --- synthetic feature rows ------------------------------------------------------------------
def feature_rows(spark: Any, rows: int, dates: list[str], seed: int = 0) -> Any:
    """`rows` rows of the features table's shape, random 1280-d features, spread over `dates`;
    generated in the workers (no driver memory needed)."""
    from pyspark.sql import functions as F

    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            ids = batch["id"].to_numpy()
            rng = np.random.default_rng(seed + int(ids[0]))
            values = rng.standard_normal((len(ids), FEATURE_DIM)).astype(np.float32)
            yield pd.DataFrame({"id": ids, "features": list(values)})

    partitions = max(2, rows // 50_000)
    generated = spark.range(rows, numPartitions=partitions).mapInPandas(
        generate, "id long, features array<float>"
    )
    # Consecutive ids share a date, as a date's rows share its files in the table: a task then
    # sums a few dates' statistics, not all 365 (which a round-robin spread would make it do).
    date_of = F.element_at(
        F.array(*[F.lit(d) for d in dates]),
        (F.floor(F.col("id") * len(dates) / rows) + 1).cast("int"),
    )
    return generated.select(
        F.format_string("s3://bench/raw/%d.jpg", "id").alias("path"),
        date_of.alias(PARTITION_COLUMN),
        F.lit("apple").alias("label"),
        F.md5(F.col("id").cast("string")).alias("etag"),
        F.lit("2026-12-06T00:00:00+00:00").alias("last_modified"),
        F.lit(1000).cast("long").alias("size_bytes"),
        "features",
        F.lit("random").alias("weights_source"),
        F.lit("0" * 64).alias("weights_sha256"),
        F.lit(None).cast("string").alias("reject_reason"),
    )


# --- the refit and the reduce ----------------------------------------------------------------
def refit(
    spark: Any, features: Any, dates: list[str], k: int, layout: Layout
) -> tuple[Any, dict[str, Any]]:
    """The refit as the library does it: each date's statistics written to the statistics
    table (paid once per date, when its features are written), then read back and summed."""
    from pyspark.sql import functions as F

    from spark import pca, tables

    target = tables.statistics_table(layout)
    tables.ensure_statistics_table(spark, target)
    # The fingerprint of the date's data files, which the bench's rows have none of.
    statistics = pca.date_statistics(features).withColumn("features_files", F.lit("bench"))
    _, statistics_s = timed(lambda: tables.overwrite_dates(spark, target, statistics, dates))
    stored = tables.read(spark, target)
    model, refit_s = timed(lambda: pca.fit_pca_from_statistics(spark, stored, k))
    return model, {
        "scale_refit_method": "per-date statistics (spark.pca.fit_pca_from_statistics)",
        "scale_refit_s": refit_s,
        "scale_statistics_s": statistics_s,
    }


def reduce_rate(model: Any, features: Any, rows: int) -> float:
    """Reduced rows per second: the projection of every row into a sink that writes nothing."""
    from spark.pca import reduce_features

    reduced = reduce_features(model, features, "bench")
    _, seconds = timed(lambda: reduced.write.format("noop").mode("overwrite").save())
    return rows / seconds


def refit_figures(spark: Any, layout: Layout, sizes: ScaleSizes) -> dict[str, Any]:
    from pyspark import StorageLevel

    dates = dates_ending(LAST_DATE, sizes.dates)
    features = feature_rows(spark, sizes.refit_rows, dates).persist(StorageLevel.DISK_ONLY)
    try:
        _, generate_s = timed(features.count)
        model, figures = refit(spark, features, dates, sizes.k, layout)
        rate = reduce_rate(model, features, sizes.refit_rows)
    finally:
        features.unpersist()
    return figures | {
        "scale_refit_rows": sizes.refit_rows,
        "scale_refit_dates": sizes.dates,
        "scale_refit_k": sizes.k,
        "scale_rows_generated_s": generate_s,
        "scale_reduced_rows_per_s": rate,
    }


# --- files per date --------------------------------------------------------------------------
def files_per_date(spark: Any, settings: Settings, sizes: ScaleSizes) -> dict[str, Any]:
    """Write a year of feature rows to a features table of the bench's own namespace in one
    run (as a 365-date backfill does), then count its data files per date."""
    from spark import tables

    layout = Layout.of(settings)
    dates = dates_ending(LAST_DATE, sizes.dates)
    rows = feature_rows(spark, sizes.files_rows_per_date * sizes.dates, dates, seed=1)
    target = tables.table(layout, tables.FEATURES)
    staged = tables.stage(spark, target, rows, dates, target_file_mb=settings.target_file_mb)
    tables.publish(spark, staged, lambda kept: kept)
    counts = spark.sql(
        f"SELECT partition.{PARTITION_COLUMN} AS date, count(*) AS files "
        f"FROM {target.qualified}.files GROUP BY 1"
    ).collect()
    files = [r["files"] for r in counts]
    return {
        "scale_files_dates": len(files),
        "scale_files_rows_per_date": sizes.files_rows_per_date,
        "scale_files_per_date_max": max(files),
        "scale_files_per_date_mean": sum(files) / len(files),
        "scale_spark_cores": spark.sparkContext.defaultParallelism,
    }


# --- Dagster: plan and launch a backfill -----------------------------------------------------
DAGSTER_YAML = """run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
telemetry:
  enabled: false
"""


def backfill_figures(sizes: ScaleSizes) -> dict[str, Any]:
    """Plan (the backfill's partitions by asset) and launch (its runs created and queued) a
    backfill of the ingest assets over `backfill_dates` dates, as the daemon does; its runs
    stay queued (no run launcher picks them up here)."""
    import dagster as dg
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    from fruits_assets.names import IMAGE_FEATURES, RAW_IMAGES

    last = dt.datetime.fromisoformat(LAST_DATE).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    dates = dates_ending(LAST_DATE, sizes.backfill_dates)
    with tempfile.TemporaryDirectory(prefix="fruits-bench-dagster-") as home:
        Path(home, "dagster.yaml").write_text(DAGSTER_YAML)
        with dg.instance_for_test(temp_dir=home) as instance:
            target = ModuleTarget(
                module_name="fruits_assets.definitions",
                attribute="defs",
                working_directory=os.getcwd(),
                location_name="fruits",
            )
            started = time.perf_counter()
            with create_test_daemon_workspace_context(target, instance) as workspace:
                graph = workspace.create_request_context().asset_graph
                loaded_s = time.perf_counter() - started
                backfill_id = uuid.uuid4().hex[:8]
                backfill, plan_s = timed(
                    lambda: PartitionBackfill.from_asset_partitions(
                        backfill_id=backfill_id,
                        asset_graph=graph,
                        partition_names=dates,
                        asset_selection=[RAW_IMAGES, IMAGE_FEATURES],
                        backfill_timestamp=last.timestamp(),
                        tags={},
                        dynamic_partitions_store=instance,
                        all_partitions=False,
                        title=None,
                        description=None,
                        run_config=None,
                    )
                )
                instance.add_backfill(backfill)
                launch_started = time.perf_counter()
                logger = logging.getLogger("bench.scale.backfill")
                runs: list[Any] = []
                for _ in range(20):  # each iteration submits what it can
                    list(execute_backfill_iteration(workspace, logger))
                    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
                    status = instance.get_backfill(backfill_id).status
                    if runs or status != BulkActionStatus.REQUESTED:
                        break
                launch_s = time.perf_counter() - launch_started
    if not runs:
        raise RuntimeError(f"the {len(dates)}-date backfill launched no run ({status})")
    return {
        "scale_backfill_dates": len(dates),
        "scale_backfill_plan_s": plan_s,
        "scale_backfill_launch_s": launch_s,
        "scale_backfill_plan_and_launch_s": plan_s + launch_s,
        "scale_backfill_code_location_load_s": loaded_s,
        "scale_backfill_runs": len(runs),
    }


# --- the run ---------------------------------------------------------------------------------
def parts(settings: Settings, sizes: ScaleSizes) -> Iterator[dict[str, Any]]:
    """Each part's figures as it completes: a part that fails keeps those before it."""
    from bootstrap.aws.buckets import ensure_pipeline_bucket
    from bootstrap.local import local_catalog
    from bootstrap.local.local_s3 import from_settings
    from spark.session import build_session

    yield {
        "scale_date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scale_cores": os.cpu_count(),
    }
    print("scale: sensor ticks ...", flush=True)
    yield {"scale_sensor_requests_per_tick": sensor(sizes)}
    print("scale: Dagster backfill ...", flush=True)
    yield backfill_figures(sizes)
    server, catalog = from_settings(settings), local_catalog.from_uri(settings.catalog_uri)
    started = [s for s in (server, catalog) if not s.responds()]
    for each in started:
        each.start()
    try:
        ensure_pipeline_bucket(settings)
        spark = build_session(settings, "fruits-bench-scale")
        try:
            print("scale: refit and reduce ...", flush=True)
            yield refit_figures(spark, Layout.of(settings), sizes)
            print("scale: files per date ...", flush=True)
            yield files_per_date(spark, settings, sizes)
        finally:
            spark.stop()
    finally:
        for each in started:
            each.stop()


def merge(output: Path, results: dict[str, Any]) -> None:
    """Into the results file: this run's scale figures replace every earlier one (and their
    verdicts), the other benchmarks' figures stay."""
    merged = json.loads(output.read_text()) if output.exists() else {}
    merged = {k: v for k, v in merged.items() if not k.startswith("scale_")} | results
    earlier = {k: v for k, v in merged.get("targets", {}).items() if not k.startswith("scale_")}
    merged["targets"] = earlier | verdicts(merged, SCALE_TARGETS)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(merged, indent=2, default=str))


def print_results(results: dict[str, Any]) -> None:
    r = results
    print("\nscale benchmark")
    for tick in r["scale_sensor_requests_per_tick"]:
        print(
            f"  sensor, {tick['objects']:>7,} objects over {tick['dates']} dates: "
            f"{tick['requests']} requests, {tick['seconds']:.3f} s per tick"
        )
    print(
        f"  refit of {r['scale_refit_rows']:,} rows over {r['scale_refit_dates']} dates "
        f"({r['scale_refit_method']}): {r['scale_refit_s']:.1f} s"
    )
    met = verdicts(r, SCALE_TARGETS)
    for key, comparison, target, label in SCALE_TARGETS:
        verdict = "met" if met[key] else "NOT MET"
        print(f"  {label}: {r[key]:.1f}, target {comparison} {target}, {verdict}")
    print(f"  reduced rows per second after it: {r['scale_reduced_rows_per_s']:,.0f}")
    print(
        f"  files per date after a {r['scale_files_dates']}-date write: "
        f"{r['scale_files_per_date_max']} at most, {r['scale_files_per_date_mean']:.2f} on average"
    )
    print(
        f"  Dagster: a {r['scale_backfill_dates']}-date backfill planned in "
        f"{r['scale_backfill_plan_s']:.2f} s, launched ({r['scale_backfill_runs']} run) in "
        f"{r['scale_backfill_launch_s']:.2f} s"
    )


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bench.scale", __doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: shows it works (CI)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results file to merge into")
    args = parser.parse_args(argv)
    from fruits_assets.deployments import current_settings

    base = current_settings()
    settings = replace(
        base,
        prefix=f"bench-scale-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}",
        namespace=os.environ.get("FRUITS_NAMESPACE") or f"{base.namespace}_bench_scale",
    )
    results: dict[str, Any] = {"scale_smoke": args.smoke}
    for figures in parts(settings, SMOKE if args.smoke else FULL):
        results |= figures
        merge(args.output, results)
    print_results(results)
    print(f"\nmerged into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
