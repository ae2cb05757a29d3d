"""Clients that are not this project's code, reading its Iceberg tables as their users would
(the README's snippets): Spark SQL on the catalog, pyiceberg's SQL catalog on the same
database, DuckDB's iceberg extension on the table's current metadata. Each returns the
(path, upload_date, weights_sha256) of every row it sees, sorted: the digest tells apart rows
of the same upload written by different runs (published, superseded or only staged)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

Rows = list[tuple[str, str, str]]
COLUMNS = ("path", "upload_date", "weights_sha256")
SELECTED = ", ".join(COLUMNS)


def spark_sql(spark, namespace: str, table: str) -> Rows:
    frame = spark.sql(f"SELECT {SELECTED} FROM lake.{namespace}.{table}")
    return sorted(tuple(r) for r in frame.collect())


def pyiceberg_catalog(catalog_uri: str, s3_endpoint: str, region: str):
    """pyiceberg's SqlCatalog on the JDBC catalog's database; files through pyarrow's S3."""
    from pyiceberg.catalog.sql import SqlCatalog

    # jdbc:postgresql://HOST:PORT/DB?user=USER -> SQLAlchemy's postgresql+psycopg2://USER@...
    address = urlparse(catalog_uri.removeprefix("jdbc:"))
    user = address.query.removeprefix("user=")
    return SqlCatalog(
        # The name the JDBC catalog's rows carry: Spark's catalog name (`lake`).
        "lake",
        uri=f"postgresql+psycopg2://{user}@{address.hostname}:{address.port}{address.path}",
        **{
            "s3.endpoint": s3_endpoint,
            "s3.region": region,
            "s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"],
            "s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"],
            "s3.force-virtual-addressing": "false",
        },
    )


def pyiceberg(catalog_uri: str, s3_endpoint: str, region: str, namespace: str, table: str) -> Rows:
    catalog = pyiceberg_catalog(catalog_uri, s3_endpoint, region)
    rows = catalog.load_table(f"{namespace}.{table}").scan(selected_fields=COLUMNS).to_arrow()
    return sorted(zip(*(rows[c].to_pylist() for c in COLUMNS), strict=True))


def duckdb_extension(name: str) -> str:
    """DuckDB's extensions ship as Python packages; nothing is downloaded at run time."""
    import duckdb

    package = __import__(f"duckdb_extension_{name}")
    folder = Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    return str(folder / f"{name}.duckdb_extension")


def duckdb_rows(metadata_location: str, s3_endpoint: str, region: str) -> Rows:
    import duckdb

    endpoint = urlparse(s3_endpoint)
    with duckdb.connect() as db:
        for name in ("httpfs", "avro", "iceberg"):
            db.execute(f"LOAD '{duckdb_extension(name)}'")
        db.execute(
            "CREATE SECRET local_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, "
            "URL_STYLE 'path', USE_SSL ?)",
            [
                os.environ["AWS_ACCESS_KEY_ID"],
                os.environ["AWS_SECRET_ACCESS_KEY"],
                region,
                endpoint.netloc,
                endpoint.scheme == "https",
            ],
        )
        found = db.execute(
            f"SELECT {SELECTED} FROM iceberg_scan(?)", [metadata_location]
        ).fetchall()
    return sorted(found)


def duckdb(catalog_uri: str, s3_endpoint: str, region: str, namespace: str, table: str) -> Rows:
    """DuckDB reads the metadata file the catalog names as current (pyiceberg finds it)."""
    catalog = pyiceberg_catalog(catalog_uri, s3_endpoint, region)
    location = catalog.load_table(f"{namespace}.{table}").metadata_location
    return duckdb_rows(location, s3_endpoint, region)


def spark_sql_cli(
    catalog_uri: str,
    s3_endpoint: str,
    region: str,
    namespace: str,
    table: str,
    *,
    jars: str,
    warehouse: str,
    cwd: Path,
) -> Rows:
    """Spark's own SQL shell (`spark-sql`), with Iceberg's runtime and S3A on its class path and
    the catalog given as properties: what a data scientist types."""
    import subprocess
    import sys

    address = urlparse(catalog_uri.removeprefix("jdbc:"))
    catalog = {
        "spark.sql.catalog.lake": "org.apache.iceberg.spark.SparkCatalog",
        "spark.sql.catalog.lake.type": "jdbc",
        "spark.sql.catalog.lake.uri": f"jdbc:{address.scheme}://{address.netloc}{address.path}",
        "spark.sql.catalog.lake.jdbc.user": address.query.removeprefix("user="),
        "spark.sql.catalog.lake.warehouse": warehouse,
        # No Hive metastore of its own (a Derby database in the working folder).
        "spark.sql.catalogImplementation": "in-memory",
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": s3_endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
    }
    spark_sql = Path(sys.executable).parent.parent / "lib" / "python3.11" / "site-packages"
    command = [
        str(spark_sql / "pyspark" / "bin" / "spark-sql"),
        "--master", "local[1]",
        "--jars", jars,
        *[arg for key, value in catalog.items() for arg in ("--conf", f"{key}={value}")],
        "-S", "-e",
        f"SELECT {SELECTED} FROM lake.{namespace}.{table}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)
    if done.returncode:
        raise RuntimeError(f"spark-sql failed: {done.stderr[-3000:]}")
    lines = [line.split("\t") for line in done.stdout.splitlines() if line.startswith("s3://")]
    return sorted((path, date, digest) for path, date, digest in lines)
