"""The four assets of group `fruits`: raw_images -> image_features -> pca_model -> reduced_features.

Write, audit, publish: each Spark asset stages its new version out of readers' sight (a staged
Iceberg snapshot, a PCA version not yet LATEST), runs its blocking checks on exactly that, and
publishes it (one cherry-pick onto the table's `main`, LATEST) only when they all pass. A failed
check publishes nothing, drops what the run staged, and records no materialization (so nothing
downstream runs, automation included).
"""

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg

from fruits_assets import metadata as md
from fruits_assets import names
from fruits_assets.observability import progress_to_run_log, spark_ui_metadata
from fruits_assets.partitions import ONE_RUN_PER_BACKFILL, UPLOAD_DATES
from fruits_assets.resources import FruitsConfig, SparkResource
from spark import quality, tables
from spark.fetch import ImageSource
from spark.images import manifest_images, tombstoned
from spark.manifest import list_manifest, read_manifest, write_manifest
from spark.model import FEATURE_DIM, load_weights
from spark.pca import latest_version, publish_pca, read_pca_metadata
from spark.pipeline import (
    cumulative,
    feature_rows,
    fit_pca_version,
    publish_staged,
    reject_rows,
    stage_features,
    stage_reduced,
)
from spark.storage import preflight

Results = Iterator[dg.MaterializeResult | dg.AssetCheckResult]
# The Spark assets take the `pyspark_step_launcher` resource: None locally (they run in
# process), Dagster's EMR step launcher in the `emr` deployment (they run as EMR steps).
StepLauncherParam = dg.ResourceParam[Any]


def check_result(
    check: dg.AssetCheckKey, outcome: quality.Outcome, staged: Mapping[str, str] | None = None
) -> dg.AssetCheckResult:
    extra = {names.STAGED_AT: dg.MetadataValue.json(dict(staged))} if staged else {}
    return dg.AssetCheckResult(
        asset_key=check.asset_key,
        check_name=check.name,
        passed=outcome.passed,
        description=outcome.description,
        metadata={
            names.DETAILS: dg.MetadataValue.json(outcome.details),
            **numbers(outcome.details),
            **extra,
        },
    )


def numbers(details: Mapping[str, Any]) -> dict[str, float | int]:
    """A check's numeric details as entries of their own: Dagster plots those over time."""
    return {
        k: v for k, v in details.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def audit_then_publish(
    asset: dg.AssetKey,
    outcomes: Mapping[dg.AssetCheckKey, quality.Outcome],
    staged: Mapping[str, str],
    publish: Callable[[], dg.MaterializeResult],
    drop: Callable[[], None],
) -> Results:
    """Publish only when every blocking check passed on the staged version; else report the
    checks, with what they read, drop the staged version and fail without a materialization."""
    failed = ", ".join(sorted(c.name for c, outcome in outcomes.items() if not outcome.passed))
    if failed:
        for check, outcome in outcomes.items():
            yield check_result(check, outcome, staged)
        drop()
        raise dg.Failure(
            description=(
                f"{asset.to_user_string()}: blocking checks failed ({failed}); nothing was "
                f"published, readers keep the previous version, the staged one was dropped."
            )
        )
    yield publish()
    for check, outcome in outcomes.items():
        yield check_result(check, outcome)


def published_table(staged: tables.Staged, snapshot_id: int) -> dict[str, Any]:
    """Lineage of a table's materialization: which table, which snapshot of its `main`."""
    return {
        names.TABLE: staged.table.qualified,
        names.SNAPSHOT_ID: dg.MetadataValue.int(snapshot_id),
        names.TABLE_LOCATION: dg.MetadataValue.path(staged.table.location),
    }


def blocking(check: dg.AssetCheckKey, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        check.name, asset=check.asset_key, blocking=True, description=description
    )


def count_table(
    counts: dict[str, dict[str, int]], key: str = names.UPLOAD_DATE
) -> dg.MetadataValue:
    """A table of counts, one row per key (upload date, label...)."""
    columns = sorted({c for row in counts.values() for c in row})
    return dg.MetadataValue.table(
        records=[dg.TableRecord({key: k, **row}) for k, row in sorted(counts.items())],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(key, "string")] + [dg.TableColumn(c, "int") for c in columns]
        ),
    )


