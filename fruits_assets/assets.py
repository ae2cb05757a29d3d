"""The pipeline's four assets: raw_images -> image_features -> pca_model -> reduced_features
(feature_quality, a report on their output, has its own module).

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
from fruits_assets.observability import progress_to_run_log, spark_metadata
from fruits_assets.partitions import ONE_RUN_PER_BACKFILL, UPLOAD_DATES
from fruits_assets.resources import FruitsConfig, SparkResource
from spark import quality, tables
from spark.fetch import ImageSource
from spark.manifest import list_manifest, read_manifest, write_manifest
from spark.model import FEATURE_DIM, load_weights
from spark.pca import latest_version, publish_pca, read_pca_metadata
from spark.pipeline import (
    fit_pca_version,
    publish_staged,
    stage_features,
    stage_reduced,
)
from spark.storage import preflight

Results = Iterator[dg.MaterializeResult | dg.AssetCheckResult]
# The Spark assets take the `pyspark_step_launcher` resource: None locally (they run in
# process), Dagster's EMR step launcher in the `emr` deployment (they run as EMR steps).
StepLauncherParam = dg.ResourceParam[Any]


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
            yield md.check_result(check, outcome, staged)
        drop()
        raise dg.Failure(
            description=(
                f"{asset.to_user_string()}: blocking checks failed ({failed}); nothing was "
                f"published, readers keep the previous version, the staged one was dropped."
            )
        )
    yield publish()
    for check, outcome in outcomes.items():
        yield md.check_result(check, outcome)


def blocking(check: dg.AssetCheckKey, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        check.name, asset=check.asset_key, blocking=True, description=description
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
        yield md.check_result(names.STORAGE_IN_EU, in_eu)
        raise dg.Failure(f"GDPR: {in_eu.description}; refusing to write there")
    rows_per_date = {date: list_manifest(s3, layout, date) for date in context.partition_keys}
    for date, rows in rows_per_date.items():
        write_manifest(s3, layout, date, rows)
    yield dg.MaterializeResult(metadata=md.manifests(rows_per_date, layout.manifests_uri()))
    yield md.check_result(names.STORAGE_IN_EU, in_eu)


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
    pyspark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """1280 MobileNetV2 features per manifest entry; the others go to rejects/ with a reason."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    dates = context.partition_keys
    preflight(s3, settings)  # before any Spark work
    manifest = {d: read_manifest(s3, layout, d).num_rows for d in dates}
    weights = load_weights(settings.weights, settings.weights_seed, s3)  # wrong shapes fail here
    session = pyspark.session_for(context, fruits)
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
    expected, features, rejects = run.audit_inputs(session)
    outcomes = {
        names.EVERY_IMAGE_ACCOUNTED: quality.every_image_accounted(expected, features, rejects),
        names.VECTORS_FINITE: quality.vectors_are_finite(features, "features", FEATURE_DIM),
        names.REJECT_RATE: quality.reject_rate_below(
            run.features_per_date, run.rejects_per_date, settings.max_reject_rate
        ),
    }

    def publish() -> dg.MaterializeResult:
        published = publish_staged(session, layout, s3, run.staged)
        rate = outcomes[names.REJECT_RATE].details["rate"]
        spark_app = spark_metadata(session, settings.deployment)
        images = sum(manifest.values())
        return dg.MaterializeResult(
            data_version=dg.DataVersion(str(published[1])),
            metadata=md.features(run, published, rate, settings.engine, spark_app, images, seconds),
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
    pyspark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """PCA (k components) fitted on every published feature row of the current weights, saved
    under a new version; LATEST moves to it once its check passed."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    current = load_weights(settings.weights, settings.weights_seed, s3).sha256
    session = pyspark.session_for(context, fruits)
    run = fit_pca_version(
        session,
        layout,
        s3,
        k=settings.pca_k,
        weights_sha256=current,
        progress=progress_to_run_log(context),
        variance_target=settings.pca_variance_target,
    )
    outcomes = {
        names.EXPLAINED_VARIANCE: quality.explained_variance_ok(
            run.explained_variance, settings.min_explained_variance
        )
    }

    def publish() -> dg.MaterializeResult:
        publish_pca(layout, s3, run.version)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(run.version),
            metadata=md.pca(run, current, settings.pca_variance_target),
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
    pyspark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """The features of each date projected on the current PCA model's components."""
    layout, s3 = fruits.layout(), fruits.s3()
    version = latest_version(layout, s3)
    if version is None:
        raise dg.Failure("no PCA model yet: materialize pca_model first")
    dates = context.partition_keys
    session = pyspark.session_for(context, fruits)
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
        published = publish_staged(session, layout, s3, run.staged)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(str(published[1])), metadata=md.reduced(run, published, k)
        )

    yield from audit_then_publish(
        names.REDUCED_FEATURES,
        outcomes,
        {names.REDUCED_FEATURES.to_user_string(): run.staged.location()},
        publish,
        lambda: tables.discard(session, run.staged),
    )
