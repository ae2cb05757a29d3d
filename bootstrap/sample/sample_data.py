"""Sample data on S3: synthetic fruit photos, or a real Fruits-360 folder.

    python -m bootstrap.sample.sample_data generate [--dates 2026-11-20,2026-11-21,2026-11-22]
    python -m bootstrap.sample.sample_data import-fruits360 path/to/Training \
        --upload-date 2026-11-23

Both write raw/upload_date=YYYY-MM-DD/<label>/<file> under the configured bucket.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bootstrap import cli
from bootstrap.aws.buckets import ensure_bucket
from bootstrap.sample.fruit_images import LABELS, encode_jpeg, render_fruit
from fruits_assets.deployments import current_settings
from spark.layout import Layout, parse_date
from spark.settings import Settings
from spark.storage import SSE, s3_client

DEFAULT_DATES = ("2026-11-20", "2026-11-21", "2026-11-22")
FRUITS360_SIZE = (100, 100)
PHONE_SIZE = (1280, 960)


@dataclass(frozen=True)
class SampleFile:
    date: str
    label: str
    name: str
    body: bytes
    decodable: bool = True


def photo_name(kind: str, date: str, n: int) -> str:
    """A synthetic photo's file name. Each render is a separate object, so its stem must not
    end in what feature_quality's probe groups by (`probe_group_pattern` strips trailing
    `_<number>` frame numbers, as in Fruits-360's `r_12_100.jpg`): "photo0007" ends in no
    frame number, and the date keeps photos of different dates apart."""
    return f"{kind}_{date}_photo{n:04d}.jpg"


def synthetic_files(
    dates: Iterable[str], per_date: int, phone_per_date: int, seed: int, broken: bool = True
) -> Iterator[SampleFile]:
    """Mostly 100x100 photos, a few 1280x960 ones; with `broken`, two undecodable files
    on the first date, so that the demo shows how rejects are recorded."""
    rng = np.random.default_rng(seed)
    for day, date in enumerate(sorted(dates)):
        parse_date(date)
        for n in range(per_date):
            label = LABELS[n % len(LABELS)]
            image = render_fruit(label, rng, FRUITS360_SIZE)
            yield SampleFile(date, label, photo_name(label, date, n), encode_jpeg(image))
        for n in range(phone_per_date):
            label = LABELS[int(rng.integers(len(LABELS)))]
            image = render_fruit(label, rng, PHONE_SIZE)
            yield SampleFile(
                date, label, photo_name("phone", date, n), encode_jpeg(image, quality=85)
            )
        if broken and day == 0:
            whole = encode_jpeg(render_fruit(LABELS[0], rng, FRUITS360_SIZE))
            yield SampleFile(
                date, LABELS[0], "truncated_upload.jpg", whole[: len(whole) // 3], False
            )
            yield SampleFile(date, LABELS[1], "not_an_image.jpg", b"this is a text file\n", False)


def fruits360_files(
    training_dir: Path, date: str, limit_per_label: int | None
) -> Iterator[SampleFile]:
    """Training/<label>/*.jpg of a Fruits-360 checkout, under one upload date."""
    parse_date(date)
    if not training_dir.is_dir():
        raise SystemExit(f"not a folder: {training_dir}")
    for label_dir in sorted(p for p in training_dir.iterdir() if p.is_dir()):
        images = sorted(
            p for p in label_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
        )
        for path in images[:limit_per_label]:
            yield SampleFile(date, label_dir.name, path.name, path.read_bytes())


def upload(files: Iterable[SampleFile], settings: Settings, threads: int = 8) -> dict[str, int]:
    """Upload to raw/; returns the number of files per date."""
    client = s3_client(settings)
    ensure_bucket(client, settings.bucket, settings.region)
    layout = Layout.of(settings)
    per_date: dict[str, int] = {}

    def put(file: SampleFile) -> SampleFile:
        key = layout.raw_image_key(file.date, file.label, file.name)
        client.put_object(Bucket=settings.bucket, Key=key, Body=file.body, **SSE)
        return file

    with ThreadPoolExecutor(threads) as pool:
        for file in pool.map(put, files):  # .map re-raises the first upload error
            per_date[file.date] = per_date.get(file.date, 0) + 1
    return per_date


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.sample.sample_data", __doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="synthetic fruit photos")
    generate.add_argument(
        "--dates", default=",".join(DEFAULT_DATES), help="comma-separated YYYY-MM-DD"
    )
    generate.add_argument("--per-date", type=int, default=60, help="100x100 photos per date")
    generate.add_argument("--phone-per-date", type=int, default=2, help="1280x960 photos per date")
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument(
        "--no-broken", action="store_true", help="leave out the two undecodable files"
    )
    fruits360 = commands.add_parser("import-fruits360", help="a real Fruits-360 Training/ folder")
    fruits360.add_argument("training_dir", type=Path)
    fruits360.add_argument("--upload-date", required=True)
    fruits360.add_argument("--limit-per-label", type=int, default=None)
    args = parser.parse_args(argv)

    settings = current_settings()
    if args.command == "generate":
        dates = [d.strip() for d in args.dates.split(",") if d.strip()]
        files = synthetic_files(
            dates, args.per_date, args.phone_per_date, args.seed, not args.no_broken
        )
    else:
        files = fruits360_files(args.training_dir, args.upload_date, args.limit_per_label)
    counts = upload(files, settings)
    layout = Layout.of(settings)
    for date, count in sorted(counts.items()):
        print(f"{count:6d} files -> {layout.raw_date_uri(date)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
