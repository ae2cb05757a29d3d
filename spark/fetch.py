"""Image bytes for the Python workers: one GET per manifest entry, many in flight at once.

Workers fetch the objects the manifest lists themselves (the default credential chain: the
instance profile on EMR, the environment locally), rather than through Spark's binaryFile
source: no listing, no HEAD, one request per image, the exact version the manifest recorded
(If-Match on its ETag), and latency hidden behind a bounded pool of concurrent GETs.

botocore signs each GET (a presigned URL: its signing and addressing, as for any boto3 call)
and urllib3 sends it: a whole boto3 get_object costs about twice the CPU, per image.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import urllib3

from spark.decode import DecodeError, check_extension
from spark.layout import split_uri
from spark.settings import Settings
from spark.storage import new_s3_client

# Per Python worker process: one client per endpoint (boto3 clients are thread-safe).
_CLIENTS: dict[tuple[str, str | None, int], tuple[Any, urllib3.PoolManager]] = {}
_CLIENTS_LOCK = threading.Lock()
GONE, CHANGED = 404, 412
URL_EXPIRES_S = 900  # used at once; long enough for the retries below
# More retries than the driver's: a throttled GET (503 SlowDown) fails a whole task.
RETRIES = urllib3.Retry(
    total=5,
    backoff_factor=0.2,
    status_forcelist=(500, 502, 503, 504),
    allowed_methods=frozenset({"GET"}),
    raise_on_status=False,
)


class Unfetchable(ValueError):
    """This image cannot be fetched as the manifest listed it; the message is the reason."""


class S3ReadError(RuntimeError):
    """S3 refused or failed a GET after the retries: the task fails, and Spark retries it."""


@dataclass(frozen=True)
class ImageSource:
    """Where workers fetch images from, and what they refuse without fetching."""

    region: str
    endpoint: str | None
    max_bytes: int
    concurrency: int

    @classmethod
    def of(cls, settings: Settings) -> ImageSource:
        return cls(
            settings.region,
            settings.s3_endpoint,
            settings.max_image_bytes,
            settings.fetch_threads,
        )

    def client(self) -> tuple[Any, urllib3.PoolManager]:
        """boto3's client (it signs) and a connection pool (it sends), one per worker."""
        key = (self.region, self.endpoint, self.concurrency)
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                signer = new_s3_client(self.region, self.endpoint, max_attempts=5)
                pool = urllib3.PoolManager(
                    maxsize=self.concurrency,
                    retries=RETRIES,
                    timeout=urllib3.Timeout(connect=5, read=60),
                )
                _CLIENTS[key] = (signer, pool)
            return _CLIENTS[key]

    def refusal(self, path: str, size: int) -> str | None:
        """Why the image is rejected without reading it, or None."""
        try:
            check_extension(path)
        except DecodeError as error:
            return str(error)
        if size == 0:
            return "empty file (0 bytes)"
        if size > self.max_bytes:
            return f"file too large: {size} bytes, over the limit of {self.max_bytes}"
        return None

    def get(self, path: str, etag: str) -> bytes:
        """The object's bytes, as the manifest listed it. Raises Unfetchable when it is gone or
        changed since; any other error (throttling, S3 down) fails the task, which Spark retries."""
        bucket, key = split_uri(path)
        signer, pool = self.client()
        url = signer.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_EXPIRES_S
        )
        response = pool.request("GET", url, headers={"If-Match": f'"{etag}"'})
        if response.status == 200:
            return response.data
        if response.status == GONE:
            raise Unfetchable("no longer in S3 (deleted after the manifest was listed)")
        if response.status == CHANGED:
            raise Unfetchable(
                "changed after the manifest was listed (ETag differs); the next run takes it"
            )
        raise S3ReadError(f"GET {path}: HTTP {response.status}: {response.data[:300]!r}")
