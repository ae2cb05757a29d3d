"""feature_quality on published features whose labels the current PCA loses: the numbers
as numeric metadata, the picture in the UI and S3, and a warning (no failure) from its check."""

from __future__ import annotations

import hashlib

import dagster as dg
import numpy as np
import pytest

from fruits_assets import names as n
from fruits_assets.definitions import defs
from fruits_assets.feature_quality import feature_quality
from fruits_assets.names import FEATURE_QUALITY, PROBE_KEEPS_ACCURACY
from spark import tables
from spark.pca import publish_pca
from spark.pipeline import fit_pca_version, publish_staged, write_reduced
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
            path = f"s3a://b/raw/{label}/{i}.jpg"
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
    write_reduced(spark, layout, s3, [D1], version)
    return version


@pytest.fixture
def published_with_k2(asset_layout, spark, s3) -> str:
    return publish_with_k2(asset_layout, spark, s3, rows_with_quiet_labels())


def test_too_few_labelled_rows_is_a_report_and_a_warning_not_a_failure(
    asset_layout, asset_resources, spark, s3
) -> None:
    version = publish_with_k2(
        asset_layout, spark, s3, rows_with_quiet_labels(per_label=4, labels=("apple",))
    )
    result = dg.materialize([feature_quality], resources=asset_resources())
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert "the probe did not run" in check.description and "two labels" in check.description
    (event,) = result.asset_materializations_for_node(FEATURE_QUALITY.to_python_identifier())
    values = {k: v.value for k, v in event.metadata.items()}
    assert "two labels" in values[n.PROBE_NOT_RUN]
    assert (values[n.PCA_VERSION], values[n.PCA_K]) == (version, 2)


def test_the_probe_warns_when_the_reduced_features_lose_the_labels(
    published_with_k2, asset_layout, asset_resources, s3
) -> None:
    result = dg.materialize(
        [feature_quality],
        resources=asset_resources(),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success  # a warning: the materialization stands
    (check,) = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == (PROBE_KEEPS_ACCURACY.name, False)
    assert check.severity == dg.AssetCheckSeverity.WARN

    (event,) = result.asset_materializations_for_node(FEATURE_QUALITY.to_python_identifier())
    metadata = event.metadata
    values = {k: v.value for k, v in metadata.items()}
    full, reduced = f"{n.ACCURACY}full", f"{n.ACCURACY}reduced"
    for key in (full, reduced, f"{n.MACRO_F1}full", f"{n.MACRO_F1}reduced"):
        assert isinstance(metadata[key], dg.FloatMetadataValue), key
    assert values[full] > 0.9
    assert values[reduced] < 0.75
    assert values[n.ACCURACY_RATIO] == pytest.approx(values[reduced] / values[full])
    assert values[n.ACCURACY_RATIO] < 0.97 and not check.passed
    assert check.metadata[n.ACCURACY_RATIO].value == pytest.approx(values[n.ACCURACY_RATIO])
    # the projections at other k recover what k=2 lost
    k25 = f"{n.ACCURACY}k25"
    assert values[k25] > 0.9 and isinstance(metadata[k25].value, float)
    assert (values[n.PCA_VERSION], values[n.PCA_K]) == (published_with_k2, 2)
    assert values[n.WEIGHTS_SHA256] == DIGEST
    per_label = {r.data[n.LABEL]: r.data for r in values[n.ROWS_PER_LABEL].records}
    assert set(per_label) == set(LABELS)  # unlabelled rows train and test nothing
    assert all(r["train"] + r["test"] == 12 for r in per_label.values())
    assert values[n.ROWS_TRAIN] + values[n.ROWS_TEST] == 36
    plot = values[n.PROBE_PLOT]
    assert plot.startswith("![") and "data:image/png;base64," in plot
    for extension in ("png", "json"):
        key = asset_layout.feature_quality_key(published_with_k2, extension)
        assert s3.head_object(Bucket=asset_layout.bucket, Key=key)["ContentLength"] > 100
    assert values[n.PROBE_PNG].endswith(asset_layout.feature_quality_key(published_with_k2, "png"))


def test_feature_quality_follows_reduced_features_with_a_warning_check() -> None:
    graph = defs.get_repository_def().asset_graph
    node = graph.get(FEATURE_QUALITY)
    assert {p.to_user_string() for p in node.parent_keys} == {"reduced_features"}
    assert node.group_name == "fruits" and node.partitions_def is None
    (spec,) = defs.get_assets_def(FEATURE_QUALITY).check_specs
    assert (spec.key, spec.blocking) == (PROBE_KEEPS_ACCURACY, False)
