"""Data-quality checks, as plain functions; the Dagster asset checks report what they return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark.pipeline import rows_per_date
from spark.settings import EU_REGIONS


@dataclass(frozen=True)
class Outcome:
    passed: bool
    description: str
    details: dict[str, Any] = field(default_factory=dict)


def every_image_accounted(
    manifest: Mapping[str, int], features: Mapping[str, int], rejects: Mapping[str, int]
) -> Outcome:
    """Per date: feature rows + rejects == files in the manifest."""
    off = {
        date: {"manifest": n, "features": features.get(date, 0), "rejects": rejects.get(date, 0)}
        for date, n in manifest.items()
        if features.get(date, 0) + rejects.get(date, 0) != n
    }
    total = sum(manifest.values())
    return Outcome(
        not off, f"{total} images; dates that do not add up: {sorted(off) or 'none'}", off
    )


def no_duplicate_paths(rows: DataFrame) -> Outcome:
    duplicates = rows.groupBy("path").count().where("count > 1").count()
    return Outcome(
        duplicates == 0, f"{duplicates} paths appear more than once", {"duplicates": duplicates}
    )


def bad_vector_count(rows: DataFrame, column: str, dim: int) -> int:
    """Rows whose vector is null, not `dim` long, or holds a NaN or an infinity."""
    vector = F.col(column)
    not_finite = F.exists(vector, lambda x: F.isnan(x) | x.isNull() | (F.abs(x) == float("inf")))
    return rows.where(vector.isNull() | (F.size(vector) != dim) | not_finite).count()


def vectors_are_finite(rows: DataFrame, column: str, dim: int) -> Outcome:
    bad = bad_vector_count(rows, column, dim)
    return Outcome(bad == 0, f"{bad} rows without {dim} finite values", {"bad_rows": bad})


def reject_rate_below(
    features: Mapping[str, int], rejects: Mapping[str, int], limit: float
) -> Outcome:
    total = sum(features.values()) + sum(rejects.values())
    rate = sum(rejects.values()) / total if total else 0.0
    return Outcome(rate <= limit, f"reject rate {rate:.2%} (limit {limit:.2%})", {"rate": rate})


def explained_variance_ok(variance: Sequence[float], floor: float) -> Outcome:
    total = float(sum(variance))
    decreasing = all(a >= b - 1e-12 for a, b in zip(variance, variance[1:], strict=False))
    return Outcome(
        total >= floor and decreasing,
        f"{len(variance)} components explain {total:.3f} (floor {floor}); decreasing: {decreasing}",
        {"explained": total, "decreasing": decreasing},
    )


def reduced_matches_features(
    features: Mapping[str, int], reduced: DataFrame, k: int, current_version: str | None
) -> Outcome:
    """Same rows per date as the features, k finite values each, all from the current model."""
    per_date = rows_per_date(reduced)
    versions = sorted(r.pca_version for r in reduced.select("pca_version").distinct().collect())
    bad = bad_vector_count(reduced, "pca_features", k)
    counts_ok = all(per_date.get(d, 0) == n for d, n in features.items())
    passed = counts_ok and bad == 0 and versions in ([current_version], [])
    return Outcome(
        passed,
        f"rows per date match features: {counts_ok}; bad vectors: {bad}; "
        f"versions {versions} (current {current_version})",
        {"rows": per_date, "bad_rows": bad, "versions": versions, "current": current_version},
    )


def bucket_in_eu(s3: Any, bucket: str) -> Outcome:
    # S3 reports us-east-1 as no LocationConstraint at all.
    region = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    return Outcome(region in EU_REGIONS, f"s3://{bucket} is in {region}", {"region": region})
