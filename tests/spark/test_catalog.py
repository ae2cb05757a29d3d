"""spark.catalog: the deployments' catalog properties, and the FileIO the tables get."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spark import tables
from spark.catalog import CATALOG, catalog_conf
from spark.settings import ConfigError

S3_FILE_IO = "org.apache.iceberg.aws.s3.S3FileIO"


def test_both_catalogs_write_table_files_with_iceberg_s3_client(settings) -> None:
    key = f"spark.sql.catalog.{CATALOG}"
    local = catalog_conf(settings, "s3://b/w")
    glue = catalog_conf(replace(settings, catalog_type="glue", s3_endpoint=None), "s3://b/w")
    assert local[f"{key}.io-impl"] == glue[f"{key}.io-impl"] == S3_FILE_IO
    assert local[f"{key}.s3.endpoint"] == settings.s3_endpoint
    assert f"{key}.s3.endpoint" not in glue  # AWS's own endpoint for the region
    assert glue[f"{key}.client.region"] == settings.region


def test_a_jdbc_catalog_needs_a_postgresql_uri(settings) -> None:
    with pytest.raises(ConfigError, match="catalog_uri must be"):
        catalog_conf(replace(settings, catalog_uri="jdbc:sqlite:/tmp/x.db"), "s3://b/w")


def test_the_tables_the_session_loads_use_s3_file_io(spark, fresh_layout) -> None:
    features = tables.table(fresh_layout, tables.FEATURES)
    tables.ensure_table(spark, features)
    jvm = spark.sparkContext._jvm
    table = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(
        spark._jsparkSession, features.qualified
    )
    assert table.io().getClass().getName() == S3_FILE_IO
