"""feature_quality: does the PCA keep what matters? A linear probe (spark.probe) trained on the
raw features, on the current PCA version's reduced features and on projections at other k,
with a verdict only when the held-out rows support one.

It runs by itself after reduced_features is materialized (after every re-fit of the PCA, once
the dates are reduced with the new version, and after new dates), through its automation
condition and the sensor `automation_conditions`, running by default."""

import math

import dagster as dg
from pyspark.sql import functions as F

from fruits_assets import names
from fruits_assets.assets import Results, StepLauncherParam, reduced_features
from fruits_assets.metadata import count_table, png_markdown
from fruits_assets.partitions import ONE_RUN_PER_BACKFILL
from fruits_assets.resources import FruitsConfig, SparkResource
from spark import probe
from spark.pca import latest_version, load_pca, read_pca_metadata
from spark.pipeline import read_features, read_table
from spark.settings import Settings
from spark.tables import REDUCED

# After any date of reduced_features is materialized (a re-fit re-reduces every date in one
# run, a new date adds one), once none is in progress. Not `eager()`: its "no dependency
# missing" would wait for every daily partition since PARTITIONS_START, uploads or not.
AFTER_REDUCED_FEATURES = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after reduced_features is materialized")


def probe_options(settings: Settings) -> probe.ProbeOptions:
    return probe.ProbeOptions(
        min_test_rows=settings.probe_min_test_rows,
        min_test_rows_per_label=settings.probe_min_test_rows_per_label,
        group_pattern=settings.probe_group_pattern,
    )


def probe_metadata(result: probe.ProbeResult) -> dict[str, float | int]:
    """The numbers a user watches, as numeric metadata (plotted over time in the UI)."""
    numbers: dict[str, float | int] = {}
    if result.ratio is not None:
        numbers[names.ACCURACY_RATIO] = float(result.ratio)
    # An infinite bound (resamples where the full model got nothing right) is no number to plot.
    if result.ratio_interval is not None and all(map(math.isfinite, result.ratio_interval)):
        low, high = result.ratio_interval
        numbers[names.ACCURACY_RATIO_LOW], numbers[names.ACCURACY_RATIO_HIGH] = (
            float(low),
            float(high),
        )
    for name, score in result.scores.items():
        numbers[f"{names.ACCURACY}{name}"] = float(score.accuracy)
        numbers[f"{names.BALANCED_ACCURACY}{name}"] = float(score.balanced_accuracy)
        numbers[f"{names.MACRO_F1}{name}"] = float(score.macro_f1)
    numbers[names.MAJORITY_SHARE] = float(result.majority_share)
    numbers[names.VARIANCE_AT_CURRENT_K] = float(result.variance_at_current_k)
    numbers[names.ROWS_TRAIN] = sum(r["train"] for r in result.rows_per_label.values())
    numbers[names.ROWS_TEST] = result.test_rows
    numbers[names.GROUPS_TRAIN] = result.groups.get("train", 0)
    numbers[names.GROUPS_TEST] = result.groups.get("test", 0)
    if result.iterations:  # no fit runs when the held-out rows alone rule out a verdict
        numbers[names.PROBE_REG_PARAM] = float(result.reg_param)
    return numbers


