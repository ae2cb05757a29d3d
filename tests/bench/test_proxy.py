"""The latency proxy: S3 requests by type, counted where they pass; the delay it adds."""

import socket
import struct
import threading
import time
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from bench.proxy import LatencyProxy, Proxy, request_type
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


def test_a_client_that_hangs_up_mid_reply_is_no_error(local_s3, settings, capsys) -> None:
    """S3FileIO aborts a GET once it has read what it needs: the proxy carries on, silently."""
    client = new_s3_client(settings.region, local_s3.endpoint, max_attempts=1, connections=1)
    client.put_object(Bucket=settings.bucket, Key="proxy/big.bin", Body=b"x" * (16 << 20))
    proxy = Proxy(0, local_s3.endpoint)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        port = proxy.server_address[1]
        via_proxy = new_s3_client(settings.region, f"http://127.0.0.1:{port}", max_attempts=1)
        url = urlsplit(
            via_proxy.generate_presigned_url(
                "get_object", Params={"Bucket": settings.bucket, "Key": "proxy/big.bin"}
            )
        )
        with socket.create_connection(("127.0.0.1", port)) as hung_up:
            hung_up.sendall(
                f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
            )
            assert hung_up.recv(1024).startswith(b"HTTP/1.1 200")
            # Closed with unread data: the kernel resets the connection, as an abort does.
            hung_up.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        head = via_proxy.head_object(Bucket=settings.bucket, Key="proxy/big.bin")
        assert head["ContentLength"] == 16 << 20
        time.sleep(0.5)  # the hung-up reply's thread has failed by now
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert proxy.counts["GET"] == 1
    assert "Traceback" not in capsys.readouterr().err
