"""MobileNetV2 (no top, average pooling: 1280 features) and where its weights come from.

Weights are loaded on the driver only; workers rebuild the architecture and receive the
weights by broadcast (see spark.featurize).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spark.decode import INPUT_SIZE
from spark.layout import split_uri
from spark.settings import ENGINES, ConfigError, user_cache

FEATURE_DIM = 1280
IMAGENET = "imagenet"
RANDOM = "random"
TFLITE, KERAS = ENGINES
# How many times this process loaded weights from their source (the benchmark counts them).
WEIGHT_READS = 0
# The file Keras downloads for MobileNetV2(weights="imagenet", include_top=False) at 224 px.
IMAGENET_NO_TOP_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@dataclass(frozen=True)
class ModelWeights:
    source: str  # "imagenet", "random:<seed>", or the weights file's path/URI
    arrays: list[np.ndarray]
    sha256: str


def weights_sha256(arrays: list[np.ndarray]) -> str:
    """A digest of the weights themselves (shapes, dtypes, values), whatever file held them."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def configure_tensorflow(intra_op_threads: int) -> None:
    """Thread counts must be set before TensorFlow starts its runtime; later calls are no-ops."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process


def build_mobilenet(weights: str | None = None) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
        include_top=False,
        pooling="avg",
        weights=weights,
    )


_CONVERTED: dict[str, bytes] = {}


def tflite_flatbuffer(arrays: list[np.ndarray]) -> bytes:
    """The model with these weights, converted for LiteRT on the driver: once per process and
    weights, and kept in the user's cache for the next processes (converting costs seconds of
    CPU that every run of a deployment, every Dagster run here, would pay again)."""
    import tensorflow as tf

    key = f"{weights_sha256(arrays)}-tf{tf.__version__}"  # another converter, another model
    if key not in _CONVERTED:
        cached = converted_cache() / f"{key}.tflite"
        try:
            _CONVERTED[key] = cached.read_bytes()
        except OSError:
            _CONVERTED[key] = _convert(arrays)
            _keep(cached, _CONVERTED[key])
    return _CONVERTED[key]


def converted_cache() -> Path:
    return user_cache(TFLITE)


def _convert(arrays: list[np.ndarray]) -> bytes:
    import contextlib
    import io

    import tensorflow as tf

    model = build_mobilenet(None)
    model.set_weights(arrays)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its signatures
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _keep(path: Path, flatbuffer: bytes) -> None:
    """Written whole or not at all (a rename), so that a reader never loads half a model;
    best effort: a cache that cannot be written costs a conversion, not the run."""
    partial = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as partial:
            partial.write(flatbuffer)
        os.replace(partial.name, path)
    except OSError:
        if partial is not None:
            Path(partial.name).unlink(missing_ok=True)


def tflite_predictor(flatbuffer: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """LiteRT's interpreter (XNNPACK kernels) on the converted model; no TensorFlow needed.

    One image per invoke: XNNPACK gains nothing from larger batches on a CPU (its kernels are
    per image; a large input only costs cache), and a fixed input shape never pays for
    re-planning.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=threads)
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(source, [1, INPUT_SIZE, INPUT_SIZE, 3])
    interpreter.allocate_tensors()

    def predict(batch: np.ndarray) -> np.ndarray:
        outputs = np.empty((len(batch), FEATURE_DIM), dtype=np.float32)
        for i, image in enumerate(np.asarray(batch, dtype=np.float32)):
            interpreter.set_tensor(source, image[np.newaxis])
            interpreter.invoke()
            outputs[i] = interpreter.get_tensor(target)[0]
        return outputs

    return predict


def compiled_predictor(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A traced inference function: one graph for every batch size, no Python per layer."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32)])
    def predict(batch: Any) -> Any:
        return model(batch, training=False)

    return lambda batch: predict(batch).numpy()


def _random_model(seed: int) -> Any:
    """Seeded He-normal convolution kernels. Keras's default initialisation makes the signal
    vanish through MobileNetV2's 50-odd layers (features around 1e-12), which would make
    every numerical comparison in the tests pass trivially; these give features of order 1."""
    model = build_mobilenet(None)
    rng = np.random.default_rng(seed)
    arrays = []
    for variable in model.weights:
        array = np.asarray(variable)
        if array.ndim == 4:  # (kh, kw, in, out) kernels; depthwise ones see one channel each
            kh, kw, channels, _ = array.shape
            fan_in = kh * kw * (1 if "depthwise" in variable.path else channels)
            array = rng.normal(0.0, np.sqrt(2.0 / fan_in), array.shape).astype(np.float32)
        arrays.append(array)
    model.set_weights(arrays)
    return model


def _file_model(local_path: str, source: str) -> Any:
    model = build_mobilenet(None)
    try:
        model.load_weights(local_path)
    except (ValueError, KeyError, OSError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise ConfigError(
            f"weights file {source} does not fit MobileNetV2 (no top): {first_line}"
        ) from None
    return model


def load_weights(source: str, seed: int = 42, s3: Any = None) -> ModelWeights:
    """Load the weights once, on the driver.

    `source`: "imagenet" (official Keras weights, downloaded here), "random" (seeded), or a
    local path / s3:// URI of a Keras weights file (.weights.h5, or the legacy .h5 that
    Keras publishes). `s3` is a boto3 client, needed for s3:// sources.
    """
    if source == IMAGENET:
        model, label = build_mobilenet(IMAGENET), IMAGENET
    elif source == RANDOM:
        model, label = _random_model(seed), f"{RANDOM}:{seed}"
    elif source.startswith(("s3://", "s3a://")):
        if s3 is None:
            raise ConfigError(f"an S3 client is needed to read weights from {source}")
        bucket, key = split_uri(source)
        suffix = ".weights.h5" if key.endswith(".weights.h5") else ".h5"
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "weights" + suffix)
            try:
                s3.download_file(bucket, key, local)
            except Exception as error:  # botocore's ClientError and connection errors
                raise ConfigError(f"cannot read weights {source}: {error}") from None
            model, label = _file_model(local, source), source
    elif os.path.isfile(source):
        model, label = _file_model(source, source), source
    else:
        raise ConfigError(
            f"weights source {source!r} is neither imagenet, random, nor an existing file"
        )
    global WEIGHT_READS
    WEIGHT_READS += 1
    arrays = [np.asarray(w) for w in model.get_weights()]
    return ModelWeights(source=label, arrays=arrays, sha256=weights_sha256(arrays))
