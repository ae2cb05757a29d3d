"""One process of the ceiling: decode + LiteRT model on image bytes already in memory (or the
model alone on ready tensors, without --images-file), nothing else.

The parent starts one of these per core, waits until each prints "ready" (model loaded and
warm), sends "go" to all at once, and reads back images, seconds and CPU seconds from each.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path

from bootstrap import cli


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bench.model_alone", __doc__)
    parser.add_argument("--model", type=Path, required=True, help="the LiteRT flatbuffer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30, help="the timed window")
    parser.add_argument("--images-file", type=Path, help="pickled list of image bytes to decode")
    args = parser.parse_args(argv)

    import numpy as np

    from spark.decode import decode_image
    from spark.model import tflite_predictor

    predict = tflite_predictor(args.model.read_bytes(), args.threads)
    contents: list[bytes] = pickle.loads(args.images_file.read_bytes()) if args.images_file else []
    ready = np.random.default_rng(0).uniform(-1, 1, (args.batch, 224, 224, 3)).astype(np.float32)

    def next_batch(n: int) -> np.ndarray:
        if not contents:
            return ready
        picked = (contents[(n + i) % len(contents)] for i in range(args.batch))
        return np.stack([decode_image(content) for content in picked])

    predict(next_batch(0))
    print("ready", flush=True)
    sys.stdin.readline()
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < args.seconds:
        predict(next_batch(done))
        done += args.batch
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"images": done, "seconds": seconds, "cpu_s": cpu_s}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
