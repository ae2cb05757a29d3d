"""feature_quality on published features whose labels the current PCA loses: the numbers
as numeric metadata, the picture in the UI and S3, a warning (no failure) from its check when
the held-out rows show the loss, "inconclusive" when they are too few; and its automation."""

from __future__ import annotations

import hashlib

import dagster as dg
import numpy as np
import pytest
from pyspark.errors import PySparkValueError

from fruits_assets import names
from fruits_assets.definitions import defs
from fruits_assets.feature_quality import automation_conditions, feature_quality
from fruits_assets.names import FEATURE_QUALITY, PROBE_KEEPS_ACCURACY
from spark import probe, tables
from spark.pca import publish_pca
from spark.pipeline import fit_pca_version, publish_staged, stage_reduced
from spark.tables import FEATURES

D1 = "2026-11-02"
DIGEST = hashlib.sha256(b"probe weights").hexdigest()
LABELS = ("apple", "banana", "cherry")


def rows_with_quiet_labels(
    per_label: int = 12, seed: int = 5, labels: tuple[str, ...] = LABELS
) -> list[tuple]:
    """1280 features: two loud dimensions that say nothing of the label, and the label in
    quiet ones, so PCA at k=2 keeps the noise and loses the label."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, label in enumerate([*labels, "unlabelled"]):
        for i in range(per_label if label != "unlabelled" else 3):
            vector = rng.normal(0, 0.05, 1280)
            vector[:2] = rng.normal(0, 10, 2)
            if c < len(labels):
                vector[10 + 10 * c : 20 + 10 * c] += 1.0
            path = f"s3a://b/raw/{label}/photo{i}x.jpg"  # each photo its own group
            rows.append((path, D1, label, f"etag-{label}-{i}", "2026-11-02T08:00:00+00:00",
                         1000, [float(x) for x in vector]))  # fmt: skip
    return [(*r, "random:1", DIGEST, None) for r in rows]  # no reject_reason: feature rows


@pytest.fixture
def asset_config(asset_config, fresh_layout) -> dict:
    """The runs' tables in this test's own Iceberg namespace (as `asset_layout` reads them)."""
    asset_config["namespace"] = fresh_layout.namespace
    return asset_config


def publish_with_k2(layout, spark, s3, rows: list[tuple]) -> str:
    """Published features of one date, a PCA of k=2 published on them, and their reduction."""
    frame = spark.createDataFrame(rows, tables.SCHEMAS[FEATURES])
    staged = tables.stage(spark, tables.table(layout, FEATURES), frame, [D1])
    publish_staged(spark, layout, s3, staged)
    version = fit_pca_version(spark, layout, s3, k=2, weights_sha256=DIGEST).version
    publish_pca(layout, s3, version)
    publish_staged(spark, layout, s3, stage_reduced(spark, layout, s3, [D1], version).staged)
    return version


@pytest.fixture
def published_with_k2(asset_layout, spark, s3) -> str:
    return publish_with_k2(asset_layout, spark, s3, rows_with_quiet_labels())


@pytest.mark.slow
def test_too_few_labelled_rows_is_inconclusive_not_a_failure(
    asset_layout, asset_resources, spark, s3
) -> None:
    version = publish_with_k2(
        asset_layout, spark, s3, rows_with_quiet_labels(per_label=4, labels=("apple",))
    )
    result = dg.materialize([feature_quality], resources=asset_resources())
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed  # not a failure, and not the warning of a loss
    assert check.description.startswith("inconclusive") and "two labels" in check.description
    assert check.metadata[names.PROBE_VERDICT].value == "inconclusive"
    (event,) = result.asset_materializations_for_node(FEATURE_QUALITY.to_python_identifier())
    values = {k: v.value for k, v in event.metadata.items()}
    assert "two labels" in values[names.PROBE_INCONCLUSIVE]
    assert values[names.PROBE_VERDICT] == "inconclusive"
    assert (values[names.PCA_VERSION], values[names.PCA_K]) == (version, 2)


@pytest.mark.slow
def test_an_error_of_the_probe_fails_the_run_not_a_finding(
    published_with_k2, asset_resources, monkeypatch
) -> None:
    """Only the probe's own "the data cannot say" is inconclusive: a Spark error (a
    ValueError too, as PySparkValueError is) fails the run and records no verdict."""

    def broken(*args, **kwargs):
        raise PySparkValueError("a Spark error, not a finding about the data")

    monkeypatch.setattr(probe, "run_probe", broken)
    result = dg.materialize([feature_quality], resources=asset_resources(), raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "PySparkValueError" in str(failure.step_failure_data.error)
    assert result.get_asset_check_evaluations() == []
    assert result.asset_materializations_for_node(FEATURE_QUALITY.to_python_identifier()) == []


@pytest.mark.slow
def test_too_few_held_out_rows_give_no_verdict_and_fit_nothing(
    published_with_k2, asset_layout, asset_resources
) -> None:
    """36 rows (9 held out) under the default minimum of 100 held-out rows: the counts
    and the picture of explained variance, no classifier fitted."""
    result = dg.materialize([feature_quality], resources=asset_resources())
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.description.startswith("inconclusive")
    assert "fewer than 100" in check.description
    (event,) = result.asset_materializations_for_node(FEATURE_QUALITY.to_python_identifier())
    values = {k: v.value for k, v in event.metadata.items()}
    assert values[names.PROBE_VERDICT] == "inconclusive"
    assert values[names.ROWS_TEST] < 100 and names.VARIANCE_AT_CURRENT_K in values
    assert not [key for key in values if key.startswith(names.ACCURACY)]
    assert names.PROBE_REG_PARAM not in values and values[names.PROBE_ITERATIONS] == {}
    assert values[names.PROBE_PNG].endswith("feature_quality.png")


@pytest.mark.slow
def test_the_probe_warns_when_the_reduced_features_lose_the_labels(
    asset_config, asset_layout, asset_resources, spark, s3
) -> None:
    # 3 labels x 40 rows: about 24 held out, enough under a minimum of 20
    asset_config |= {"probe_min_test_rows": 20}
    version = publish_with_k2(asset_layout, spark, s3, rows_with_quiet_labels(per_label=40))
    result = dg.materialize(
        [feature_quality],
        resources=asset_resources(),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success  # a warning: the materialization stands
    (check,) = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == (PROBE_KEEPS_ACCURACY.name, False)
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata[names.PROBE_VERDICT].value == "loses"

    (event,) = result.asset_materializations_for_node(FEATURE_QUALITY.to_python_identifier())
    metadata = event.metadata
    values = {k: v.value for k, v in metadata.items()}
    full, reduced = f"{names.ACCURACY}full", f"{names.ACCURACY}reduced"
    for key in (full, reduced, f"{names.MACRO_F1}full", f"{names.BALANCED_ACCURACY}reduced"):
        assert isinstance(metadata[key], dg.FloatMetadataValue), key
    assert values[full] > 0.9
    assert values[reduced] < 0.75
    assert values[names.ACCURACY_RATIO] == pytest.approx(values[reduced] / values[full])
    assert values[names.ACCURACY_RATIO_HIGH] < 0.97  # the whole interval is below the floor
    assert (
        values[names.ACCURACY_RATIO_LOW]
        <= values[names.ACCURACY_RATIO]
        <= values[names.ACCURACY_RATIO_HIGH]
    )
    assert check.metadata[names.ACCURACY_RATIO].value == pytest.approx(values[names.ACCURACY_RATIO])
    assert values[names.PROBE_VERDICT] == "loses" and values[names.ROWS_TEST] >= 20
    # the projections at other k recover what k=2 lost
    k25 = f"{names.ACCURACY}k25"
    assert values[k25] > 0.9 and isinstance(metadata[k25].value, float)
    assert set(values[names.PROBE_ITERATIONS]) >= {"full", "reduced", "k25"}
    assert isinstance(values[names.PROBE_FITS_AT_MAX_ITER], list)
    assert values[names.DATES_NOT_REDUCED] == []
    assert (values[names.PCA_VERSION], values[names.PCA_K]) == (version, 2)
    assert values[names.WEIGHTS_SHA256] == DIGEST
    per_label = {r.data[names.LABEL]: r.data for r in values[names.ROWS_PER_LABEL].records}
    assert set(per_label) == set(LABELS)  # unlabelled rows train and test nothing
    assert all(r["train"] + r["test"] == 40 for r in per_label.values())
    assert values[names.ROWS_TRAIN] + values[names.ROWS_TEST] == 120
    plot = values[names.PROBE_PLOT]
    assert plot.startswith("![") and "data:image/png;base64," in plot
    for extension in ("png", "json"):
        key = asset_layout.feature_quality_key(version, extension)
        assert s3.head_object(Bucket=asset_layout.bucket, Key=key)["ContentLength"] > 100
    assert values[names.PROBE_PNG].endswith(asset_layout.feature_quality_key(version, "png"))


def test_feature_quality_follows_reduced_features_with_a_warning_check() -> None:
    graph = defs.get_repository_def().asset_graph
    node = graph.get(FEATURE_QUALITY)
    assert {p.to_user_string() for p in node.parent_keys} == {"reduced_features"}
    assert node.group_name == "fruits" and node.partitions_def is None
    (spec,) = defs.get_assets_def(FEATURE_QUALITY).check_specs
    assert (spec.key, spec.blocking) == (PROBE_KEEPS_ACCURACY, False)


def test_feature_quality_runs_after_reduced_features_by_default() -> None:
    """After a re-fit (reduced_features re-reduces its dates) the probe is requested once;
    not while a date is missing upstream (most days have no upload), not twice."""
    sensors = {s.name: s for s in defs.get_repository_def().sensor_defs}
    automation = sensors[automation_conditions.name]
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    assert "default_automation_condition_sensor" not in sensors  # nothing left stopped
    # and pca_refit_after alone is enough to re-fit: its sensor runs too
    assert sensors["pca_refit_policy"].default_status == dg.DefaultSensorStatus.RUNNING
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(FEATURE_QUALITY)

    def requested(cursor):
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, cursor=cursor
        )
        return result.total_requested, result.cursor

    count, cursor = requested(None)
    assert count == 0  # nothing upstream yet
    for date in (D1, "2026-11-03"):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(names.REDUCED_FEATURES, partition=date)
        )
    count, cursor = requested(cursor)
    assert count == 1
    count, cursor = requested(cursor)
    assert count == 0  # handled: not again until reduced_features changes
    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURE_QUALITY))
    count, cursor = requested(cursor)
    assert count == 0
    # The next re-fit: reduced_features again.
    instance.report_runless_asset_event(
        dg.AssetMaterialization(names.REDUCED_FEATURES, partition=D1)
    )
    count, cursor = requested(cursor)
    assert count == 1
