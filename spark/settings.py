"""The one object that owns configuration.

Values come from the environment; a deployment file (`spark/conf/<name>.env`, package data,
so it is read from the code zip on EMR too) supplies defaults for anything the environment
does not set. Nothing here hard-codes an endpoint,
a bucket or a credential.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS_DIR = PROJECT_ROOT / "deployments"
DEPLOYMENT_FILES = importlib.resources.files("spark") / "conf"

# GDPR: the AWS regions inside the European Union. eu-west-2 (London) and eu-central-2
# (Zurich) are in Europe but outside the EU, so they are refused too.
EU_REGIONS = frozenset(
    {"eu-west-1", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2"}
)


# EMR writes the cluster's id (jobFlowId) and layout there on every node; the fake EMR's
# nodes name theirs in JOB_FLOW_ENV.
JOB_FLOW_FILE = "/mnt/var/lib/info/job-flow.json"
JOB_FLOW_ENV = "FRUITS_JOB_FLOW_FILE"


def cluster_id_on_node(environ: Mapping[str, str]) -> str | None:
    """The id of the EMR cluster this process runs on, None off a cluster."""
    path = Path(environ.get(JOB_FLOW_ENV) or JOB_FLOW_FILE)
    return json.loads(path.read_text())["jobFlowId"] if path.is_file() else None


# Inference engines for the same weights (spark.model): LiteRT, the default (XNNPACK kernels
# and no graph runtime: less CPU per image than Keras; `make bench` measures how much less),
# and Keras/TensorFlow (kept for reference and for its equality test).
ENGINES = ("tflite", "keras")


class ConfigError(ValueError):
    """A configuration problem, reported as one line before any work starts."""


def require_eu_region(region: str, what: str = "region") -> str:
    if region not in EU_REGIONS:
        raise ConfigError(
            f"{what} {region!r} is outside the EU; GDPR requires one of {sorted(EU_REGIONS)}"
        )
    return region


def read_env_file(path: Traversable) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments are skipped."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}: expected KEY=VALUE, got {raw!r}")
        values[key.strip()] = value.strip()
    return values


def load_deployment_env(environ: MutableMapping[str, str] | None = None) -> str:
    """Fill `environ` with the defaults of its deployment; returns the deployment name.

    The defaults go into the environment itself (not only into Settings) because boto3
    and the JVM that Spark starts read credentials from there.
    """
    environ = os.environ if environ is None else environ
    deployment = environ.get("FRUITS_DEPLOYMENT", "local")
    path = DEPLOYMENT_FILES / f"{deployment}.env"
    if not path.is_file():
        raise ConfigError(f"unknown deployment {deployment!r}: no spark/conf/{deployment}.env")
    for key, value in read_env_file(path).items():
        environ.setdefault(key, value)
    return deployment


def _iso_date(value: str | None) -> str:
    try:
        return dt.date.fromisoformat(value or "").isoformat()
    except ValueError:
        raise ConfigError(f"FRUITS_PARTITIONS_START must be YYYY-MM-DD, got {value!r}") from None


@dataclass(frozen=True)
class Settings:
    deployment: str
    region: str
    bucket: str
    prefix: str
    s3_endpoint: str | None
    spark_master: str | None
    spark_driver_memory: str
    weights: str
    weights_seed: int
    pca_k: int
    arrow_batch_size: int
    tf_intra_op_threads: int
    fetch_threads: int
    max_image_bytes: int
    engine: str
    partitions_start: str
    max_reject_rate: float
    min_explained_variance: float
    pca_refit_after: int
    emr_cluster_id: str | None = None
    staging_bucket: str | None = None
    staging_prefix: str = "emr_staging"

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
        if self.arrow_batch_size < 1:
            raise ConfigError(
                f"FRUITS_ARROW_BATCH_SIZE must be positive, got {self.arrow_batch_size}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        def get(key: str, default: str | None = None) -> str | None:
            value = environ.get(key, default)
            return value if value not in ("", None) else default

        def get_number(key: str, default: float, kind: type = int) -> Any:
            raw = get(key, str(default))
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"{key} must be {kind.__name__}, got {raw!r}") from None

        region = get("FRUITS_REGION")
        bucket = get("FRUITS_BUCKET")
        if region is None or bucket is None:
            raise ConfigError("FRUITS_REGION and FRUITS_BUCKET must be set")
        return cls(
            deployment=get("FRUITS_DEPLOYMENT", "local"),  # type: ignore[arg-type]
            region=region,
            bucket=bucket,
            prefix=(get("FRUITS_PREFIX", "") or "").strip("/"),
            s3_endpoint=get("FRUITS_S3_ENDPOINT"),
            spark_master=get("FRUITS_SPARK_MASTER"),
            # Local only (on EMR the cluster's defaults apply): the driver JVM's heap.
            spark_driver_memory=get("FRUITS_SPARK_DRIVER_MEMORY", "2g"),  # type: ignore[arg-type]
            weights=get("FRUITS_WEIGHTS", "imagenet"),  # type: ignore[arg-type]
            weights_seed=get_number("FRUITS_WEIGHTS_SEED", 42),
            pca_k=get_number("FRUITS_PCA_K", 100),
            # Tuning defaults (`make bench` measures the alternatives: bench/results.json):
            # - engine tflite: LiteRT runs the same model for much less CPU than Keras;
            # - 1 inference thread per Python worker: Spark runs one worker per core already,
            #   so a second thread only competes with the other worker (tf_threads_2);
            # - Arrow batch 64: large enough to amortise a batch's overhead, small enough to
            #   keep a worker's decoded tensors at 64 x 224x224x3 float32 = 38 MB.
            arrow_batch_size=get_number("FRUITS_ARROW_BATCH_SIZE", 64),
            tf_intra_op_threads=get_number("FRUITS_TF_THREADS", 1),
            # GETs in flight per Python worker: enough to hide S3's per-request latency
            # behind the model (spark.fetch).
            fetch_threads=get_number("FRUITS_FETCH_THREADS", 16),
            # Larger files are rejected from the manifest's size, never read: phone photos are
            # a few MB, and a worker holds a batch of them in memory.
            max_image_bytes=get_number("FRUITS_MAX_IMAGE_BYTES", 50 * 1024 * 1024),
            engine=get("FRUITS_ENGINE", ENGINES[0]),  # type: ignore[arg-type]
            partitions_start=_iso_date(get("FRUITS_PARTITIONS_START", "2026-01-01")),
            max_reject_rate=get_number("FRUITS_MAX_REJECT_RATE", 0.05, float),
            min_explained_variance=get_number("FRUITS_MIN_EXPLAINED_VARIANCE", 0.7, float),
            # 0: PCA is re-fitted on demand only; N: once N new feature partitions arrived.
            pca_refit_after=get_number("FRUITS_PCA_REFIT_AFTER", 0),
            emr_cluster_id=get("FRUITS_EMR_CLUSTER_ID") or cluster_id_on_node(environ),
            staging_bucket=get("FRUITS_STAGING_BUCKET"),
            staging_prefix=(get("FRUITS_STAGING_PREFIX", "emr_staging") or "").strip("/"),
        )

    def require_partition_dates(self, dates: list[str], today: dt.date | None = None) -> None:
        """Upload dates must fall in the daily partitions: from the start date to today."""
        today = today or dt.datetime.now(dt.UTC).date()
        outside = [d for d in dates if not self.partitions_start <= d <= today.isoformat()]
        if outside:
            raise ConfigError(
                f"upload dates {outside} are outside the partitions "
                f"({self.partitions_start} to {today.isoformat()}; FRUITS_PARTITIONS_START)"
            )

    @classmethod
    def load(cls) -> Settings:
        """Settings of the current deployment (FRUITS_DEPLOYMENT, default `local`)."""
        load_deployment_env()
        return cls.from_env(os.environ)
