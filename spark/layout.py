"""The one module that owns the S3 layout of the pipeline.

    s3://<bucket>/<prefix>/raw/upload_date=YYYY-MM-DD/<label>/<file>
    s3://<bucket>/<prefix>/manifests/upload_date=YYYY-MM-DD/manifest.parquet
    s3://<bucket>/<prefix>/warehouse/<namespace>/features/{data,metadata}/   (Iceberg tables:
    s3://<bucket>/<prefix>/warehouse/<namespace>/reduced/{data,metadata}/     spark.tables)
    s3://<bucket>/<prefix>/models/pca/<version>/        (PCAModel.save + metadata.json)
    s3://<bucket>/<prefix>/models/pca/LATEST            (the published version)
    s3://<bucket>/<prefix>/models/pca/<version>/feature_quality.{png,json}  (its linear probe)
    s3://<bucket>/<prefix>/audit/erasures/<id>.json      (one record per GDPR erasure)
    s3://<bucket>/<prefix>/audit/tombstones/upload_date=YYYY-MM-DD/<sha256 of path>.<sha256 of
        the upload's ETag and time>   (an erased upload: a later upload at the path is new)

URIs use the `s3://` scheme: EMRFS on EMR, S3A locally (see spark.session).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

PARTITION_COLUMN = "upload_date"
UNLABELLED = "unlabelled"
RAW, MANIFESTS, WAREHOUSE = "raw", "manifests", "warehouse"
PCA_MODELS, WEIGHTS, ERASURES = "models/pca", "models/weights", "audit/erasures"
TOMBSTONES = "audit/tombstones"
# Written by the pipeline under the project prefix (the IAM policy grants exactly these).
WRITTEN_PREFIXES = (MANIFESTS, WAREHOUSE, PCA_MODELS, WEIGHTS, ERASURES, TOMBSTONES)

# Java-compatible patterns, shared by Spark SQL (regexp_extract, group 1) and Python.
RAW_DATE_PATTERN = r"(?:^|/)raw/upload_date=(\d{4}-\d{2}-\d{2})/"
RAW_LABEL_PATTERN = r"(?:^|/)raw/upload_date=[^/]+/([^/]+)/.+$"

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


def split_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key') of an s3:// or s3a:// URI."""
    match = _S3_URI.match(uri)
    if not match:
        raise ValueError(f"not an S3 URI: {uri!r}")
    return match["bucket"], match["key"]


def path_digest(path: str) -> str:
    """Names an image in keys (tombstones) without spelling its path there."""
    return hashlib.sha256(path.encode()).hexdigest()


def upload_digest(etag: str, last_modified: str) -> str:
    """Names one upload at a path: a later upload at the same path is another one. Spark
    computes the same (spark.images)."""
    return hashlib.sha256(f"{etag}|{last_modified}".encode()).hexdigest()


def label_of(raw_key: str) -> str:
    """A raw image's label: its folder under the date; files outside any folder are unlabelled."""
    if not re.search(RAW_DATE_PATTERN, raw_key):
        raise ValueError(f"not a raw image key: {raw_key!r}")
    match = re.search(RAW_LABEL_PATTERN, raw_key)
    return match[1] if match else UNLABELLED


@dataclass(frozen=True)
class Layout:
    bucket: str
    prefix: str = ""
    # The Iceberg namespace of the tables (a Glue database on AWS): spark.tables.
    namespace: str = "fruits"

    @classmethod
    def of(cls, settings: Any) -> Layout:
        """The layout of a spark.settings.Settings."""
        return cls(settings.bucket, settings.prefix, settings.namespace)

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

    # manifests: one Parquet file per date, the feature step's input
    def manifests_uri(self) -> str:
        return self.uri(MANIFESTS)

    def manifest_key(self, date: str) -> str:
        partition = f"{PARTITION_COLUMN}={parse_date(date).isoformat()}"
        return self.key(MANIFESTS, partition, "manifest.parquet")

    def manifest_uri(self, date: str) -> str:
        return f"s3://{self.bucket}/{self.manifest_key(date)}"

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

    def tombstone_key(self, date: str, path: str, upload: str) -> str:
        """`upload`: upload_digest of the erased upload's ETag and time."""
        return self.tombstones_key(date) + f"{path_digest(path)}.{upload}"

    # model weights staged for the cluster (it never downloads them from the internet)
    def weights_uri(self, filename: str) -> str:
        return self.uri(WEIGHTS, filename)
