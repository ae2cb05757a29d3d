"""The one module that owns the S3 layout of the pipeline.

    s3://<bucket>/<prefix>/raw/upload_date=YYYY-MM-DD/<label>/<file>
    s3://<bucket>/<prefix>/manifests/upload_date=YYYY-MM-DD/manifest.parquet
    s3://<bucket>/<prefix>/features/upload_date=YYYY-MM-DD/<attempt>-part-*.parquet
    s3://<bucket>/<prefix>/features/upload_date=YYYY-MM-DD/_published.json   (see spark.publish)
    s3://<bucket>/<prefix>/features/_staging/<attempt>/      (written, audited, not yet published)
    s3://<bucket>/<prefix>/rejects/upload_date=YYYY-MM-DD/...   (published by the features pointer)
    s3://<bucket>/<prefix>/models/pca/<version>/        (PCAModel.save + metadata.json)
    s3://<bucket>/<prefix>/models/pca/LATEST            (the published version)
    s3://<bucket>/<prefix>/models/pca/<version>/feature_quality.{png,json}  (its linear probe)
    s3://<bucket>/<prefix>/reduced/upload_date=YYYY-MM-DD/...           (as features/)
    s3://<bucket>/<prefix>/audit/tombstones/upload_date=YYYY-MM-DD/<sha256 of path>  (erased)
    s3://<bucket>/<prefix>/locks/upload_date=YYYY-MM-DD.lock   (held while a date publishes)

URIs use the `s3://` scheme: EMRFS on EMR, S3A locally (see spark.session).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

PARTITION_COLUMN = "upload_date"
UNLABELLED = "unlabelled"
RAW, MANIFESTS, FEATURES, REJECTS, REDUCED = "raw", "manifests", "features", "rejects", "reduced"
PCA_MODELS, WEIGHTS, ERASURES = "models/pca", "models/weights", "audit/erasures"
TOMBSTONES, LOCKS = "audit/tombstones", "locks"
# Written by the pipeline under the project prefix (the IAM policy grants exactly these).
WRITTEN_PREFIXES = (
    MANIFESTS, FEATURES, REJECTS, REDUCED, PCA_MODELS, WEIGHTS, ERASURES, TOMBSTONES, LOCKS
)  # fmt: skip

# Java-compatible patterns, shared by Spark SQL (regexp_extract, group 1) and Python.
RAW_DATE_PATTERN = r"(?:^|/)raw/upload_date=(\d{4}-\d{2}-\d{2})/"
RAW_LABEL_PATTERN = r"(?:^|/)raw/upload_date=[^/]+/([^/]+)/.+$"

# In each Parquet dataset: a partition's published files, and where writes are staged.
# Both start with '_', so Spark's partition discovery skips them.
PUBLISHED_POINTER, STAGING = "_published.json", "_staging"
PUBLISHED_DATASETS = (FEATURES, REJECTS, REDUCED)
# Datasets published together, by one pointer: a date's features and rejects are one unit.
PUBLISHED_WITH = {REJECTS: FEATURES}

# Under the EMR staging prefix: what every node re-reads when it starts (bootstrap action, lock,
# wheelhouse, TLS certificates; never expires), code packages, EMR's logs. Dagster's step
# launcher writes each run's step files under <staging prefix>/<run id>/.
STAGING_BOOTSTRAP, STAGING_CODE, STAGING_LOGS = "bootstrap", "code", "logs"

_S3_URI = re.compile(r"^s3a?://(?P<bucket>[^/]+)/?(?P<key>.*)$")


def parse_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"upload date must be YYYY-MM-DD, got {value!r}") from None


def staging_uri(bucket: str, prefix: str, *parts: str) -> str:
    """Under the EMR staging prefix: code/, bootstrap/, logs/; Dagster's launcher adds <run_id>/."""
    return "/".join([f"s3://{bucket}", prefix.strip("/"), *(p.strip("/") for p in parts)])


def dataset_partition_uri(dataset_uri: str, date: str) -> str:
    return f"{dataset_uri}/{PARTITION_COLUMN}={parse_date(date).isoformat()}"


def pointer_uri(dataset_uri: str, date: str) -> str:
    return f"{dataset_partition_uri(dataset_uri, date)}/{PUBLISHED_POINTER}"


def staging_attempt_uri(dataset_uri: str, attempt: str) -> str:
    return f"{dataset_uri}/{STAGING}/{attempt}"


def split_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key') of an s3:// or s3a:// URI."""
    match = _S3_URI.match(uri)
    if not match:
        raise ValueError(f"not an S3 URI: {uri!r}")
    return match["bucket"], match["key"]


