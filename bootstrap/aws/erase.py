"""GDPR erasure of one image, by path or by content hash:

    python -m bootstrap.aws.erase s3://bucket/fruits/raw/upload_date=2026-11-20/kiwi/a.jpg
    python -m bootstrap.aws.erase --sha256 9f86d08...

Removes it from raw/, features/, rejects/ and reduced/ (its date's partition only), updates
the date's manifest and writes an audit record under audit/erasures/. PCA models fitted
before keep their components (aggregates, not the image); re-fit to drop its influence.

Spark runs here, on this machine: under the `emr` deployment (no S3A here, the Glue catalog's
Iceberg is the cluster's) the erasure runs on the cluster instead, as the Dagster job
erase_image: this command refuses in one line, before any Spark or AWS call, naming the
`dg launch` that does it.
"""

from __future__ import annotations

import argparse
import json
import sys

from bootstrap import cli
from fruits_assets.deployments import current_settings
from fruits_assets.erasure import ERASE_JOB
from spark.erasure import erase_image, find_by_sha256
from spark.layout import Layout
from spark.session import build_session
from spark.settings import ConfigError
from spark.storage import preflight, s3_client


def on_emr(args: argparse.Namespace) -> str:
    """The command that runs the same erasure as a step of the cluster (fruits_assets.erasure)."""
    request = {"path": args.path} if args.path else {"sha256": args.sha256}
    config = json.dumps({"ops": {"erase": {"config": request}}})
    return f"dg launch --job {ERASE_JOB} --config-json '{config}'"


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.aws.erase", __doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("path", nargs="?", help="s3:// path of the raw image")
    target.add_argument("--sha256", help="SHA-256 of the image's bytes")
    args = parser.parse_args(argv)
    settings = current_settings()
    if settings.deployment == "emr":
        raise ConfigError(
            f"under the emr deployment the erasure runs on the cluster: {on_emr(args)}"
        )
    s3 = s3_client(settings)
    preflight(s3, settings)
    layout = Layout.of(settings)
    try:
        path = args.path or find_by_sha256(s3, layout, args.sha256)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    spark = build_session(settings, "fruits-erase")
    try:
        record = erase_image(spark, layout, s3, path, write_grace_hours=settings.write_grace_hours)
    finally:
        spark.stop()
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
