"""Stage the official ImageNet MobileNetV2 (no top) weights on S3, once, where internet exists.

    python -m bootstrap.aws.weights stage        prints the s3:// URI to put in FRUITS_WEIGHTS

Keras downloads the file into its cache (~/.keras/models) on this machine; it is then uploaded
under models/weights/ of the pipeline's prefix. The EMR cluster loads it from there, on the
driver only, and broadcasts it: no node ever downloads weights from the internet.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bootstrap import cli
from fruits_assets.deployments import current_settings
from spark.layout import Layout, split_uri
from spark.model import IMAGENET, IMAGENET_NO_TOP_FILE, build_mobilenet, load_weights
from spark.settings import Settings
from spark.storage import SSE, s3_client


def keras_cache_file() -> Path:
    from keras.src.backend.config import keras_home

    return Path(keras_home()) / "models" / IMAGENET_NO_TOP_FILE


def stage(settings: Settings) -> str:
    build_mobilenet(IMAGENET)  # downloads into the Keras cache unless it is there already
    uri = Layout.of(settings).weights_uri(IMAGENET_NO_TOP_FILE)
    bucket, key = split_uri(uri)
    client = s3_client(settings)
    client.upload_file(str(keras_cache_file()), bucket, key, ExtraArgs=SSE)
    # Read back through the pipeline's own loader: the staged file must load as MobileNetV2.
    load_weights(uri, s3=client)
    return uri


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.aws.weights", __doc__)
    parser.add_argument("command", choices=["stage"])
    parser.parse_args(argv)
    print(stage(current_settings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
