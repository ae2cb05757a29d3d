"""One process of the model-alone ceiling: MobileNetV2 on ready tensors, nothing else.

The parent starts one of these per core, waits until each prints "ready" (model built and
warm), sends "go" to all at once, and reads back images per second from each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=256)
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
    batch = np.random.default_rng(0).uniform(-1, 1, (args.batch, 224, 224, 3)).astype(np.float32)
    predict(batch)
    predict(batch)
    print("ready", flush=True)
    sys.stdin.readline()
    done, started = 0, time.perf_counter()
    while done < args.images:
        predict(batch)
        done += args.batch
    seconds = time.perf_counter() - started
    print(json.dumps({"images": done, "seconds": seconds, "pid": os.getpid()}), flush=True)


if __name__ == "__main__":
    main()