def path_digest(path: str) -> str:
    """Names an image in keys (tombstones) without spelling its path there."""
    return hashlib.sha256(path.encode()).hexdigest()


def label_of(raw_key: str) -> str:
    """A raw image's label: its folder under the date; files outside any folder are unlabelled."""
    if not re.search(RAW_DATE_PATTERN, raw_key):
        raise ValueError(f"not a raw image key: {raw_key!r}")
    match = re.search(RAW_LABEL_PATTERN, raw_key)
    return match[1] if match else UNLABELLED


@dataclass(frozen=True)
class Dataset:
    """A Parquet dataset partitioned by upload_date; its per-date pointers live in `unit_uri`
    (its own folder, or that of the dataset it is published with)."""

    name: str
    uri: str
    unit_uri: str


@dataclass(frozen=True)
class Layout:
    bucket: str
    prefix: str = ""
    # The Iceberg namespace of the tables (a Glue database on AWS): spark.tables.
    namespace: str = "fruits"

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, *parts: str) -> str:
        """An object key (no scheme, no bucket) under the project prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)

    def uri(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"

    # raw images
    def raw_prefix(self) -> str:
        return self.key(RAW) + "/"

    def raw_date_key(self, date: str) -> str:
        return self.key(RAW, f"{PARTITION_COLUMN}={parse_date(date).isoformat()}") + "/"

    def raw_date_uri(self, date: str) -> str:
        return f"s3://{self.bucket}/{self.raw_date_key(date)}"

    def raw_image_key(self, date: str, label: str, filename: str) -> str:
        return self.raw_date_key(date) + f"{label}/{filename}"

    # outputs, each a Parquet dataset partitioned by upload_date
    def manifests_uri(self) -> str:
        return self.uri(MANIFESTS)

    def manifest_key(self, date: str) -> str:
        partition = f"{PARTITION_COLUMN}={parse_date(date).isoformat()}"
        return self.key(MANIFESTS, partition, "manifest.parquet")

    def manifest_uri(self, date: str) -> str:
        return f"s3://{self.bucket}/{self.manifest_key(date)}"

    def features_uri(self) -> str:
        return self.uri(FEATURES)

    def rejects_uri(self) -> str:
        return self.uri(REJECTS)

    def reduced_uri(self) -> str:
        return self.uri(REDUCED)

    def dataset(self, name: str) -> Dataset:
        if name not in PUBLISHED_DATASETS:
            raise ValueError(f"not a published dataset: {name!r}")
        return Dataset(name, self.uri(name), self.uri(PUBLISHED_WITH.get(name, name)))

    def partition_uri(self, dataset_uri: str, date: str) -> str:
        return dataset_partition_uri(dataset_uri, date)

    # Iceberg tables: `<namespace>.<table>` in the catalog, files under the warehouse
    def warehouse_uri(self) -> str:
        return self.uri(WAREHOUSE)

    def table_uri(self, table: str) -> str:
        return self.uri(WAREHOUSE, self.namespace, table)

    # PCA models, one folder per version
    def pca_models_uri(self) -> str:
        return self.uri(PCA_MODELS)

    def pca_model_uri(self, version: str) -> str:
        return self.uri(PCA_MODELS, version)

    def pca_metadata_key(self, version: str) -> str:
        return self.key(PCA_MODELS, version, "metadata.json")

    def pca_latest_key(self) -> str:
        return self.key(PCA_MODELS, "LATEST")

    def feature_quality_key(self, version: str, extension: str) -> str:
        """The linear probe of a PCA version (spark.probe): its picture (png), figures (json)."""
        return self.key(PCA_MODELS, version, f"feature_quality.{extension}")

    # GDPR erasures, one JSON record each, and a tombstone per erased image that every
    # later publication of its date honours
    def erasure_record_key(self, record_id: str) -> str:
        return self.key(ERASURES, f"{record_id}.json")

    def tombstones_key(self, date: str) -> str:
        return self.key(TOMBSTONES, f"{PARTITION_COLUMN}={parse_date(date).isoformat()}") + "/"

    def tombstone_key(self, date: str, path: str) -> str:
        return self.tombstones_key(date) + path_digest(path)

    # one lock per upload date, held while anything publishes or erases in that date
    def lock_key(self, date: str) -> str:
        return self.key(LOCKS, f"{PARTITION_COLUMN}={parse_date(date).isoformat()}.lock")

    # model weights staged for the cluster (it never downloads them from the internet)
    def weights_uri(self, filename: str) -> str:
        return self.uri(WEIGHTS, filename)
