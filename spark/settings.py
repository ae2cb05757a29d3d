"""The one object that owns configuration: plain, validated values for the library.

Where the values come from is the Dagster layer's business (fruits_assets.deployments: each
deployment's defaults, the `fruits` resource's fields, FRUITS_* variables); this module never
reads the environment for them. Nothing here hard-codes an endpoint, a bucket or a credential.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def user_cache(kind: str) -> Path:
    """This user's cache of the project's `kind` of files: $XDG_CACHE_HOME/fruits/<kind>
    (~/.cache by default), kept between runs."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "fruits", kind)


# GDPR: the AWS regions inside the European Union. eu-west-2 (London) and eu-central-2
# (Zurich) are in Europe but outside the EU, so they are refused too.
EU_REGIONS = frozenset(
    {"eu-west-1", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2"}
)


# Inference engines for the same weights (spark.model): LiteRT, the default (XNNPACK kernels
# and no graph runtime: less CPU per image than Keras; `make bench` measures how much less),
# and Keras/TensorFlow (kept for reference and for its equality test).
ENGINES = ("tflite", "keras")
# Iceberg catalogs (spark.catalog): JDBC on PostgreSQL locally, the Glue Data Catalog on AWS.
CATALOG_TYPES = ("jdbc", "glue")
# feature_quality's probe groups the frames of one object (Fruits-360: a rotating fruit, one
# file per frame) by removing this from each file's stem: trailing numbers after a separator
# ("r_12_100" -> "r", "0_100" -> "", "apple_0_0001" -> "apple"), so that no object has frames on
# both sides of the held-out split; a stem that ends in no such number is kept whole (the
# synthetic sample's "apple_red_2026-11-20_photo0007": each render its own object). "$"
# removes nothing: every file is its own group.
PROBE_FRAME_NUMBERS = r"(?:^|[\W_]+)\d+(?:[\W_]+\d+)*$"


class ConfigError(ValueError):
    """A configuration problem, reported as one line before any work starts."""


def require_eu_region(region: str, what: str = "region") -> str:
    if region not in EU_REGIONS:
        raise ConfigError(
            f"{what} {region!r} is outside the EU; GDPR requires one of {sorted(EU_REGIONS)}"
        )
    return region


def setting(default: Any = MISSING, description: str = "") -> Any:
    """A field of Settings with the description the UI shows for it."""
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The pipeline's configuration, declared once: the `fruits` resource's fields (and what
    the UI shows of them) are derived from these, FRUITS_X variables carry them across
    processes, and the library receives them as this validated object."""

    deployment: str = setting(description="The deployment these values belong to.")
    region: str = setting(description="AWS region of the bucket and the cluster (EU only: GDPR).")
    bucket: str = setting(description="S3 bucket of the photos, features and models.")
    prefix: str = setting("fruits", "Key prefix of everything in the bucket.")
    s3_endpoint: str | None = setting(None, "S3 endpoint other than AWS's (the local S3 server).")
    spark_master: str | None = setting(
        None, "Spark master of a local session (None: the cluster's)."
    )
    spark_driver_memory: str = setting(
        "2g", "Heap of the local Spark driver (on EMR the cluster's applies)."
    )
    weights: str = setting(
        "imagenet",
        "MobileNetV2 weights: 'imagenet', 'random', a file, or an s3:// URI (required on EMR: "
        "the cluster never downloads from the internet).",
    )
    weights_seed: int = setting(42, "Seed of 'random' weights.")
    pca_k: int = setting(100, "Components kept by the PCA.")
    # Tuning defaults (`make bench` measures the alternatives: docs, "Performance").
    arrow_batch_size: int = setting(
        64,
        "Images per Arrow batch of a Python worker: amortises a batch's overhead while "
        "bounding a worker's decoded tensors.",
    )
    tf_intra_op_threads: int = setting(
        1,
        "Inference threads per Python worker: Spark already runs one worker per core, so more "
        "threads only compete.",
    )
    fetch_threads: int = setting(
        16, "S3 GETs in flight per Python worker, to hide S3's latency behind the model."
    )
    max_image_bytes: int = setting(
        50 * 1024 * 1024, "Larger photos are rejected from the manifest's size, never read."
    )
    engine: str = setting(
        "tflite", "Inference engine: 'tflite' (LiteRT, the default) or 'keras' (reference)."
    )
    max_reject_rate: float = setting(
        0.05, "Check reject_rate fails above this share of rejected photos."
    )
    min_explained_variance: float = setting(0.7, "Check explained_variance fails below this share.")
    pca_refit_after: int = setting(
        0, "Re-fit the PCA once this many new feature partitions arrived (0: on demand only)."
    )
    staging_bucket: str | None = setting(
        None, "Bucket of EMR's code packages, logs and bootstrap files."
    )
    staging_prefix: str = setting("emr_staging", "Key prefix in the staging bucket.")
    min_probe_ratio: float = setting(
        0.97,
        "Check probe_keeps_accuracy warns when the linear probe on the reduced features "
        "reaches less than this share of its accuracy on the full features.",
    )
    pca_variance_target: float | None = setting(
        None,
        "None: the PCA keeps pca_k components; a share in (0, 1]: the fewest components whose "
        "cumulative explained variance reaches it.",
    )
    catalog_type: str = setting(
        "jdbc",
        "Iceberg catalog of the tables: 'jdbc' (PostgreSQL, local) or 'glue' (the AWS Glue "
        "Data Catalog, which Athena reads).",
    )
    catalog_uri: str | None = setting(
        None, "The jdbc catalog's database: jdbc:postgresql://HOST:PORT/DATABASE?user=USER."
    )
    namespace: str = setting("fruits", "Namespace of the tables (the Glue database on AWS).")
    snapshot_retention_hours: float = setting(
        168.0,
        "Table maintenance expires snapshots older than this (time travel reaches this far "
        "back); the current one always stays.",
    )
    write_grace_hours: float = setting(
        24.0,
        "How long a write may run: maintenance and erasure leave younger unpublished files "
        "and staged snapshots to the run that writes them.",
    )
    target_file_mb: int = setting(128, "Size of the tables' data files, written and compacted to.")
    probe_min_test_rows: int = setting(
        100, "feature_quality's verdict is 'inconclusive' below this many held-out rows."
    )
    probe_min_test_rows_per_label: int = setting(
        5,
        "feature_quality's verdict is 'inconclusive' when a label has fewer held-out rows "
        "than this.",
    )
    probe_group_pattern: str = setting(
        PROBE_FRAME_NUMBERS,
        "Regex removed from each file's stem to group the frames of one object (label folder "
        "+ what remains): a group is held out whole. '$': each file alone.",
    )
    # Not a field of the resource: the first daily partition is a code constant
    # (fruits_assets.partitions), which the Dagster layer passes.
    partitions_start: str = setting(description="The first upload date of the partitions.")

    def __post_init__(self) -> None:
        require_eu_region(self.region)
        if not self.bucket:
            raise ConfigError("FRUITS_BUCKET is empty")
        if self.pca_k < 1:
            raise ConfigError(f"FRUITS_PCA_K must be positive, got {self.pca_k}")
        if not 0 <= self.max_reject_rate <= 1 or not 0 <= self.min_explained_variance <= 1:
            raise ConfigError(
                "FRUITS_MAX_REJECT_RATE and FRUITS_MIN_EXPLAINED_VARIANCE are in [0, 1]"
            )
        if self.deployment == "emr" and not self.weights.startswith("s3://"):
            raise ConfigError(
                f"FRUITS_WEIGHTS must be an s3:// URI on EMR (the cluster never downloads "
                f"weights from the internet), got {self.weights!r}; see bootstrap.aws.weights"
            )
        if self.engine not in ENGINES:
            raise ConfigError(f"FRUITS_ENGINE must be one of {ENGINES}, got {self.engine!r}")
        if self.fetch_threads < 1 or self.max_image_bytes < 1:
            raise ConfigError("FRUITS_FETCH_THREADS and FRUITS_MAX_IMAGE_BYTES must be positive")
        if not 0 <= self.min_probe_ratio <= 1:
            raise ConfigError(
                f"FRUITS_MIN_PROBE_RATIO must be in [0, 1], got {self.min_probe_ratio}"
            )
        if self.pca_variance_target is not None and not 0 < self.pca_variance_target <= 1:
            raise ConfigError(
                f"FRUITS_PCA_VARIANCE_TARGET must be in (0, 1], got {self.pca_variance_target}"
            )
        if self.catalog_type not in CATALOG_TYPES:
            raise ConfigError(
                f"FRUITS_CATALOG_TYPE must be one of {CATALOG_TYPES}, got {self.catalog_type!r}"
            )
        if self.catalog_type == "jdbc" and not self.catalog_uri:
            raise ConfigError("FRUITS_CATALOG_URI must be set for the jdbc catalog")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.namespace):
            raise ConfigError(
                f"FRUITS_NAMESPACE must be a lower-case identifier (a Glue database), "
                f"got {self.namespace!r}"
            )
        if min(self.snapshot_retention_hours, self.write_grace_hours) < 0 or (
            self.target_file_mb < 1
        ):
            raise ConfigError(
                "FRUITS_SNAPSHOT_RETENTION_HOURS and FRUITS_WRITE_GRACE_HOURS must not be "
                "negative, FRUITS_TARGET_FILE_MB must be positive"
            )
        if min(self.probe_min_test_rows, self.probe_min_test_rows_per_label) < 1:
            raise ConfigError(
                "FRUITS_PROBE_MIN_TEST_ROWS and FRUITS_PROBE_MIN_TEST_ROWS_PER_LABEL must be "
                "positive"
            )
        try:
            re.compile(self.probe_group_pattern)
        except re.error as error:
            raise ConfigError(f"FRUITS_PROBE_GROUP_PATTERN is not a regex: {error}") from None
        if self.arrow_batch_size < 1:
            raise ConfigError(
                f"FRUITS_ARROW_BATCH_SIZE must be positive, got {self.arrow_batch_size}"
            )

    def require_partition_dates(self, dates: list[str], today: dt.date | None = None) -> None:
        """Upload dates must fall in the daily partitions: from the start date to yesterday
        (a day's partition exists once the day is over, as Dagster's daily partitions and the
        `new_uploads` sensor count them)."""
        today = today or dt.datetime.now(dt.UTC).date()
        last = (today - dt.timedelta(days=1)).isoformat()
        outside = [d for d in dates if not self.partitions_start <= d <= last]
        if outside:
            raise ConfigError(
                f"upload dates {outside} are outside the partitions "
                f"({self.partitions_start} to {last}: today's exists once the day is over)"
            )