@dg.asset(
    key=names.RAW_IMAGES,
    group_name=names.GROUP,
    kinds={"s3", "parquet"},
    partitions_def=UPLOAD_DATES,
    backfill_policy=ONE_RUN_PER_BACKFILL,
    metadata={names.COLUMN_SCHEMA: md.MANIFEST_SCHEMA},
    check_specs=[blocking(names.STORAGE_IN_EU, "every bucket the pipeline uses is in the EU")],
)
def raw_images(context: dg.AssetExecutionContext, fruits: FruitsConfig) -> Results:
    """The manifest of each upload date: every file under raw/upload_date=D/, listed from S3."""
    s3, layout = fruits.s3(), fruits.layout()
    preflight(s3, fruits.settings())
    in_eu = quality.bucket_in_eu(s3, layout.bucket)
    if not in_eu.passed:  # nothing is written outside the EU, not even a manifest
        yield check_result(names.STORAGE_IN_EU, in_eu)
        raise dg.Failure(f"GDPR: {in_eu.description}; refusing to write there")
    labels: dict[str, int] = {}
    per_date: dict[str, dict[str, int]] = {}
    total_bytes = 0
    for date in context.partition_keys:
        rows = list_manifest(s3, layout, date)
        write_manifest(s3, layout, date, rows)
        per_date[date] = {names.N_IMAGES: len(rows)}
        for row in rows:
            labels[row["label"]] = labels.get(row["label"], 0) + 1
            total_bytes += row["size_bytes"]
    yield dg.MaterializeResult(
        metadata={
            names.ROW_COUNT: sum(r[names.N_IMAGES] for r in per_date.values()),
            names.IMAGES_PER_DATE: count_table(per_date),
            names.IMAGES_PER_LABEL: count_table(
                {k: {names.N_IMAGES: v} for k, v in labels.items()}, names.LABEL
            ),
            names.TOTAL_BYTES: total_bytes,
            names.MANIFESTS_URI: dg.MetadataValue.path(layout.manifests_uri()),
        }
    )
    yield check_result(names.STORAGE_IN_EU, in_eu)


