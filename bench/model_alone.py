"""One process of the model-alone ceiling: MobileNetV2 on ready tensors, or decode + model on
image bytes already in memory (--images-file), nothing else.

The parent starts one of these per core, waits until each prints "ready" (model built and
warm), sends "go" to all at once, and reads back images, seconds and CPU seconds from each.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30, help="the timed window")
    parser.add_argument("--images-file", type=Path, help="pickled list of image bytes to decode")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--jit", action="store_true", help="XLA: tf.function(jit_compile=True)")
    parser.add_argument("--engine", choices=["tflite", "keras"], default="tflite")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from spark.model import (
        build_mobilenet,
        compiled_predictor,
        configure_tensorflow,
        load_weights,
        tflite_flatbuffer,
        tflite_predictor,
    )

    configure_tensorflow(args.threads)
    model = build_mobilenet(None)
    model.set_weights(load_weights("random", 42).arrays)
    if args.engine == "tflite":
        predict = tflite_predictor(tflite_flatbuffer(model.get_weights()), args.threads)
    elif args.jit:
        jitted = tf.function(lambda x: model(x, training=False), jit_compile=True)
        predict = lambda batch: jitted(batch).numpy()  # noqa: E731
    else:
        predict = compiled_predictor(model)
    from spark.decode import decode_image

    contents: list[bytes] = pickle.loads(args.images_file.read_bytes()) if args.images_file else []
    ready = np.random.default_rng(0).uniform(-1, 1, (args.batch, 224, 224, 3)).astype(np.float32)

    def next_batch(n: int) -> np.ndarray:
        if not contents:
            return ready
        picked = (contents[(n + i) % len(contents)] for i in range(args.batch))
        return np.stack([decode_image(content) for content in picked])

    predict(next_batch(0))
    predict(next_batch(0))
    print("ready", flush=True)
    sys.stdin.readline()
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < args.seconds:
        predict(next_batch(done))
        done += args.batch
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"images": done, "seconds": seconds, "cpu_s": cpu_s}), flush=True)


if __name__ == "__main__":
    main()
