"""What the feature step cannot spend less CPU on, on this machine, besides decode + model:
issue 22's CPU target (pipeline <= 1.15 x decode + model alone) is reachable only if these
floors leave room for it.

- the GET floor: one SigV4-signed GET per image (If-Match, as the workers sign it) over a
  kept-alive HTTP/1.1 connection with Python's http.client, one after another: the least a
  Python process can do to read an image from S3;
- the Spark floor: the pipeline's Spark work with no image in it: the manifest's rows (the
  pipeline's own reader and task split) through an iterator pandas UDF that returns a fixed
  1280-float vector per row, cached, counted and staged in the features table (then
  discarded), measured like the pipeline's runs (driver, JVM and Python workers).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from spark.fetch import ImageSource
from spark.layout import Layout


def get_floor_ms(source: ImageSource, paths: list[str], etags: list[str]) -> float:
    """CPU ms per image of the bare GETs, in this process (nothing else runs in it then)."""
    endpoint = urlsplit(source.object_url("b", "k"))
    connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=60)
    started = time.process_time()
    try:
        for path, etag in zip(paths, etags, strict=True):
            url, headers = source.signed_request(path, etag)
            parts = urlsplit(url)
            connection.request("GET", parts.path, headers=headers)
            answer = connection.getresponse()
            if answer.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {answer.status}")
            answer.read()
    finally:
        connection.close()
    return 1000 * (time.process_time() - started) / len(paths)


def constant_features(spark: Any, layout: Layout, date: str, images: int) -> Any:
    """The manifest's rows of `date` with a fixed feature vector each, through Python workers
    as the pipeline's UDF returns them (its result type)."""
    from pyspark.sql import functions as F

    from spark.featurize import FEATURE_DIM, RESULT_TYPE
    from spark.images import manifest_images

    vector = np.linspace(0, 1, FEATURE_DIM, dtype=np.float32)

    @F.pandas_udf(RESULT_TYPE)
    def fixed(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for paths in batches:
            yield pd.DataFrame({"features": [vector] * len(paths), "error": [None] * len(paths)})

    rows = manifest_images(spark, layout, [date], None, images)
    return (
        rows.withColumn("_result", fixed(F.col("path")))
        .withColumn("features", F.col("_result.features"))
        .withColumn("error", F.col("_result.error"))
        .drop("_result")
        .withColumn("weights_source", F.lit("floor"))
        .withColumn("weights_sha256", F.lit("0" * 64))
        .withColumn("reject_reason", F.col("error"))
    )


def spark_floor(spark: Any, layout: Layout, date: str, images: int) -> None:
    """constant_features cached, counted and staged as stage_features does; then discarded."""
    from pyspark import StorageLevel

    from spark import tables

    scored = constant_features(spark, layout, date, images).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        scored.count()
        staged = tables.stage(spark, tables.table(layout, tables.FEATURES), scored, [date])
        tables.discard(spark, staged)
    finally:
        scored.unpersist()