@dg.asset(
    key=names.IMAGE_FEATURES,
    group_name=names.GROUP,
    kinds={"spark", "s3", "parquet"},
    partitions_def=UPLOAD_DATES,
    backfill_policy=ONE_RUN_PER_BACKFILL,
    deps=[raw_images],
    metadata={names.COLUMN_SCHEMA: md.FEATURES_SCHEMA},
    check_specs=[
        blocking(
            names.EVERY_IMAGE_ACCOUNTED,
            "the paths of feature rows + rejects are exactly the manifest's, each once",
        ),
        blocking(names.VECTORS_FINITE, f"every vector has {FEATURE_DIM} finite values"),
        blocking(names.REJECT_RATE, "the share of rejected files is under the limit"),
    ],
)
def image_features(
    context: dg.AssetExecutionContext,
    fruits: FruitsConfig,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """1280 MobileNetV2 features per manifest entry; the others go to rejects/ with a reason."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    dates = context.partition_keys
    preflight(s3, settings)  # before any Spark work
    manifest = {d: read_manifest(s3, layout, d).num_rows for d in dates}
    weights = load_weights(settings.weights, settings.weights_seed, s3)  # wrong shapes fail here
    session = spark.session_for(context, fruits)
    started = time.monotonic()
    run = stage_features(
        session,
        layout,
        s3,
        dates,
        weights,
        source=ImageSource.of(settings),
        tf_threads=settings.tf_intra_op_threads,
        engine=settings.engine,
        progress=progress_to_run_log(context),
        expected=manifest,
        target_file_mb=settings.target_file_mb,
    )
    seconds = time.monotonic() - started
    images = sum(manifest.values())
    staged_rows = tables.read_staged(session, run.staged)
    features, rejects = feature_rows(staged_rows), reject_rows(staged_rows)
    expected = manifest_images(session, layout, dates, tombstoned(s3, layout, dates))
    outcomes = {
        names.EVERY_IMAGE_ACCOUNTED: quality.every_image_accounted(expected, features, rejects),
        names.VECTORS_FINITE: quality.vectors_are_finite(features, "features", FEATURE_DIM),
        names.REJECT_RATE: quality.reject_rate_below(
            run.features_per_date, run.rejects_per_date, settings.max_reject_rate
        ),
    }

    def publish() -> dg.MaterializeResult:
        staged, snapshot_id = publish_staged(session, layout, s3, run.staged)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(str(snapshot_id)),
            metadata={
                names.ROW_COUNT: run.feature_rows,
                names.COLUMN_LINEAGE: md.FEATURES_LINEAGE,
                names.REJECT_COUNT: sum(run.rejects_per_date.values()),
                names.REJECT_RATE_VALUE: outcomes[names.REJECT_RATE].details["rate"],
                names.PER_DATE: count_table(
                    {
                        d: {
                            names.N_FEATURES: run.features_per_date[d],
                            names.N_REJECTS: run.rejects_per_date[d],
                        }
                        for d in dates
                    }
                ),
                names.REJECTS: dg.MetadataValue.json(run.rejects),
                names.WEIGHTS_SOURCE: run.weights_source,
                names.WEIGHTS_SHA256: run.weights_sha256,
                names.INFERENCE_ENGINE: settings.engine,
                names.MODEL_BUILDS: run.model_builds,
                names.WORKER_PEAK_RSS_MB: run.worker_peak_rss_mb,
                names.SPARK_APPLICATION_ID: session.sparkContext.applicationId,
                **spark_ui_metadata(session, settings.deployment),
                names.DURATION_S: round(seconds, 2),
                names.IMAGES_PER_S: round(images / seconds, 2) if seconds else 0.0,
                **published_table(staged, snapshot_id),
            },
        )

    yield from audit_then_publish(
        names.IMAGE_FEATURES,
        outcomes,
        {names.IMAGE_FEATURES.to_user_string(): run.staged.location()},
        publish,
        lambda: tables.discard(session, run.staged),
    )


@dg.asset(
    key=names.PCA_MODEL,
    group_name=names.GROUP,
    kinds={"spark", "s3"},
    deps=[dg.AssetDep(image_features, partition_mapping=dg.AllPartitionMapping())],
    # Lets one run (and one CLI call) cover a range of dates and the model fitted on them.
    backfill_policy=ONE_RUN_PER_BACKFILL,
    check_specs=[
        blocking(names.EXPLAINED_VARIANCE, "enough variance kept, components in decreasing order")
    ],
)
def pca_model(
    context: dg.AssetExecutionContext,
    fruits: FruitsConfig,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """PCA (k components) fitted on every published feature row of the current weights, saved
    under a new version; LATEST moves to it once its check passed."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    current = load_weights(settings.weights, settings.weights_seed, s3).sha256
    session = spark.session_for(context, fruits)
    run = fit_pca_version(
        session,
        layout,
        s3,
        k=settings.pca_k,
        weights_sha256=current,
        progress=progress_to_run_log(context),
        variance_target=settings.pca_variance_target,
    )
    at = cumulative(run.explained_variance)
    outcomes = {
        names.EXPLAINED_VARIANCE: quality.explained_variance_ok(
            run.explained_variance, settings.min_explained_variance
        )
    }

    def publish() -> dg.MaterializeResult:
        publish_pca(layout, s3, run.version)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(run.version),
            metadata={
                names.VERSION: run.version,
                names.MODEL_URI: dg.MetadataValue.path(run.uri),
                names.ROWS_USED: run.rows,
                names.WEIGHTS_SHA256: current,
                names.ROWS_PER_DATE: count_table(
                    {d: {names.N_ROWS: rows} for d, rows in run.rows_per_date.items()}
                ),
                names.FEATURES_SNAPSHOT: dg.MetadataValue.int(run.features_snapshot or 0),
                **{f"{names.CUMULATIVE_EXPLAINED_VARIANCE}{k}": v for k, v in at.items()},
                names.PCA_K: len(run.explained_variance),
                names.EXPLAINED_VARIANCE_AT_K: float(sum(run.explained_variance)),
                **(
                    {names.VARIANCE_TARGET: target}
                    if (target := settings.pca_variance_target)
                    else {}
                ),
                names.EXPLAINED_VARIANCE_PLOT: md.png_markdown(
                    md.explained_variance_png(run.explained_variance), "explained variance"
                ),
            },
        )

    yield from audit_then_publish(
        names.PCA_MODEL,
        outcomes,
        {names.PCA_MODEL.to_user_string(): run.uri},
        publish,
        lambda: None,  # an unpublished version is never read; its folder says which it is
    )


