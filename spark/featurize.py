"""MobileNetV2 features in Spark: weights broadcast once, model cached per Python worker."""

from __future__ import annotations

import re
import resource
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import Accumulator, AccumulatorParam, Broadcast
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from spark.decode import DecodeError, decode_image
from spark.fetch import ImageSource, Unfetchable
from spark.layout import RAW_DATE_PATTERN
from spark.model import (
    ENGINES,
    FEATURE_DIM,
    TFLITE,
    ModelWeights,
    build_mobilenet,
    compiled_predictor,
    configure_tensorflow,
    tflite_flatbuffer,
    tflite_predictor,
)
from spark.progress import CountsParam

RESULT_TYPE = StructType(
    [
        StructField("features", ArrayType(FloatType(), containsNull=False)),
        StructField("error", StringType()),
    ]
)

# Per Python worker process: engine, weights digest and threads -> predictor. Spark reuses workers
# across tasks (spark.python.worker.reuse), so each worker builds the model once per run.
_PREDICTORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {}


class MaxParam(AccumulatorParam):
    """Accumulates the largest value seen (Spark's accumulators add by default)."""

    def zero(self, value: float) -> float:
        return 0.0

    def addInPlace(self, value1: float, value2: float) -> float:  # noqa: N802 (Spark's name)
        return max(value1, value2)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class ModelBroadcast:
    """What a worker needs to rebuild the model (weights by broadcast), and what it reports:
    how many times a model was built, the workers' peak memory, and images done per date."""

    engine: str
    payload: Broadcast  # Keras: the weight arrays; LiteRT: the converted model
    sha256: str
    threads: int
    builds: Accumulator
    worker_peak_rss_mb: Accumulator
    images_done: Accumulator  # {upload date: images}, for progress reports

    def predictor(self) -> Callable[[np.ndarray], np.ndarray]:
        key = f"{self.engine}:{self.sha256}:{self.threads}"
        if key not in _PREDICTORS:
            if self.engine == TFLITE:
                _PREDICTORS[key] = tflite_predictor(self.payload.value, self.threads)
            else:
                configure_tensorflow(self.threads)
                model = build_mobilenet(None)
                model.set_weights(self.payload.value)
                _PREDICTORS[key] = compiled_predictor(model)
            self.builds.add(1)
        return _PREDICTORS[key]


def broadcast_model(
    spark: SparkSession,
    weights: ModelWeights,
    *,
    threads: int,
    engine: str = TFLITE,
) -> ModelBroadcast:
    """Everything the workers need, prepared once on the driver and broadcast."""
    if engine not in ENGINES:
        raise ValueError(f"unknown inference engine {engine!r}: one of {ENGINES}")
    sc = spark.sparkContext
    payload = tflite_flatbuffer(weights.arrays) if engine == TFLITE else weights.arrays
    return ModelBroadcast(
        engine=engine,
        payload=sc.broadcast(payload),
        sha256=weights.sha256,
        threads=threads,
        builds=sc.accumulator(0),
        worker_peak_rss_mb=sc.accumulator(0.0, MaxParam()),
        images_done=sc.accumulator({}, CountsParam()),
    )


def upload_dates(paths: list[str]) -> list[str]:
    return [m[1] if (m := re.search(RAW_DATE_PATTERN, p)) else "unknown" for p in paths]


@dataclass
class DecodedBatch:
    size: int
    paths: list[str]
    tensors: list[np.ndarray]
    rows: list[int]  # the batch rows the tensors belong to
    errors: list[str | None]


def load_image(source: ImageSource, path: str, size: int, etag: str) -> np.ndarray | str:
    """The preprocessed tensor, or the reason this image is rejected."""
    if (reason := source.refusal(path, size)) is not None:
        return reason
    try:
        return decode_image(source.get(path, etag), path)
    except (Unfetchable, DecodeError) as error:
        return str(error)


def collect_batch(paths: list[str], loads: list[Future]) -> DecodedBatch:
    """Waits for a batch's loads; an error that is not the image's own fails the task."""
    batch = DecodedBatch(len(paths), paths, [], [], [None] * len(paths))
    for row, load in enumerate(loads):
        result = load.result()
        if isinstance(result, str):
            batch.errors[row] = result
        else:
            batch.tensors.append(result)
            batch.rows.append(row)
    return batch


def loaded_batches(
    batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]], source: ImageSource
) -> Iterator[DecodedBatch]:
    """Fetch and decode batch n+1 in a pool while the model runs on batch n, so S3's latency
    hides behind the model (Pillow, boto3 and LiteRT release the GIL)."""
    with ThreadPoolExecutor(max_workers=source.concurrency) as pool:
        pending: tuple[list[str], list[Future]] | None = None
        for paths, sizes, etags in batches:
            listed = list(paths)
            loads = [
                pool.submit(load_image, source, p, int(s), e)
                for p, s, e in zip(listed, sizes, etags, strict=True)
            ]
            if pending is not None:
                yield collect_batch(*pending)
            pending = (listed, loads)
        if pending is not None:
            yield collect_batch(*pending)


def infer_batch(
    batch: DecodedBatch, predictor: Callable[[], Callable[[np.ndarray], np.ndarray]]
) -> pd.DataFrame:
    """Run the model on the images that decoded; the others keep their reason."""
    features: list[np.ndarray | None] = [None] * batch.size
    if batch.tensors:  # a batch of rejects only never builds the model
        outputs = predictor()(np.stack(batch.tensors))
        for row, vector in zip(batch.rows, outputs, strict=True):
            features[row] = vector.astype(np.float32, copy=False)
    return pd.DataFrame({"features": features, "error": batch.errors})


def features_udf(model: ModelBroadcast, source: ImageSource) -> Callable[..., Column]:
    @F.pandas_udf(RESULT_TYPE)
    def mobilenet_features(
        batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]],
    ) -> Iterator[pd.DataFrame]:
        done: Counter[str] = Counter()
        for batch in loaded_batches(batches, source):
            yield infer_batch(batch, model.predictor)
            done.update(upload_dates(batch.paths))
        model.images_done.add(dict(done))
        model.worker_peak_rss_mb.add(peak_rss_mb())

    return mobilenet_features


def featurize(images: DataFrame, model: ModelBroadcast, source: ImageSource) -> DataFrame:
    """manifest rows (path, size_bytes, etag, ...) -> the same rows plus features and error:
    exactly one row out for each row in."""
    result = features_udf(model, source)(F.col("path"), F.col("size_bytes"), F.col("etag"))
    return (
        images.withColumn("_result", result)
        .withColumn("features", F.col("_result.features"))
        .withColumn("error", F.col("_result.error"))
        .drop("_result")
    )


__all__ = ["FEATURE_DIM", "ImageSource", "ModelBroadcast", "broadcast_model", "featurize"]
