"""The latency proxy: S3 requests by type, counted where they pass; the delay it adds."""

import time

import pytest
from botocore.exceptions import ClientError

from bench.proxy import LatencyProxy, request_type
from spark.storage import new_s3_client


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("GET", "/bucket/raw/a.jpg", {}, "GET"),
        ("GET", "/bucket?list-type=2&prefix=raw/", {}, "LIST"),
        ("GET", "/bucket/", {}, "LIST"),
        ("HEAD", "/bucket/raw/a.jpg", {}, "HEAD"),
        ("PUT", "/bucket/f/part-0.parquet", {}, "PUT"),
        ("PUT", "/bucket/f/b.parquet", {"x-amz-copy-source": "bucket/f/a"}, "COPY"),
        ("PUT", "/bucket/f/a?partNumber=2&uploadId=x", {}, "PUT_PART"),
        ("POST", "/bucket/f/a?uploads", {}, "MULTIPART_START"),
        ("POST", "/bucket/f/a?uploadId=x", {}, "MULTIPART_COMPLETE"),
        ("POST", "/bucket?delete", {}, "DELETE_MANY"),
        ("DELETE", "/bucket/f/a", {}, "DELETE"),
    ],
)
def test_request_types(method: str, path: str, headers: dict, expected: str) -> None:
    assert request_type(method, path, headers) == expected


def test_counts_and_delays_what_passes(local_s3, settings) -> None:
    proxy = LatencyProxy(local_s3.endpoint)
    try:
        client = new_s3_client(settings.region, proxy.url, max_attempts=1, connections=2)
        etag = client.put_object(Bucket=settings.bucket, Key="proxy/a.jpg", Body=b"x" * 100)["ETag"]
        client.head_object(Bucket=settings.bucket, Key="proxy/a.jpg")
        client.list_objects_v2(Bucket=settings.bucket, Prefix="proxy/")
        body = client.get_object(Bucket=settings.bucket, Key="proxy/a.jpg", IfMatch=etag)["Body"]
        assert body.read() == b"x" * 100
        with pytest.raises(ClientError, match="PreconditionFailed"):
            client.get_object(Bucket=settings.bucket, Key="proxy/a.jpg", IfMatch='"other"')
        assert proxy.counts() == {"PUT": 1, "HEAD": 1, "LIST": 1, "GET": 2}
        proxy.reset()
        proxy.set_delay(200)
        started = time.perf_counter()
        client.head_object(Bucket=settings.bucket, Key="proxy/a.jpg")
        assert time.perf_counter() - started >= 0.2
        assert proxy.counts() == {"HEAD": 1}
    finally:
        proxy.stop()
