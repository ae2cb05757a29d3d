"""The EMR deployment's catalog (catalog_type glue: Iceberg's GlueCatalog with S3FileIO), as
spark.catalog configures it, against moto's Glue and S3, under the instance policy's grants.

moto enforces IAM here (tests/conftest.py `enforcing_moto`): every Glue and S3 call that
Iceberg makes is authorized against the instance role's policy for catalog_type glue, so a Glue
action Iceberg needs and the policy lacks fails the test (moto checks Glue actions, not the
database and tables they are scoped to). What moto cannot show: its UpdateTable ignores
VersionId, so Glue's optimistic concurrency (two writers committing at once) is proved only on
AWS; the JDBC catalog's tests prove it for the local deployment.

The pipeline's own table code (spark.tables) runs on the tests' Spark session, on a second
catalog name set at runtime: the session's `lake` stays the tests' JDBC catalog.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession

from spark import catalog as catalog_module
from spark import tables
from spark.catalog import catalog_conf, use_catalog
from spark.layout import PARTITION_COLUMN, Layout, split_uri
from spark.session import s3a_jars
from spark.settings import Settings

pytestmark = pytest.mark.slow
GLUE_CATALOG = "lake_glue"
# Iceberg's GlueCatalog and S3FileIO on the AWS SDK v2 (bootstrap/local/jars/pom.xml).
AWS_BUNDLE_JAR = "iceberg-aws-bundle-"
NAMESPACE = "fruits_glue"
DATE, OTHER = "2026-03-01", "2026-03-02"
# The SDK v2 default chain (Iceberg's Glue and S3 clients) reads these JVM system properties
# first: the instance principal's keys, for this JVM's SDK v2 clients only (S3A keeps its own).
SDK_KEYS = ("aws.accessKeyId", "aws.secretAccessKey")


@dataclass(frozen=True)
class GlueLake:
    settings: Settings  # catalog_type glue, the enforcing server's endpoint and bucket
    glue: object  # boto3 Glue client, as the instance principal
    s3: object  # boto3 S3 client, as the instance principal

    @property
    def layout(self) -> Layout:
        return Layout.of(self.settings)

    def glue_table(self, name: str) -> dict:
        return self.glue.get_table(DatabaseName=NAMESPACE, Name=name)["Table"]

    def metadata_location(self, name: str) -> str:
        return self.glue_table(name)["Parameters"]["metadata_location"]

    def exists(self, uri: str) -> bool:
        bucket, key = split_uri(uri)
        return self.s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 1

    def data_file_paths(self, target: tables.Table) -> list[str]:
        """The `path` column of every data file under the table's folder, read from S3."""
        bucket, key = split_uri(f"{target.location}/data/")
        paths = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            for obj in page.get("Contents", []):
                body = self.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                paths += pq.read_table(io.BytesIO(body), columns=["path"])["path"].to_pylist()
        return paths


def stand_in_properties(settings: Settings) -> dict[str, str]:
    """What moto needs on top of catalog_conf: its endpoint for Glue and S3, path-style
    addressing (no bucket host names on loopback)."""
    key = f"spark.sql.catalog.{GLUE_CATALOG}"
    assert settings.s3_endpoint
    return {
        f"{key}.glue.endpoint": settings.s3_endpoint,
        f"{key}.s3.endpoint": settings.s3_endpoint,
        f"{key}.s3.path-style-access": "true",
    }


def hadoop_bucket_conf(settings: Settings, key_id: str, secret: str) -> dict[str, str]:
    """S3A for the enforcing server's bucket, as the instance: remove_orphan_files lists the
    table's folder through Hadoop's file system (EMRFS on EMR)."""
    bucket = f"fs.s3a.bucket.{settings.bucket}"
    assert settings.s3_endpoint
    return {
        f"{bucket}.endpoint": settings.s3_endpoint,
        f"{bucket}.access.key": key_id,
        f"{bucket}.secret.key": secret,
    }


@pytest.fixture(scope="module")
def glue_lake(
    spark: SparkSession, enforcing_iam, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GlueLake]:
    """The tables' catalog switched to glue on moto (IAM enforced), for this module's tests."""
    jars = [j.name for j in s3a_jars()]
    assert any(j.startswith(AWS_BUNDLE_JAR) for j in jars), "no Iceberg AWS bundle: make install"
    log = tmp_path_factory.mktemp("glue_moto") / "moto.log"
    with (
        enforcing_iam(log, catalog_type="glue", catalog_uri=None, namespace=NAMESPACE) as server,
        pytest.MonkeyPatch.context() as patch,
    ):
        settings = server.settings
        key_id, secret = server.keys["instance"]
        jvm = spark.sparkContext._jvm
        hadoop = spark.sparkContext._jsc.hadoopConfiguration()
        # spark.tables and spark.catalog name the catalog CATALOG: a second name, so that the
        # session's `lake` (the JDBC catalog of the other tests) is left as it is.
        patch.setattr(catalog_module, "CATALOG", GLUE_CATALOG)
        patch.setattr(tables, "CATALOG", GLUE_CATALOG)
        use_catalog(spark, settings, Layout.of(settings).warehouse_uri())
        for name, value in stand_in_properties(settings).items():
            spark.conf.set(name, value)
        for name, value in zip(SDK_KEYS, (key_id, secret), strict=True):
            jvm.System.setProperty(name, value)
        for name, value in hadoop_bucket_conf(settings, key_id, secret).items():
            hadoop.set(name, value)
        session = boto3.Session(
            aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=settings.region
        )
        try:
            yield GlueLake(
                settings,
                session.client("glue", endpoint_url=settings.s3_endpoint),
                server.s3("instance"),
            )
        finally:
            for name in SDK_KEYS:
                jvm.System.clearProperty(name)
            for name in hadoop_bucket_conf(settings, key_id, secret):
                hadoop.unset(name)
            for name in catalog_conf(settings, "") | stand_in_properties(settings):
                spark.conf.unset(name)


