"""Resources: the pipeline's configuration (`fruits`) and a Spark session started on demand
(`spark`). Their fields are what the UI's resource view shows; a deployment
(fruits_assets.deployments) gives their values."""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from pydantic import Field, PrivateAttr
from pyspark.sql import SparkSession

from fruits_assets.observability import label_spark_jobs
from fruits_assets.partitions import PARTITIONS_START
from spark.layout import Layout
from spark.session import session_conf, start_session, use_settings_catalog
from spark.settings import PROBE_FRAME_NUMBERS, Settings
from spark.storage import s3_client

STEP_LAUNCHER = "pyspark_step_launcher"


class FruitsConfig(dg.ConfigurableResource):
    """The pipeline's configuration; `settings()` gives it to the library as validated
    spark.settings.Settings, built once per run (Dagster makes one instance per run)."""

    deployment: str = Field(description="The deployment these values belong to.")
    region: str = Field(description="AWS region of the bucket and the cluster (EU only: GDPR).")
    bucket: str = Field(description="S3 bucket of the photos, features and models.")
    prefix: str = Field(default="fruits", description="Key prefix of everything in the bucket.")
    s3_endpoint: str | None = Field(
        default=None, description="S3 endpoint other than AWS's (the local S3 server)."
    )
    spark_master: str | None = Field(
        default=None, description="Spark master of a local session (None: the cluster's)."
    )
    spark_driver_memory: str = Field(
        default="2g", description="Heap of the local Spark driver (on EMR the cluster's applies)."
    )
    weights: str = Field(
        default="imagenet",
        description="MobileNetV2 weights: 'imagenet', 'random', a file, or an s3:// URI "
        "(required on EMR: the cluster never downloads from the internet).",
    )
    weights_seed: int = Field(default=42, description="Seed of 'random' weights.")
    pca_k: int = Field(default=100, description="Components kept by the PCA.")
    # Tuning defaults (`make bench` measures the alternatives: docs, "Performance").
    arrow_batch_size: int = Field(
        default=64,
        description="Images per Arrow batch of a Python worker: amortises a batch's overhead "
        "while bounding a worker's decoded tensors.",
    )
    tf_intra_op_threads: int = Field(
        default=1,
        description="Inference threads per Python worker: Spark already runs one worker per "
        "core, so more threads only compete.",
    )
    fetch_threads: int = Field(
        default=16,
        description="S3 GETs in flight per Python worker, to hide S3's latency behind the model.",
    )
    max_image_bytes: int = Field(
        default=50 * 1024 * 1024,
        description="Larger photos are rejected from the manifest's size, never read.",
    )
    engine: str = Field(
        default="tflite",
        description="Inference engine: 'tflite' (LiteRT, the default) or 'keras' (reference).",
    )
    max_reject_rate: float = Field(
        default=0.05, description="Check reject_rate fails above this share of rejected photos."
    )
    min_explained_variance: float = Field(
        default=0.7, description="Check explained_variance fails below this share."
    )
    pca_refit_after: int = Field(
        default=0,
        description="Re-fit the PCA once this many new feature partitions arrived (0: on "
        "demand only).",
    )
    staging_bucket: str | None = Field(
        default=None, description="Bucket of EMR's code packages, logs and bootstrap files."
    )
    staging_prefix: str = Field(
        default="emr_staging", description="Key prefix in the staging bucket."
    )
    min_probe_ratio: float = Field(
        default=0.97,
        description="Check probe_keeps_accuracy warns when the linear probe on the reduced "
        "features reaches less than this share of its accuracy on the full features.",
    )
    pca_variance_target: float | None = Field(
        default=None,
        description="None: the PCA keeps pca_k components; a share in (0, 1]: the fewest "
        "components whose cumulative explained variance reaches it.",
    )

    catalog_type: str = Field(
        default="jdbc",
        description="Iceberg catalog of the tables: 'jdbc' (PostgreSQL, local) or 'glue' (the "
        "AWS Glue Data Catalog, which Athena reads).",
    )
    catalog_uri: str | None = Field(
        default=None,
        description="The jdbc catalog's database: jdbc:postgresql://HOST:PORT/DATABASE?user=USER.",
    )
    namespace: str = Field(
        default="fruits", description="Namespace of the tables (the Glue database on AWS)."
    )
    snapshot_retention_hours: float = Field(
        default=168.0,
        description="Table maintenance expires snapshots older than this (time travel reaches "
        "this far back); the current one always stays.",
    )
    write_grace_hours: float = Field(
        default=24.0,
        description="How long a write may run: maintenance and erasure leave younger "
        "unpublished files and staged snapshots to the run that writes them.",
    )
    target_file_mb: int = Field(
        default=128, description="Size of the tables' data files, written and compacted to."
    )
    probe_min_test_rows: int = Field(
        default=100,
        description="feature_quality's verdict is 'inconclusive' below this many held-out rows.",
    )
    probe_min_test_rows_per_label: int = Field(
        default=5,
        description="feature_quality's verdict is 'inconclusive' when a label has fewer "
        "held-out rows than this.",
    )
    probe_group_pattern: str = Field(
        default=PROBE_FRAME_NUMBERS,
        description="Regex removed from each file's stem to group the frames of one object "
        "(label folder + what remains): a group is held out whole. '$': each file alone.",
    )

    _settings: Settings | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        if self._settings is None:
            values = self.model_dump() | {
                "prefix": self.prefix.strip("/"),
                "staging_prefix": self.staging_prefix.strip("/"),
                "partitions_start": PARTITIONS_START,
            }
            self._settings = Settings(**values)
        return self._settings

    def layout(self) -> Layout:
        settings = self.settings()
        return Layout.of(settings)

    def s3(self) -> Any:
        return s3_client(self.settings())


class SparkResource(LazyPySparkResource):
    """dagster_pyspark's lazy session: built the first time an asset asks for it, never at
    load time (so the EMR host, which only launches steps, never starts Spark).

    Locally that is local Spark with S3A (spark.session); on EMR it is the cluster's session.
    """

    spark_config: dict[str, Any] = Field(
        description="Spark properties of the session (spark.session.session_conf)."
    )
    local: bool = Field(
        default=False,
        description="Spark runs on this machine: check Java, set PYSPARK_PYTHON and "
        "SPARK_LOCAL_IP, add the S3A jars before the first session.",
    )

    @classmethod
    def for_config(cls, fruits: FruitsConfig) -> SparkResource:
        local = fruits.deployment == "local"
        return cls(spark_config=session_conf(fruits), local=local)

    def _init_session(self) -> None:
        # dagster_pyspark's own, plus this machine's preparation for a local session.
        if self._spark_session is None:
            self._spark_session = start_session(self.spark_config, self.local)

    def session_for(self, context: dg.OpExecutionContext, fruits: FruitsConfig) -> SparkSession:
        """The session on the run's catalog, its jobs labelled with the asset's run and
        partitions (Spark UI, logs)."""
        session = self.spark_session
        use_settings_catalog(session, fruits.settings())
        label_spark_jobs(context, session)
        return session


def pipeline_resources(fruits: FruitsConfig) -> dict[str, Any]:
    """The resources every deployment has; it adds its step launcher."""
    return {"fruits": fruits, "spark": SparkResource.for_config(fruits)}
