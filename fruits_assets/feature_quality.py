"""feature_quality: does the PCA keep what matters? A linear probe (spark.probe) trained on the
1280 features, on the current PCA version's reduced features and on projections at other k."""

import dagster as dg
from pyspark.sql import functions as F

from fruits_assets import names as n
from fruits_assets.assets import Results, StepLauncherParam, count_table, reduced_features
from fruits_assets.metadata import png_markdown
from fruits_assets.partitions import ONE_RUN_PER_BACKFILL
from fruits_assets.resources import FruitsConfig, SparkResource
from spark import probe
from spark.pca import latest_version, read_pca_metadata
from spark.pipeline import read_features, read_table
from spark.tables import REDUCED


def probe_metadata(result: probe.ProbeResult) -> dict[str, float | int]:
    """The numbers a user watches, as numeric metadata (plotted over time in the UI)."""
    numbers: dict[str, float | int] = {n.ACCURACY_RATIO: float(result.ratio)}
    for name, score in result.scores.items():
        numbers[f"{n.ACCURACY}{name}"] = float(score.accuracy)
        numbers[f"{n.MACRO_F1}{name}"] = float(score.macro_f1)
    k = result.current_k
    if k <= len(result.cumulative_variance):
        numbers[n.VARIANCE_AT_CURRENT_K] = float(
            result.cumulative_variance[k - 1]
        )
    numbers[n.ROWS_TRAIN] = sum(r["train"] for r in result.rows_per_label.values())
    numbers[n.ROWS_TEST] = sum(r["test"] for r in result.rows_per_label.values())
    return numbers


def keeps_accuracy(result: probe.ProbeResult, min_ratio: float) -> dg.AssetCheckResult:
    full, reduced = result.scores[probe.FULL].accuracy, result.scores[probe.REDUCED].accuracy
    return dg.AssetCheckResult(
        asset_key=n.PROBE_KEEPS_ACCURACY.asset_key,
        check_name=n.PROBE_KEEPS_ACCURACY.name,
        passed=result.ratio >= min_ratio,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"reduced features (k={result.current_k}) reach {result.ratio:.3f} of the full "
            f"features' accuracy ({reduced:.3f} / {full:.3f}); floor {min_ratio}"
        ),
        metadata={
            n.ACCURACY_RATIO: float(result.ratio),
            n.MIN_PROBE_RATIO: float(min_ratio),
            f"{n.ACCURACY}{probe.FULL}": float(full),
            f"{n.ACCURACY}{probe.REDUCED}": float(reduced),
        },
    )


def not_run(reason: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=n.PROBE_KEEPS_ACCURACY.asset_key,
        check_name=n.PROBE_KEEPS_ACCURACY.name,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"the probe did not run: {reason}",
    )


@dg.asset(
    key=n.FEATURE_QUALITY,
    group_name=n.GROUP,
    # Reads the published rows of every upload date: the reduced ones and their features.
    deps=[dg.AssetDep(reduced_features, partition_mapping=dg.AllPartitionMapping())],
    # Lets a run over a range of dates (make demo's) include it, as pca_model.
    backfill_policy=ONE_RUN_PER_BACKFILL,
    kinds={"spark"},
    check_specs=[
        dg.AssetCheckSpec(
            n.PROBE_KEEPS_ACCURACY.name,
            asset=n.PROBE_KEEPS_ACCURACY.asset_key,
            blocking=False,
            description="a linear probe on the reduced features reaches min_probe_ratio of its "
            "accuracy on the full features (a warning)",
        )
    ],
)
def feature_quality(
    context: dg.AssetExecutionContext,
    fruits: FruitsConfig,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """A linear probe on the labelled images: accuracy and macro-F1 on the full features, on
    the current PCA's reduced features and at other k, with a picture to choose k from."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    version = latest_version(layout, s3)
    if version is None:
        raise dg.Failure("no PCA model yet: materialize pca_model first")
    model = read_pca_metadata(layout, s3, version)
    session = spark.session_for(context, fruits)
    try:
        reduced = read_table(session, layout, REDUCED)
    except FileNotFoundError:
        raise dg.Failure("no reduced features yet: materialize reduced_features first") from None
    reduced = reduced.where(F.col("pca_version") == version)
    # The rows of the model's weights: those the current PCA version was fitted on.
    features = read_features(session, layout).where(
        F.col("weights_sha256") == model["weights_sha256"]
    )
    identity = {
        n.PCA_VERSION: version,
        n.PCA_K: int(model["k"]),
        n.WEIGHTS_SHA256: model["weights_sha256"],
    }
    try:
        result = probe.run_probe(features, reduced, model["k"])
    except ValueError as error:
        # Too few labelled rows is a finding about the data, not a broken run: the report says
        # so and its check warns, the run (make demo's, a backfill's) stays green.
        yield dg.MaterializeResult(metadata={**identity, n.PROBE_NOT_RUN: str(error)})
        yield not_run(str(error))
        return
    png = probe.probe_png(result)
    png_uri = probe.save_probe(s3, layout, version, result, png)
    yield dg.MaterializeResult(
        metadata={
            **probe_metadata(result),
            n.ROWS_PER_LABEL: count_table(result.rows_per_label, n.LABEL),
            n.PROBE_KS: dg.MetadataValue.json(result.ks),
            **identity,
            n.PROBE_PLOT: png_markdown(png, "probe accuracy and explained variance against k"),
            n.PROBE_PNG: dg.MetadataValue.path(png_uri),
        }
    )
    yield keeps_accuracy(result, settings.min_probe_ratio)