def table_rows(spark: SparkSession, name: str, tag: str, date: str, n: int = 6) -> DataFrame:
    """n rows of a table on one date, each naming its version in its string columns."""
    fill = {"bigint": 10, "array<float>": [1.0, 2.0], "string": tag}
    data = [
        tuple(
            f"s3://b/raw/{date}/img-{i}.jpg" if column == "path"
            else date if column == PARTITION_COLUMN
            else None if column == "reject_reason"
            else fill[kind]
            for column, kind in tables.column_types(name)
        )
        for i in range(n)
    ]  # fmt: skip
    return spark.createDataFrame(data, tables.SCHEMAS[name])


def keep_all(frame: DataFrame) -> DataFrame:
    return frame


def published(spark: SparkSession, target: tables.Table) -> dict[str, set[str]]:
    """Per date on `main`, the versions its rows carry."""
    found: dict[str, set[str]] = {}
    for r in tables.read(spark, target).select(PARTITION_COLUMN, "label").collect():
        found.setdefault(r[PARTITION_COLUMN], set()).add(r["label"])
    return found


def iceberg_metadata_file(spark: SparkSession, target: tables.Table) -> str:
    """The table's current metadata file, as Iceberg itself sees it."""
    row = spark.sql(
        f"SELECT file FROM {target.qualified}.metadata_log_entries ORDER BY timestamp DESC LIMIT 1"
    ).first()
    assert row is not None
    return row["file"]


def test_write_audit_publish_through_glue(spark: SparkSession, glue_lake: GlueLake) -> None:
    """ensure_table, a staged snapshot that readers do not see, its audit, two publications of
    two dates: each commit is Glue's metadata_location swapped to Iceberg's new metadata file."""
    features = tables.table(glue_lake.layout, tables.FEATURES)
    tables.ensure_table(spark, features)
    created = glue_lake.glue_table(tables.FEATURES)
    assert created["Parameters"]["table_type"] == "ICEBERG"
    assert glue_lake.exists(created["Parameters"]["metadata_location"])
    history = [created["Parameters"]["metadata_location"]]

    staged = tables.stage(spark, features, table_rows(spark, tables.FEATURES, "v1", DATE), [DATE])
    assert tables.read_staged(spark, staged).count() == 6  # the audit reads exactly these
    assert staged.counts == {DATE: 6}
    assert tables.current_snapshot(spark, features) is None  # not on main: readers see nothing
    assert tables.read(spark, features).count() == 0
    history.append(glue_lake.metadata_location(tables.FEATURES))

    _, first = tables.publish(spark, staged, keep_all)
    history.append(glue_lake.metadata_location(tables.FEATURES))
    other = tables.stage(
        spark, features, table_rows(spark, tables.FEATURES, "v2", OTHER, n=4), [OTHER]
    )
    _, second = tables.publish(spark, other, keep_all)
    history.append(glue_lake.metadata_location(tables.FEATURES))

    assert len(set(history)) == len(history)  # every commit moved Glue's pointer
    assert all(glue_lake.exists(location) for location in history)
    assert history[-1] == iceberg_metadata_file(spark, features)
    assert tables.current_snapshot(spark, features) == second != first
    assert published(spark, features) == {DATE: {"v1"}, OTHER: {"v2"}}
    assert tables.rows_per_date(tables.read(spark, features)) == {DATE: 6, OTHER: 4}


def test_erasure_through_glue(spark: SparkSession, glue_lake: GlueLake) -> None:
    """DELETE on every branch, expiry of the snapshots that held the row, orphan files removed:
    no data file under the table holds the erased path any more."""
    reduced = tables.table(glue_lake.layout, tables.REDUCED)
    for tag in ("e1", "e2"):
        staged = tables.stage(spark, reduced, table_rows(spark, tables.REDUCED, tag, DATE), [DATE])
        tables.publish(spark, staged, keep_all)
    erased = f"s3://b/raw/{DATE}/img-2.jpg"
    assert glue_lake.data_file_paths(reduced).count(erased) == 2  # both versions hold it
    before = glue_lake.metadata_location(tables.REDUCED)

    assert tables.delete_where(spark, reduced, f"path = '{erased}'") == {"main": 1}
    now = dt.datetime.now(dt.UTC)
    tables.expire_unreferenced(spark, reduced, older_than=now, keep_staged_after=now)
    tables.remove_orphan_files(spark, reduced, now)

    assert glue_lake.metadata_location(tables.REDUCED) != before
    assert len(tables.snapshots(spark, reduced)) == 1
    remaining = glue_lake.data_file_paths(reduced)
    assert erased not in remaining and len(remaining) == 5
