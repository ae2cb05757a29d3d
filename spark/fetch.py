"""Image bytes for the Python workers: one GET per manifest entry, many in flight at once.

Workers fetch the objects the manifest lists themselves, with boto3 (the default credential
chain: the instance profile on EMR, the environment locally), rather than through Spark's
binaryFile source: no listing, no HEAD, one request per image, the exact version the manifest
recorded (If-Match on its ETag), and latency hidden behind a bounded pool of concurrent GETs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from spark.decode import DecodeError, check_extension
from spark.layout import split_uri
from spark.settings import Settings
from spark.storage import new_s3_client

# Per Python worker process: one client per endpoint (boto3 clients are thread-safe).
_CLIENTS: dict[tuple[str, str | None, int], Any] = {}
_CLIENTS_LOCK = threading.Lock()
GONE_CODES = {"NoSuchKey", "404"}
CHANGED_CODES = {"PreconditionFailed", "412"}


class Unfetchable(ValueError):
    """This image cannot be fetched as the manifest listed it; the message is the reason."""


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

    def client(self) -> Any:
        key = (self.region, self.endpoint, self.concurrency)
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                # More retries than the driver's: a throttled GET fails a whole task.
                _CLIENTS[key] = new_s3_client(
                    self.region, self.endpoint, max_attempts=5, connections=self.concurrency
                )
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
        try:
            response = self.client().get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
            return response["Body"].read()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in GONE_CODES:
                raise Unfetchable(
                    "no longer in S3 (deleted after the manifest was listed)"
                ) from None
            if code in CHANGED_CODES:
                raise Unfetchable(
                    "changed after the manifest was listed (ETag differs); the next run takes it"
                ) from None
            raise
