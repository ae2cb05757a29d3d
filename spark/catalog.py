"""The Iceberg catalog of the pipeline's tables, as Spark properties.

One Spark catalog, CATALOG, over one namespace (a Glue database on AWS) that holds the tables
(spark.tables). Its kind is the
deployment's `catalog_type`:
- `jdbc`: Iceberg's JDBC catalog on PostgreSQL (the local deployment: bootstrap.local.
  local_catalog); a commit is a conditional UPDATE of the table's row, atomic across processes;
- `glue`: the AWS Glue Data Catalog (EMR, with the release's own Iceberg), which Athena reads.
Iceberg's SQL extensions (its procedures: cherrypick_snapshot, expire_snapshots...) are a
static property of the session (spark.session).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from pyspark.sql import SparkSession

from spark.settings import CATALOG_TYPES, ConfigError

CATALOG = "lake"
EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
_JDBC_URI = re.compile(
    r"^jdbc:postgresql://(?P<host>[^:/?]+):(?P<port>\d+)/(?P<database>[^?]+)\?user=(?P<user>\w+)$"
)


class CatalogValues(Protocol):
    region: str
    catalog_type: str
    catalog_uri: str | None
    namespace: str


@dataclass(frozen=True)
class JdbcAddress:
    """The PostgreSQL database of a JDBC catalog: jdbc:postgresql://HOST:PORT/DB?user=USER."""

    host: str
    port: int
    database: str
    user: str

    @classmethod
    def parse(cls, uri: str) -> JdbcAddress:
        match = _JDBC_URI.match(uri)
        if not match:
            raise ConfigError(
                f"catalog_uri must be jdbc:postgresql://HOST:PORT/DATABASE?user=USER, got {uri!r}"
            )
        return cls(match["host"], int(match["port"]), match["database"], match["user"])

    def jdbc_uri(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    def sqlalchemy_uri(self) -> str:
        """The same database for pyiceberg's SqlCatalog (readers outside Spark)."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.database}"


def catalog_conf(values: CatalogValues, warehouse: str) -> dict[str, str]:
    """Spark properties of the catalog CATALOG; `warehouse` is an s3:// URI (each table is
    created with its own location: spark.layout)."""
    key = f"spark.sql.catalog.{CATALOG}"
    conf = {
        key: "org.apache.iceberg.spark.SparkCatalog",
        f"{key}.warehouse": warehouse,
        # Metadata of the pipeline's own tables changes under it (other runs, erasures): a
        # cached table would plan on a stale snapshot.
        f"{key}.cache-enabled": "false",
    }
    if values.catalog_type == "jdbc":
        if not values.catalog_uri:
            raise ConfigError("catalog_type jdbc needs catalog_uri")
        address = JdbcAddress.parse(values.catalog_uri)
        return conf | {
            f"{key}.type": "jdbc",
            f"{key}.uri": address.jdbc_uri(),
            f"{key}.jdbc.user": address.user,
            # The schema that also keeps views; without it Iceberg 1.10 warns of "v0".
            f"{key}.jdbc.schema-version": "V1",
        }
    if values.catalog_type == "glue":
        return conf | {
            f"{key}.type": "glue",
            f"{key}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
            f"{key}.client.region": values.region,
            # Server-side encryption asked for on every object, as the pipeline's boto3 and
            # S3A writes do (a bucket policy may refuse a PUT without it).
            f"{key}.s3.sse.type": "s3",
        }
    raise ConfigError(f"catalog_type must be one of {CATALOG_TYPES}, got {values.catalog_type!r}")


def use_catalog(spark: SparkSession, values: CatalogValues, warehouse: str) -> None:
    """Point CATALOG at the deployment's catalog. Runtime properties: set per run, so that a
    run's configuration (a Launchpad override included) reaches a session that exists
    already; Spark loads the catalog at its first use, with these."""
    for key, value in catalog_conf(values, warehouse).items():
        spark.conf.set(key, value)
