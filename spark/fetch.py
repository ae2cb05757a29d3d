"""Image bytes for the Python workers: one GET per manifest entry, many in flight at once.

Workers fetch the objects the manifest lists themselves (the default credential chain: the
instance profile on EMR, the environment locally), rather than through Spark's binaryFile
source: no listing, no HEAD, one request per image, the exact version the manifest recorded
(If-Match on its ETag), and latency hidden behind a bounded pool of concurrent GETs.

botocore's SigV4 signer signs each GET and urllib3 sends it: boto3's whole request pipeline
(its event hooks, parsers and endpoint resolution) would cost about twice the CPU, per image.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import boto3
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

from spark.decode import DecodeError, check_extension
from spark.layout import split_uri
from spark.settings import Settings
from spark.storage import new_s3_client

# Per Python worker process: credentials, a connection pool (both thread-safe), the endpoint.
_CLIENTS: dict[tuple[str, str | None, int], tuple[Any, urllib3.PoolManager, str]] = {}
_CLIENTS_LOCK = threading.Lock()
GONE, CHANGED = 404, 412
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

    def client(self) -> tuple[Any, urllib3.PoolManager, str]:
        """The worker's credentials (the default chain, refreshed when they expire), a
        connection pool, and the S3 endpoint boto3 resolves (AWS_ENDPOINT_URL_S3 included),
        one each per worker."""
        key = (self.region, self.endpoint, self.concurrency)
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                session = boto3.session.Session()
                credentials = session.get_credentials()
                if credentials is None:
                    raise S3ReadError("no AWS credentials for S3 in this worker")
                endpoint = new_s3_client(self.region, self.endpoint, session=session).meta
                pool = urllib3.PoolManager(
                    maxsize=self.concurrency,
                    retries=RETRIES,
                    timeout=urllib3.Timeout(connect=5, read=60),
                )
                _CLIENTS[key] = (credentials, pool, endpoint.endpoint_url.rstrip("/"))
            return _CLIENTS[key]

    def object_url(self, bucket: str, key: str) -> str:
        """On AWS's own endpoint, the bucket's regional virtual host (the global host redirects
        a new bucket's requests, and a redirect breaks the signature); path style elsewhere."""
        endpoint = self.client()[2]
        quoted = quote(key, safe="/~")
        if endpoint == f"https://s3.{self.region}.amazonaws.com":
            return f"https://{bucket}.s3.{self.region}.amazonaws.com/{quoted}"
        return f"{endpoint}/{bucket}/{quoted}"

    def signed_request(self, path: str, etag: str) -> tuple[str, dict[str, str]]:
        """The GET's URL and its SigV4 headers, If-Match among the signed ones. Signed in the
        header, not presigned: IAM-checking S3 stand-ins verify header signatures only."""
        bucket, key = split_uri(path)
        credentials = self.client()[0]
        request = AWSRequest("GET", self.object_url(bucket, key), {"If-Match": f'"{etag}"'})
        S3SigV4Auth(credentials.get_frozen_credentials(), "s3", self.region).add_auth(request)
        return request.url, dict(request.headers.items())

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
        url, headers = self.signed_request(path, etag)
        response = self.client()[1].request("GET", url, headers=headers)
        if response.status == 200:
            return response.data
        if response.status == GONE:
            raise Unfetchable("no longer in S3 (deleted after the manifest was listed)")
        if response.status == CHANGED:
            raise Unfetchable(
                "changed after the manifest was listed (ETag differs); the next run takes it"
            )
        raise S3ReadError(f"GET {path}: HTTP {response.status}: {response.data[:300]!r}")
