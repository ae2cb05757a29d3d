"""MobileNetV2 features in Spark: weights broadcast once, model cached per Python worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import Accumulator, Broadcast
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from spark.decode import DecodeError, decode_image
from spark.model import (
    FEATURE_DIM,
    ModelWeights,
    build_mobilenet,
    compiled_predictor,
    configure_tensorflow,
)

RESULT_TYPE = StructType(
    [
        StructField("features", ArrayType(FloatType(), containsNull=False)),
        StructField("error", StringType()),
    ]
)

# Per Python worker process: weights digest -> compiled predictor. Spark reuses workers
# across tasks (spark.python.worker.reuse), so each worker builds the model once per run.
_PREDICTORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {}


@dataclass(frozen=True)
class ModelBroadcast:
    """What a worker needs to rebuild the model: weights by broadcast, and a build counter."""

    weights: Broadcast
    sha256: str
    tf_threads: int
    builds: Accumulator

    def predictor(self) -> Callable[[np.ndarray], np.ndarray]:
        if self.sha256 not in _PREDICTORS:
            configure_tensorflow(self.tf_threads)
            model = build_mobilenet(None)
            model.set_weights(self.weights.value)
            _PREDICTORS[self.sha256] = compiled_predictor(model)
            self.builds.add(1)
        return _PREDICTORS[self.sha256]


def broadcast_model(spark: SparkSession, weights: ModelWeights, tf_threads: int) -> ModelBroadcast:
    sc = spark.sparkContext
    return ModelBroadcast(
        weights=sc.broadcast(weights.arrays),
        sha256=weights.sha256,
        tf_threads=tf_threads,
        builds=sc.accumulator(0),
    )


def featurize_batch(
    paths: pd.Series,
    contents: pd.Series,
    predictor: Callable[[], Callable[[np.ndarray], np.ndarray]],
) -> pd.DataFrame:
    """Decode a batch and run the model on the images that decoded; the others get a reason."""
    tensors: list[np.ndarray] = []
    decoded_rows: list[int] = []
    errors: list[str | None] = [None] * len(paths)
    for row, (path, content) in enumerate(zip(paths, contents, strict=True)):
        try:
            tensors.append(decode_image(content, path))
            decoded_rows.append(row)
        except DecodeError as error:
            errors[row] = str(error)
    features: list[np.ndarray | None] = [None] * len(paths)
    if tensors:  # a batch of rejects only never builds the model
        outputs = predictor()(np.stack(tensors))
        for row, vector in zip(decoded_rows, outputs, strict=True):
            features[row] = vector.astype(np.float32, copy=False)
    return pd.DataFrame({"features": features, "error": errors})


def features_udf(model: ModelBroadcast) -> Callable[[Column, Column], Column]:
    @F.pandas_udf(RESULT_TYPE)
    def mobilenet_features(
        batches: Iterator[tuple[pd.Series, pd.Series]],
    ) -> Iterator[pd.DataFrame]:
        for paths, contents in batches:
            yield featurize_batch(paths, contents, model.predictor)

    return mobilenet_features


def featurize(images: DataFrame, model: ModelBroadcast) -> DataFrame:
    """images (path, content, ...) -> the same rows without content, plus features and error."""
    result = features_udf(model)(F.col("path"), F.col("content"))
    return (
        images.withColumn("_result", result)
        .drop("content")
        .withColumn("features", F.col("_result.features"))
        .withColumn("error", F.col("_result.error"))
        .drop("_result")
    )


__all__ = ["FEATURE_DIM", "ModelBroadcast", "broadcast_model", "featurize", "featurize_batch"]
