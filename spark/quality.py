"""Data-quality checks, as plain functions; the Dagster asset checks report what they return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark.settings import EU_REGIONS
from spark.tables import rows_per_date


@dataclass(frozen=True)
class Outcome:
    passed: bool
    description: str
    details: dict[str, Any] = field(default_factory=dict)


# Paths listed per problem in a check's details; the counts cover them all.
SAMPLE_PATHS = 20


def every_image_accounted(expected: DataFrame, features: DataFrame, rejects: DataFrame) -> Outcome:
    """The paths of feature rows and rejects are exactly the expected paths (the manifest
    entries not erased), each once: nothing lost, nothing invented, nothing twice."""
    out = features.select("path").unionByName(rejects.select("path")).groupBy("path").count()
    listed = expected.select("path").distinct().withColumn("listed", F.lit(True))
    joined = listed.join(out, "path", "full_outer").cache()
    try:
        problems = {
            "missing": joined.where(F.col("count").isNull()),
            "unexpected": joined.where(F.col("listed").isNull()),
            "duplicated": joined.where(F.col("count") > 1),
        }
        counts = {name: rows.count() for name, rows in problems.items()}
        details: dict[str, Any] = {
            "expected": listed.count(),
            **counts,
            **{
                f"{name}_paths": sorted(str(r.path) for r in rows.limit(SAMPLE_PATHS).collect())
                for name, rows in problems.items()
                if counts[name]
            },
        }
    finally:
        joined.unpersist()
    passed = not any(counts.values())
    summary = ", ".join(f"{n} {name}" for name, n in counts.items())
    return Outcome(passed, f"{details['expected']} images listed; {summary}", details)


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
    details = {"rate": rate, "limit": limit}
    return Outcome(rate <= limit, f"reject rate {rate:.2%} (limit {limit:.2%})", details)


def explained_variance_ok(variance: Sequence[float], floor: float) -> Outcome:
    total = float(sum(variance))
    decreasing = all(a >= b - 1e-12 for a, b in zip(variance, variance[1:], strict=False))
    return Outcome(
        total >= floor and decreasing,
        f"{len(variance)} components explain {total:.3f} (floor {floor}); decreasing: {decreasing}",
        {"explained": total, "floor": floor, "components": len(variance), "decreasing": decreasing},
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
