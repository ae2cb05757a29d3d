"""One process of the ceiling: decode + LiteRT model on image bytes already in memory (or the
model alone on ready tensors, without --images-file), nothing else; or, with --s3-endpoint,
on bytes read from S3 (the keys of --keys-file, the next batch's GETs in flight on
--fetch-threads threads while this one is decoded and scored, as the pipeline's workers do).

The parent starts one of these per core, waits until each prints "ready" (model loaded and
warm), sends "go" to all at once, and reads back images, seconds and CPU seconds from each.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from bootstrap import cli


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bench.model_alone", __doc__)
    parser.add_argument("--model", type=Path, required=True, help="the LiteRT flatbuffer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30, help="the timed window")
    parser.add_argument("--images-file", type=Path, help="pickled list of image bytes to decode")
    parser.add_argument("--s3-endpoint", help="read the images from this S3 endpoint instead")
    parser.add_argument("--region", default="eu-west-1")
    parser.add_argument("--bucket")
    parser.add_argument("--keys-file", type=Path, help="JSON list of the images' keys")
    parser.add_argument("--fetch-threads", type=int, default=16)
    args = parser.parse_args(argv)
    if args.s3_endpoint:
        return from_s3(args)

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


def from_s3(args: Any) -> int:
    """The same loop on bytes fetched from S3, one GET per image."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import numpy as np

    from spark.decode import decode_image
    from spark.model import tflite_predictor
    from spark.storage import new_s3_client

    predict = tflite_predictor(args.model.read_bytes(), args.threads)
    keys: list[str] = json.loads(args.keys_file.read_text())
    s3 = new_s3_client(args.region, args.s3_endpoint, connections=args.fetch_threads)
    pool, batches = ThreadPoolExecutor(args.fetch_threads), ThreadPoolExecutor(1)

    def get(key: str) -> bytes:
        return s3.get_object(Bucket=args.bucket, Key=key)["Body"].read()

    def fetch(n: int) -> Future:
        picked = [keys[(n + i) % len(keys)] for i in range(args.batch)]
        return batches.submit(lambda: list(pool.map(get, picked)))

    predict(np.stack([decode_image(content) for content in fetch(0).result()]))
    print("ready", flush=True)
    sys.stdin.readline()
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    pending = fetch(0)
    while time.perf_counter() - started < args.seconds:
        contents = pending.result()
        pending = fetch(done + args.batch)
        predict(np.stack([decode_image(content) for content in contents]))
        done += args.batch
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    pending.cancel()
    batches.shutdown(wait=True, cancel_futures=True)
    pool.shutdown(wait=True, cancel_futures=True)
    print(json.dumps({"images": done, "seconds": seconds, "cpu_s": cpu_s}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