@dg.asset(
    key=names.REDUCED_FEATURES,
    group_name=names.GROUP,
    kinds={"spark", "s3", "parquet"},
    partitions_def=UPLOAD_DATES,
    backfill_policy=ONE_RUN_PER_BACKFILL,
    deps=[image_features, pca_model],
    metadata={names.COLUMN_SCHEMA: md.REDUCED_SCHEMA},
    # New features for a date, or a new PCA model: recompute, for every date, not only today.
    # An upstream whose blocking check failed records no materialization (audit_then_publish),
    # so nothing here fires on it.
    automation_condition=dg.AutomationCondition.eager().without(
        dg.AutomationCondition.in_latest_time_window()
    ),
    check_specs=[blocking(names.MATCHES_FEATURES, "one row per feature row, current PCA version")],
)
def reduced_features(
    context: dg.AssetExecutionContext,
    fruits: FruitsConfig,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """The features of each date projected on the current PCA model's components."""
    layout, s3 = fruits.layout(), fruits.s3()
    version = latest_version(layout, s3)
    if version is None:
        raise dg.Failure("no PCA model yet: materialize pca_model first")
    dates = context.partition_keys
    session = spark.session_for(context, fruits)
    run = stage_reduced(
        session,
        layout,
        s3,
        dates,
        version,
        progress=progress_to_run_log(context),
        target_file_mb=fruits.settings().target_file_mb,
    )
    k = read_pca_metadata(layout, s3, version)["k"]
    outcomes = {
        names.MATCHES_FEATURES: quality.reduced_matches_features(
            run.features_per_date, tables.read_staged(session, run.staged), k, version
        )
    }

    def publish() -> dg.MaterializeResult:
        staged, snapshot_id = publish_staged(session, layout, s3, run.staged)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(str(snapshot_id)),
            metadata={
                names.ROW_COUNT: staged.rows,
                names.COLUMN_LINEAGE: md.REDUCED_LINEAGE,
                names.PER_DATE: count_table(
                    {d: {names.N_REDUCED: rows} for d, rows in staged.counts.items()}
                ),
                names.PCA_VERSION: version,
                names.PCA_K: k,
                names.FEATURES_SNAPSHOT: dg.MetadataValue.int(run.features_snapshot),
                names.SWITCHED_DATES: dg.MetadataValue.json(run.switched),
                **published_table(staged, snapshot_id),
            },
        )

    yield from audit_then_publish(
        names.REDUCED_FEATURES,
        outcomes,
        {names.REDUCED_FEATURES.to_user_string(): run.staged.location()},
        publish,
        lambda: tables.discard(session, run.staged),
    )