def _check(passed: bool, description: str, metadata: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=names.PROBE_KEEPS_ACCURACY.asset_key,
        check_name=names.PROBE_KEEPS_ACCURACY.name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


def inconclusive(reason: str) -> dg.AssetCheckResult:
    """Not a failure and not the warning of a loss: the data cannot say either way."""
    return _check(
        True,
        f"inconclusive: {reason}",
        {names.PROBE_VERDICT: probe.INCONCLUSIVE, names.PROBE_INCONCLUSIVE: reason},
    )


def keeps_accuracy(result: probe.ProbeResult, min_ratio: float) -> dg.AssetCheckResult:
    """Warns only when the ratio's whole interval lies below min_ratio."""
    outcome = probe.verdict(result, min_ratio)
    if outcome.outcome == probe.INCONCLUSIVE:
        return inconclusive(outcome.reason)
    full, reduced = result.scores[probe.FULL].accuracy, result.scores[probe.REDUCED].accuracy
    limit = f"; fits at max_iter: {result.fits_at_limit}" if result.fits_at_limit else ""
    numbers = probe_metadata(result)
    return _check(
        outcome.outcome == probe.KEEPS,
        f"reduced features (k={result.current_k}): {outcome.reason} "
        f"({reduced:.3f} / {full:.3f} on {result.test_rows} held-out rows){limit}",
        {
            names.PROBE_VERDICT: outcome.outcome,
            **{
                key: numbers[key]
                for key in (
                    names.ACCURACY_RATIO,
                    names.ACCURACY_RATIO_LOW,
                    names.ACCURACY_RATIO_HIGH,
                )
                if key in numbers
            },
            names.MIN_PROBE_RATIO: float(min_ratio),
            f"{names.ACCURACY}{probe.FULL}": float(full),
            f"{names.ACCURACY}{probe.REDUCED}": float(reduced),
        },
    )


@dg.asset(
    key=names.FEATURE_QUALITY,
    group_name=names.GROUP,
    # Reads the published rows of every upload date: the reduced ones and their features.
    deps=[dg.AssetDep(reduced_features, partition_mapping=dg.AllPartitionMapping())],
    # Lets a run over a range of dates (make demo's) include it, as pca_model.
    backfill_policy=ONE_RUN_PER_BACKFILL,
    automation_condition=AFTER_REDUCED_FEATURES,
    kinds={"spark"},
    check_specs=[
        dg.AssetCheckSpec(
            names.PROBE_KEEPS_ACCURACY.name,
            asset=names.PROBE_KEEPS_ACCURACY.asset_key,
            blocking=False,
            description="a linear probe on the reduced features is not shown to reach less "
            "than min_probe_ratio of its accuracy on the full features (a warning when the "
            "ratio's bootstrap interval lies below it; inconclusive, not a failure, when the "
            "held-out rows are too few)",
        )
    ],
)
def feature_quality(
    context: dg.AssetExecutionContext,
    fruits: FruitsConfig,
    pyspark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """A linear probe on the labelled images: accuracy, balanced accuracy and macro-F1 on the
    raw features, on the current PCA's reduced features and at other k, the ratio's interval
    and verdict, with a picture to choose k from."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    version = latest_version(layout, s3)
    if version is None:
        raise dg.Failure("no PCA model yet: materialize pca_model first")
    model = read_pca_metadata(layout, s3, version)
    session = pyspark.session_for(context, fruits)
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
        names.PCA_VERSION: version,
        names.PCA_K: int(model["k"]),
        names.WEIGHTS_SHA256: model["weights_sha256"],
    }
    try:
        result = probe.run_probe(
            features, reduced, load_pca(layout, version), probe_options(settings)
        )
    except probe.NotReducedError as error:
        raise dg.Failure(f"{error}: materialize reduced_features first") from None
    except probe.ProbeInconclusive as error:
        # Too few labelled rows is a finding about the data, not a broken run: the report says
        # so and its check is inconclusive, the run (make demo's, a backfill's) stays green.
        # Any other error fails the run.
        yield dg.MaterializeResult(
            metadata={
                **identity,
                names.PROBE_VERDICT: probe.INCONCLUSIVE,
                names.PROBE_INCONCLUSIVE: str(error),
            }
        )
        yield inconclusive(str(error))
        return
    for warning in result.warnings():
        context.log.warning(warning)
    png = probe.probe_png(result)
    png_uri = probe.save_probe(s3, layout, version, result, png)
    outcome = probe.verdict(result, settings.min_probe_ratio)
    yield dg.MaterializeResult(
        metadata={
            **probe_metadata(result),
            names.PROBE_VERDICT: outcome.outcome,
            **(
                {names.PROBE_INCONCLUSIVE: outcome.reason}
                if outcome.outcome == probe.INCONCLUSIVE
                else {}
            ),
            names.ROWS_PER_LABEL: count_table(result.rows_per_label, names.LABEL),
            names.PROBE_KS: dg.MetadataValue.json(result.ks),
            names.PROBE_ITERATIONS: dg.MetadataValue.json(result.iterations),
            names.PROBE_FITS_AT_MAX_ITER: dg.MetadataValue.json(result.fits_at_limit),
            names.DATES_NOT_REDUCED: dg.MetadataValue.json(result.dates_not_reduced),
            **identity,
            names.PROBE_PLOT: png_markdown(png, "probe accuracy and explained variance against k"),
            names.PROBE_PNG: dg.MetadataValue.path(png_uri),
        }
    )
    yield keeps_accuracy(result, settings.min_probe_ratio)


# Dagster's own default automation sensor starts stopped; this one runs by default, so that
# reduced_features follows new features and models, and feature_quality follows them.
automation_conditions = dg.AutomationConditionSensorDefinition(
    "automation_conditions",
    target=dg.AssetSelection.assets(names.REDUCED_FEATURES, names.FEATURE_QUALITY),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the automation conditions of reduced_features and feature_quality.",
)
