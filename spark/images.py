"""Reading raw images: every file under the requested upload dates, one row each."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark import fs
from spark.layout import PARTITION_COLUMN, RAW_DATE_PATTERN, RAW_LABEL_PATTERN, UNLABELLED, Layout

IMAGE_SCHEMA = (
    f"path string, {PARTITION_COLUMN} string, label string, size_bytes long, content binary"
)


def read_images(spark: SparkSession, layout: Layout, dates: Sequence[str]) -> DataFrame:
    """path, upload_date, label, size_bytes, content for every file of those dates.

    Every file is read, not only .jpg/.jpeg/.png: files of other types become recorded
    rejections downstream, so that no upload goes unaccounted for.
    """
    uris = [layout.raw_date_uri(d) for d in sorted(set(dates))]
    present = [u for u in uris if fs.exists(spark, u)]
    if not present:
        return spark.createDataFrame([], IMAGE_SCHEMA)
    label = F.regexp_extract("path", RAW_LABEL_PATTERN, 1)
    return (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load(present)
        .select(
            "path",
            F.regexp_extract("path", RAW_DATE_PATTERN, 1).alias(PARTITION_COLUMN),
            F.when(label == "", F.lit(UNLABELLED)).otherwise(label).alias("label"),
            F.col("length").alias("size_bytes"),
            "content",
        )
    )
