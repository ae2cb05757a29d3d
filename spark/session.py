"""SparkSession construction: local Spark with S3A, or the session EMR already provides."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from spark.catalog import EXTENSIONS, use_catalog
from spark.layout import Layout
from spark.settings import PROJECT_ROOT, ConfigError, Settings

S3A_JARS_DIR = PROJECT_ROOT / ".jars"
# Local Spark's logging (bootstrap/local holds this machine's set-up).
LOCAL_LOG4J = PROJECT_ROOT / "bootstrap" / "local" / "log4j2.properties"
S3A_FILESYSTEM = "org.apache.hadoop.fs.s3a.S3AFileSystem"
# The name of Iceberg's Spark runtime jar (bootstrap/local/jars/pom.xml), a prefix.
ICEBERG_RUNTIME_JAR = "iceberg-spark-runtime-"


def s3a_jars(jars_dir: Path = S3A_JARS_DIR) -> list[Path]:
    jars = sorted(jars_dir.glob("*.jar"))
    if not any(j.name.startswith("hadoop-aws-") for j in jars):
        raise ConfigError(f"S3A jars missing in {jars_dir}: run `make install`")
    return jars


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Hadoop settings that make both s3:// and s3a:// URIs go through S3A.

    On EMR, s3:// is EMRFS and none of this applies. Credentials are not set here: S3A's
    default chain reads them from the environment, so they never appear in Spark's UI.
    """
    conf = {
        "fs.s3.impl": S3A_FILESYSTEM,
        "fs.s3a.impl": S3A_FILESYSTEM,
        "fs.s3a.endpoint.region": settings.region,
        "fs.s3a.server-side-encryption-algorithm": "AES256",
        # Keep directory markers: deleting parents' markers needs rights beyond the pipeline's
        # own prefixes (see bootstrap.aws.iam), and it costs requests.
        "fs.s3a.directory.marker.retention": "keep",
        # Fail fast (seconds, not minutes) when the endpoint is down.
        "fs.s3a.attempts.maximum": "3",
        "fs.s3a.retry.limit": "3",
        "fs.s3a.connection.establish.timeout": "5000",
    }
    if settings.s3_endpoint:
        endpoint = urlparse(settings.s3_endpoint)
        conf |= {
            "fs.s3a.endpoint": settings.s3_endpoint,
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": str(endpoint.scheme == "https").lower(),
        }
    return conf


def spark_conf(settings: Settings) -> dict[str, str]:
    return {
        # Iceberg's procedures (cherrypick_snapshot, expire_snapshots...): static, so set at
        # start; the catalog itself is set per run (spark.catalog.use_catalog).
        "spark.sql.extensions": EXTENSIONS,
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(settings.arrow_batch_size),
        # Python workers are reused across tasks, so the model is built once per worker.
        "spark.python.worker.reuse": "true",
        "spark.sql.session.timeZone": "UTC",
        # upload_date stays the 'YYYY-MM-DD' string it is in paths, not an inferred date.
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


def require_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise ConfigError("Java not found (Spark 3.5 needs Java 17): run `make install`")


def session_conf(settings: Settings, app_name: str = "fruits") -> dict[str, str]:
    """Spark properties of the deployment's session. Locally: local Spark with S3A on
    loopback; elsewhere (EMR) the cluster's own settings apply and only the pipeline's are set."""
    conf = {"spark.app.name": app_name} | spark_conf(settings)
    if settings.deployment == "local":
        conf["spark.master"] = settings.spark_master or "local[2,3]"
        conf["spark.driver.memory"] = settings.spark_driver_memory
        conf["spark.driver.extraJavaOptions"] = f"-Dlog4j.configurationFile={LOCAL_LOG4J}"
        conf["spark.driver.host"] = conf["spark.driver.bindAddress"] = "127.0.0.1"
        conf |= {f"spark.hadoop.{k}": v for k, v in s3a_conf(settings).items()}
    return conf


def prepare_local_spark() -> dict[str, str]:
    """This machine, ready for a local session: Java checked, the environment Spark reads set;
    returns the S3A jars to add (checked only now, so that loading the definitions never
    needs them)."""
    require_java()
    # Workers run the driver's interpreter (the project's .venv), not whatever is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # The Spark UI binds to SPARK_LOCAL_IP (all interfaces otherwise): keep it on loopback.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return {"spark.jars": ",".join(str(j) for j in s3a_jars())}


def start_session(conf: dict[str, str], local: bool) -> SparkSession:
    if local:
        conf = conf | prepare_local_spark()
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def build_session(settings: Settings, app_name: str = "fruits") -> SparkSession:
    """The session outside Dagster (command-line tools, tests), on the deployment's catalog."""
    spark = start_session(session_conf(settings, app_name), settings.deployment == "local")
    use_settings_catalog(spark, settings)
    return spark


def use_settings_catalog(spark: SparkSession, settings: Settings) -> None:
    use_catalog(spark, settings, Layout.of(settings).warehouse_uri())
