"""The images of upload dates, exactly as their manifests list them: the manifest is the input.

The feature step never lists raw/ again: every manifest entry (hidden folders, empty files and
all) becomes exactly one feature row or one reject, and the accounting check compares paths.
Images erased since the manifest was written (tombstones, spark.erasure) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark.layout import PARTITION_COLUMN, Layout

MANIFEST_COLUMNS = ("path", PARTITION_COLUMN, "label", "size_bytes", "etag", "last_modified")
MANIFEST_DDL = (
    f"path string, {PARTITION_COLUMN} string, label string, size_bytes long, etag string, "
    "last_modified string"
)
TOMBSTONE_DDL = "path_sha256 string, upload_sha256 string"
# Tasks of a few seconds, at least two per core: a failed task is retried cheaply, a slow one
# does not hold the stage, and progress (counted as tasks end) moves while the stage runs. Not
# smaller: every task has a fixed cost in the JVM and in its Python worker (PySpark's worker
# re-reads the directories of the zips and of Spark's jar on its path as each task starts),
# which small tasks pay every few images.
IMAGES_PER_TASK = 1024
TASKS_PER_CORE = 2


def tombstoned(s3: Any, layout: Layout, dates: Sequence[str]) -> set[tuple[str, str]]:
    """(path digest, upload digest) of the uploads erased in `dates` (spark.erasure writes one
    key each): one listing per date, whatever the history."""
    erased: set[tuple[str, str]] = set()
    for date in dates:
        prefix = layout.tombstones_key(date)
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=layout.bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", []):
                path_sha256, _, upload_sha256 = obj["Key"][len(prefix) :].partition(".")
                erased.add((path_sha256, upload_sha256))
    return erased


def without_erased(rows: DataFrame, erased: set[tuple[str, str]]) -> DataFrame:
    """`rows` (with path, etag, last_modified) less the erased uploads: a join, so its cost
    does not grow with the number of erasures as a literal list would."""
    if not erased:
        return rows
    keys = rows.sparkSession.createDataFrame(sorted(erased), TOMBSTONE_DDL)
    upload = F.sha2(F.concat_ws("|", F.col("etag"), F.col("last_modified")), 256)
    match = (F.sha2(F.col("path"), 256) == keys["path_sha256"]) & (upload == keys["upload_sha256"])
    return rows.join(F.broadcast(keys), match, "left_anti")


def manifest_images(
    spark: SparkSession,
    layout: Layout,
    dates: Sequence[str],
    erased: set[tuple[str, str]] | None = None,
    images: int | None = None,
) -> DataFrame:
    """path, upload_date, label, size_bytes, etag of every image the manifests of `dates` list,
    spread over tasks of about IMAGES_PER_TASK images (`images`: the total, when known)."""
    uris = [layout.manifest_uri(d) for d in sorted(set(dates))]
    if not uris:
        return spark.createDataFrame([], MANIFEST_DDL)
    # Each file carries its upload_date column; no partition discovery from the paths.
    rows = (
        spark.read.schema(MANIFEST_DDL)
        .option("basePath", layout.manifests_uri())
        .parquet(*uris)
        .select(*MANIFEST_COLUMNS)
    )
    rows = without_erased(rows, erased or set())
    return rows.repartition(task_count(images, spark.sparkContext.defaultParallelism))


def task_count(images: int | None, cores: int) -> int:
    """Tasks for `images` (None: not known) on `cores`: about IMAGES_PER_TASK images each, at
    least TASKS_PER_CORE per core."""
    return max(TASKS_PER_CORE * cores, math.ceil((images or 0) / IMAGES_PER_TASK))
