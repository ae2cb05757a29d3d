"""The check functions on good and doctored data."""

import math

import boto3
import pytest

from spark.quality import (
    SAMPLE_PATHS,
    bucket_in_eu,
    every_image_accounted,
    explained_variance_ok,
    reduced_matches_features,
    reject_rate_below,
    vectors_are_finite,
)

DATE = "2026-11-02"


def vectors(spark, rows, column="features", version="v1"):
    schema = f"path string, upload_date string, pca_version string, {column} array<float>"
    return spark.createDataFrame([(p, DATE, version, v) for p, v in rows], schema)


EXPECTED = [f"s3://b/raw/upload_date={DATE}/apple/{n}.jpg" for n in "abcde"]
A, B, C, D, E = EXPECTED
STRANGER = f"s3://b/raw/upload_date={DATE}/apple/x.jpg"


def paths(spark, rows, extra="label"):
    """Rows with a path, and another column as feature rows and rejects have."""
    return spark.createDataFrame([(p, "apple") for p in rows], f"path string, {extra} string")


def accounted(spark, features, rejects, expected=EXPECTED):
    return every_image_accounted(
        paths(spark, expected, "etag"), paths(spark, features), paths(spark, rejects, "reason")
    )


def test_accounting_passes_when_the_paths_are_the_expected_ones(spark) -> None:
    outcome = accounted(spark, [A, B, C, D], [E])
    assert outcome.passed, outcome.description
    assert outcome.details == {"expected": 5, "missing": 0, "unexpected": 0, "duplicated": 0}
    assert outcome.description == "5 images listed; 0 missing, 0 unexpected, 0 duplicated"
    assert accounted(spark, [], [], expected=[]).passed


def test_accounting_names_a_missing_path(spark) -> None:
    outcome = accounted(spark, [A, B, C], [E])
    assert not outcome.passed
    assert (outcome.details["missing"], outcome.details["missing_paths"]) == (1, [D])
    assert outcome.details["unexpected"] == outcome.details["duplicated"] == 0
    assert "1 missing" in outcome.description

    nothing = accounted(spark, [], [])
    assert not nothing.passed
    assert nothing.details["missing"] == 5 and nothing.details["missing_paths"] == EXPECTED


def test_accounting_names_an_unexpected_path(spark) -> None:
    outcome = accounted(spark, [A, B, C, D, STRANGER], [E])
    assert not outcome.passed
    assert (outcome.details["unexpected"], outcome.details["unexpected_paths"]) == (1, [STRANGER])
    assert outcome.details["missing"] == outcome.details["duplicated"] == 0
    assert "1 unexpected" in outcome.description


@pytest.mark.parametrize(
    ("features", "rejects"),
    [([A, B, C, D], [E, A]), ([A, B, C, D, A], [E])],
    ids=["in-features-and-rejects", "twice-in-features"],
)
def test_accounting_names_a_path_listed_twice(spark, features, rejects) -> None:
    outcome = accounted(spark, features, rejects)
    assert not outcome.passed
    assert (outcome.details["duplicated"], outcome.details["duplicated_paths"]) == (1, [A])
    assert outcome.details["missing"] == outcome.details["unexpected"] == 0
    assert "1 duplicated" in outcome.description


def test_accounting_compares_paths_not_counts(spark) -> None:
    # Five rows for five listed images, yet D was lost and a stranger took its place.
    outcome = accounted(spark, [A, B, C, STRANGER], [E])
    assert not outcome.passed
    assert outcome.details["missing_paths"] == [D]
    assert outcome.details["unexpected_paths"] == [STRANGER]
    # The same count reached by a duplicate instead.
    twice = accounted(spark, [A, B, C, C], [E])
    assert not twice.passed
    assert twice.details["missing_paths"] == [D] and twice.details["duplicated_paths"] == [C]


def test_accounting_lists_a_sample_and_counts_them_all(spark) -> None:
    many = [f"s3://b/raw/upload_date={DATE}/apple/{i:03}.jpg" for i in range(SAMPLE_PATHS + 5)]
    outcome = accounted(spark, [], [], expected=many)
    assert outcome.details["missing"] == SAMPLE_PATHS + 5
    assert len(outcome.details["missing_paths"]) == SAMPLE_PATHS
    assert set(outcome.details["missing_paths"]) <= set(many)


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
