"""The check functions on good and doctored data."""

import math

import boto3
import pytest

from spark.quality import (
    bucket_in_eu,
    every_image_accounted,
    explained_variance_ok,
    no_duplicate_paths,
    reduced_matches_features,
    reject_rate_below,
    vectors_are_finite,
)

DATE = "2026-11-02"


def vectors(spark, rows, column="features", version="v1"):
    schema = f"path string, upload_date string, pca_version string, {column} array<float>"
    return spark.createDataFrame([(p, DATE, version, v) for p, v in rows], schema)


def test_accounting() -> None:
    assert every_image_accounted({DATE: 5}, {DATE: 4}, {DATE: 1}).passed
    missing_row = every_image_accounted({DATE: 5}, {DATE: 3}, {DATE: 1})
    assert not missing_row.passed and DATE in missing_row.description
    assert not every_image_accounted({DATE: 5}, {}, {}).passed


def test_duplicates(spark) -> None:
    rows = [("a", [1.0]), ("b", [1.0])]
    assert no_duplicate_paths(vectors(spark, rows)).passed
    assert not no_duplicate_paths(vectors(spark, rows + [("a", [2.0])])).passed


@pytest.mark.parametrize(
    ("vector", "ok"),
    [
        ([0.5, 1.0, 2.0], True),
        ([0.5, math.nan, 2.0], False),
        ([math.inf, 1.0, 2.0], False),
        ([1.0, 2.0], False),
        (None, False),
    ],
)
def test_vectors_must_hold_dim_finite_values(spark, vector, ok) -> None:
    assert (
        vectors_are_finite(
            vectors(spark, [("a", [0.0, 0.0, 0.0]), ("b", vector)]), "features", 3
        ).passed
        is ok
    )


def test_reject_rate() -> None:
    assert reject_rate_below({DATE: 95}, {DATE: 5}, 0.05).passed
    assert not reject_rate_below({DATE: 94}, {DATE: 6}, 0.05).passed
    assert reject_rate_below({}, {}, 0.05).passed


def test_explained_variance_floor_and_order() -> None:
    assert explained_variance_ok([0.5, 0.3, 0.1], 0.8).passed
    assert not explained_variance_ok([0.5, 0.2, 0.05], 0.8).passed
    assert not explained_variance_ok([0.3, 0.5, 0.1], 0.8).passed


def test_reduced_rows_vectors_and_version(spark) -> None:
    reduced = vectors(spark, [("a", [1.0, 2.0]), ("b", [3.0, 4.0])], "pca_features", "v2")
    assert reduced_matches_features({DATE: 2}, reduced, 2, "v2").passed
    stale = reduced_matches_features({DATE: 2}, reduced, 2, "v3")
    assert not stale.passed and "current v3" in stale.description
    assert not reduced_matches_features({DATE: 3}, reduced, 2, "v2").passed  # a missing row
    assert not reduced_matches_features({DATE: 2}, reduced, 100, "v2").passed  # wrong width


def test_bucket_region(s3, settings) -> None:
    assert bucket_in_eu(s3, settings.bucket).passed
    us = boto3.client("s3", region_name="us-east-1", endpoint_url=settings.s3_endpoint)
    us.create_bucket(Bucket="fruits-quality-us")
    outcome = bucket_in_eu(s3, "fruits-quality-us")
    assert not outcome.passed and outcome.details["region"] == "us-east-1"
