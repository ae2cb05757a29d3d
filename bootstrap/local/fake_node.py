"""A node of the fake EMR (bootstrap.local.fake_emr): a folder laid out as a node's file system,
on which the real bootstrap action runs and from which steps run.

    <root>/usr/bin/python3.11            the node's Python: a venv of this machine's 3.11,
                                         created empty (no system site-packages)
    <root>/mnt/var/lib/info/job-flow.json    the cluster's id and layout, as EMR writes it
    <root>/var/log, var/lib/fruits, etc/profile.d, tmp, home/hadoop
    <root>/shims/{aws,sudo}

What a node in a private subnet has and has not: no package index (PIP_NO_INDEX, and an index
URL that answers nothing), S3 through `aws s3 cp`, and root through `sudo`. Both are shims:
the AWS CLI is not installed here (nor in the lock), and the node's folder already belongs to
whoever runs the tests, so `sudo` runs the command as it is. Spark is the cluster's (the host's
pyspark installation standing for /usr/lib/spark): pyspark is importable by the node's
Python only through Spark's own PYTHONPATH, as on EMR.

A node's environment is EMR's: the instance profile's credentials, no region and no endpoint
preset (what the cluster's configuration exports reaches Spark's processes, through
spark-env.sh, only). S3 is reached through the subnet's gateway endpoint (S3Gateway), which is
regional: a request signed for another region (a client given no region signs for us-east-1)
finds no route there. Glue (the catalog of catalog_type glue) through the subnet's interface
endpoint: the S3 server's address, as moto serves Glue there too. Under local-disk encryption
with AwsKms the node asks KMS for its disks' data key at boot (request_disk_key, at the same
address, with the node's credentials): refused without a route to KMS or when the key's
policy and the instance role's (key_use_decision) do not allow it, as on AWS; each call is
recorded in kms_calls.

    python -m bootstrap.local.fake_node aws s3 cp [--recursive] [--only-show-errors] S3_URI PATH
"""

from __future__ import annotations

import functools
import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fruits_assets.deployments.emr import JOB_FLOW_ENV
from spark.layout import split_uri
from spark.settings import PROJECT_ROOT, Settings
from spark.storage import s3_client

NODE_PYTHON = "/usr/bin/python3.11"
NO_INDEX = "http://127.0.0.1:9/no-package-index-on-a-node"
HOST_ENV = ("LANG", "LC_ALL", "JAVA_HOME", "USER")
# What a node gets from its instance profile (IMDS): credentials, nothing else of AWS's.
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
NO_ROUTE = "NoRouteToRegion"
# (command, environment, working folder) -> (exit code, stdout, stderr)
ProcessRunner = Callable[[list[str], dict[str, str], Path], tuple[int, bytes, bytes]]


class BootstrapFailure(Exception):
    """A bootstrap action exited non-zero; the message is EMR's, the output is in `stderr`."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def spark_home() -> Path:
    """The cluster's Spark: the host's pyspark installation (bin/, jars/, python/lib/)."""
    import pyspark

    return Path(pyspark.__file__).parent


def _signed_region(headers: Any, path: str) -> str | None:
    """The region a SigV4 request was signed for (header or presigned query), or None."""
    found = re.search(r"Credential=[^/,&]+/\d{8}/([a-z0-9-]+)/", headers.get("Authorization", ""))
    found = found or re.search(r"X-Amz-Credential=[^&]*?(?:/|%2F)\d{8}(?:/|%2F)([a-z0-9-]+)", path)
    return found[1] if found else None


def s3_requests(method: str, path: str, body: bytes | None) -> list[tuple[str, str, dict]]:
    """What IAM authorizes for one path-style S3 request: (action, resource, condition keys);
    empty for the bucket calls a node does not make (left to the S3 server)."""
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    if not key:
        if method == "HEAD" or (method == "GET" and set(query) <= LIST_QUERY):
            prefix = {"s3:prefix": query["prefix"][0]} if "prefix" in query else {}
            return [("s3:ListBucket", f"arn:aws:s3:::{bucket}", prefix)]
        if method == "POST" and "delete" in query:  # DeleteObjects: each key's DeleteObject
            keys = re.findall(r"<Key>([^<]*)</Key>", (body or b"").decode())
            return [("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{k}", {}) for k in keys]
        return []
    action = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject",
              "POST": "s3:PutObject", "DELETE": "s3:DeleteObject"}[method]  # fmt: skip
    if method == "DELETE" and "uploadId" in query:
        action = "s3:AbortMultipartUpload"
    return [(action, f"arn:aws:s3:::{bucket}/{key}", {})]


LIST_QUERY = {"list-type", "prefix", "delimiter", "continuation-token", "max-keys",
              "encoding-type", "fetch-owner", "start-after", "marker"}  # fmt: skip


def _principals(statement: dict[str, Any]) -> list[str]:
    """The AWS principals a resource policy's statement names ("*" for anyone)."""
    principal = statement.get("Principal", {})
    if principal == "*":
        return ["*"]
    named = principal.get("AWS", []) if isinstance(principal, dict) else []
    return named if isinstance(named, list) else [named]


def key_use_decision(
    key_policy: dict[str, Any],
    identity_policy: dict[str, Any] | None,
    role_arn: str,
    action: str,
    key_arn: str,
    context: dict[str, Any],
) -> str:
    """KMS's decision on a role's use of a key, as AWS documents its evaluation: a Deny in the
    key policy (for the role, its account or anyone) or in the role's identity policy refuses;
    the key policy allows the role itself, or allows the account (`:root`, which lets the
    account's IAM policies decide) and the identity policy allows too. Statements are
    evaluated by bootstrap.aws.iam.decide, conditions included. `identity_policy` None: the
    identity side is not judged (the fake was not given it)."""
    from bootstrap.aws.iam import decide

    account = role_arn.split(":")[4]

    def naming(*principals: str) -> dict[str, Any]:
        chosen = [
            s for s in key_policy.get("Statement", []) if set(_principals(s)) & set(principals)
        ]
        return {"Statement": chosen}

    direct = decide([naming(role_arn, "*")], action, key_arn, context)
    delegated = decide([naming(f"arn:aws:iam::{account}:root", account)], action, key_arn, context)
    identity = "Allow"
    if identity_policy is not None:
        identity = decide([identity_policy], action, key_arn, context)
    if "Deny" in (direct, delegated, identity):
        return "Deny"
    if direct == "Allow" or (delegated == "Allow" and identity == "Allow"):
        return "Allow"
    return "ImplicitDeny"


class _GatewayHandler(BaseHTTPRequestHandler):
    # HTTP/1.1, so that it answers `Expect: 100-continue` as S3 does (S3FileIO's uploads wait
    # seconds for that answer otherwise); every answer carries its Content-Length.
    protocol_version = "HTTP/1.1"
    upstream: str
    region: str
    refused: list[str]  # "<method> <path> signed for <region>", what a test reads
    policy: dict[str, Any] | None  # the nodes' (instance role's) policy, conditions evaluated

    def _forward(self) -> None:
        signed = _signed_region(self.headers, self.path)
        if signed is not None and signed != self.region:
            self._refuse(signed)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        denied = self._denied(body)
        if denied:
            self._answer(403, "AccessDenied", f"not authorized to perform {denied}")
            return
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
        try:
            # The client signed this Host: it goes on unchanged, as through a gateway endpoint.
            connection.putrequest(self.command, self.path, skip_host=True,
                                  skip_accept_encoding=True)  # fmt: skip
            for name, value in self.headers.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(name, value)
        # A HEAD's answer has no body, and its Content-Length is the object's size (S3FileIO
        # reads a file's length there: 0 would make every file look empty).
        upstream_length = answer.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", upstream_length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _denied(self, body: bytes | None) -> str | None:
        """The first request IAM would refuse under `policy` ("action on resource"), or None."""
        from bootstrap.aws.iam import decide

        if self.policy is None:
            return None
        for action, resource, context in s3_requests(self.command, self.path, body):
            asked = context | {"aws:RequestedRegion": self.region}
            if decide([self.policy], action, resource, asked) != "Allow":
                self.refused.append(f"{action} on {resource} {context or ''}".strip())
                return f"{action} on {resource}"
        return None

    def _refuse(self, signed: str) -> None:
        self.refused.append(f"{self.command} {self.path} signed for {signed}")
        message = (
            f"the node's subnet has no route to S3 in {signed}: its S3 gateway endpoint "
            f"serves {self.region} only (a client given no region signs for us-east-1)"
        )
        self._answer(403, NO_ROUTE, message)

    def _answer(self, status: int, code: str, message: str) -> None:
        # Refused before its body was read: the connection cannot carry another request.
        self.close_connection = True
        body = (f"<Error><Code>{code}</Code><Message>{message}</Message></Error>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class S3Gateway:
    """The subnet's S3 gateway endpoint, on 127.0.0.1: requests signed for `region` go on to
    the S3 server (the local one), any other finds no route (403 NoRouteToRegion)."""

    def __init__(self, upstream: str, region: str, policy: dict[str, Any] | None = None) -> None:
        """`policy`: the identity policy of whoever the requests come from (the nodes' instance
        role), evaluated with its conditions (s3:prefix included) before a request goes on."""
        self.refused: list[str] = []
        attributes = {"upstream": upstream, "region": region, "refused": self.refused}
        handler = type("Handler", (_GatewayHandler,), attributes | {"policy": policy})
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        serve = functools.partial(self.http.serve_forever, poll_interval=0.05)
        self.thread = threading.Thread(target=serve, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def __enter__(self) -> S3Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()


class FakeNode:
    def __init__(
        self,
        root: Path,
        settings: Settings,
        instance_id: str = "i-0fake0master",
        credentials: dict[str, str] | None = None,
        s3_gateway: str | None = None,
    ) -> None:
        """`credentials` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): the instance role's, as
        EMR's nodes get them from the instance profile; without, this process's own.
        `s3_gateway`: the endpoint of the subnet's S3Gateway, the only way to S3 from the
        node's processes (without, the S3 server itself)."""
        self.root = root
        self.settings = settings
        self.instance_id = instance_id
        self.credentials = credentials or {}
        self.s3_gateway = s3_gateway or settings.s3_endpoint
        # Each KMS call of the node's boot: "<action> <key>: <outcome>", what a test reads.
        self.kms_calls: list[str] = []

    @property
    def python(self) -> Path:
        return self.root / NODE_PYTHON.lstrip("/")

    @property
    def job_flow_file(self) -> Path:
        return self.root / "mnt" / "var" / "lib" / "info" / "job-flow.json"

    @property
    def shims(self) -> Path:
        return self.root / "shims"

    def _keys(self) -> dict[str, str]:
        """The node's credentials as boto3's arguments (none: the default chain)."""
        if not self.credentials:
            return {}
        return {
            "aws_access_key_id": self.credentials["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": self.credentials["AWS_SECRET_ACCESS_KEY"],
        }

    def s3(self) -> Any:
        """S3 as the node reaches it, with the node's credentials."""
        if not self.credentials:
            return s3_client(self.settings)
        return s3_client(self.settings, boto3.Session(**self._keys()))

    def kms(self) -> Any:
        """KMS as the node reaches it (the subnet's interface endpoint, standing for its
        private DNS: moto serves KMS at the S3 server's address), with the node's credentials;
        EMR's boot agent names the cluster's region."""
        return boto3.client(
            "kms", region_name=self.settings.region, endpoint_url=self.settings.s3_endpoint,
            **self._keys(),
        )  # fmt: skip

    def request_disk_key(
        self, key_arn: str, reaches_kms: bool, decision: Callable[[str], str | None]
    ) -> str | None:
        """The boot's call for the local disks' data key (local-disk encryption with AwsKms):
        GenerateDataKey on the key, refused when the subnet has no route to KMS or when
        `decision` (KMS's, on the instance role: key policy and identity policy) is not Allow
        (None: nothing to judge by, KMS's own answer follows).
        Returns why the node cannot start, or None; every call is recorded in kms_calls."""
        action = "kms:GenerateDataKey"
        if not reaches_kms:
            self.kms_calls.append(f"{action} {key_arn}: no route to KMS")
            return (
                f"On the master instance ({self.instance_id}), local disk encryption could "
                f"not reach KMS in {self.settings.region} to get its data key for {key_arn}: "
                "the subnet has no route to KMS (no NAT or internet gateway, no KMS interface "
                "endpoint with private DNS)"
            )
        if (verdict := decision(action)) not in (None, "Allow"):
            self.kms_calls.append(f"{action} {key_arn}: AccessDeniedException ({verdict})")
            return (
                f"On the master instance ({self.instance_id}), local disk encryption was "
                f"refused a data key: the instance role is not authorized to perform "
                f"{action} on {key_arn} (its key policy and identity policy)"
            )
        try:
            self.kms().generate_data_key(KeyId=key_arn, KeySpec="AES_256")
        except (ClientError, BotoCoreError) as error:
            self.kms_calls.append(f"{action} {key_arn}: {error}")
            return (
                f"On the master instance ({self.instance_id}), local disk encryption could "
                f"not get a data key from {key_arn}: {error}"
            )
        self.kms_calls.append(f"{action} {key_arn}: granted")
        return None

    def on_node(self, value: str) -> str:
        """A configuration value as seen on this node (its Python lives under the root)."""
        return value.replace(NODE_PYTHON, str(self.python))

    # --- provisioning ----------------------------------------------------------------------
    def provision(
        self, cluster_id: str, request: dict[str, Any], created: float, python: bool = True
    ) -> None:
        """The bare node EMR starts from: folders, an empty Python 3.11, job-flow.json
        (python=False: an image without Python 3.11, to test that the action says so)."""
        for folder in ("var/log", "var/lib", "etc/profile.d", "tmp", "home/hadoop"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._write_shims()
        base = shutil.which("python3.11", path="/usr/local/bin:/usr/bin:/bin")
        if base is None:
            raise BootstrapFailure("no python3.11 on this machine for the fake node", "")
        if python:
            subprocess.run([base, "-m", "venv", str(self.python.parent.parent)], check=True)
        self.job_flow_file.parent.mkdir(parents=True, exist_ok=True)
        self.job_flow_file.write_text(json.dumps(self.job_flow(cluster_id, request, created)))

    def job_flow(self, cluster_id: str, request: dict[str, Any], created: float) -> dict:
        """What EMR writes to /mnt/var/lib/info/job-flow.json on every node."""
        fleets = {f["InstanceFleetType"]: f for f in request["Instances"].get("InstanceFleets", [])}

        def first_type(role: str) -> str | None:
            configs = fleets.get(role, {}).get("InstanceTypeConfigs", [{}])
            return configs[0].get("InstanceType")

        return {
            "jobFlowId": cluster_id,
            "jobFlowCreationInstant": int(created * 1000),
            "instanceCount": 1,
            "masterInstanceId": self.instance_id,
            "masterPrivateDnsName": "localhost",
            "masterInstanceType": first_type("MASTER"),
            "slaveInstanceType": first_type("CORE"),
            "hadoopVersion": "3.3.6",
            "instanceFleets": [
                {"instanceFleetType": role, "name": fleet.get("Name")}
                for role, fleet in fleets.items()
            ],
        }

    def _write_shims(self) -> None:
        self.shims.mkdir(parents=True, exist_ok=True)
        aws = (
            f'#!/bin/sh\nPYTHONPATH="{PROJECT_ROOT}" exec "{sys.executable}" '
            f'-m bootstrap.local.fake_node aws "$@"\n'
        )
        shims = {"aws": aws, "sudo": '#!/bin/sh\nexec "$@"\n'}
        for name, text in shims.items():
            (self.shims / name).write_text(text)
            (self.shims / name).chmod(0o755)

    # --- what runs on the node -------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """A node's environment: no package index, the node's credentials, no region; S3
        through the subnet's gateway endpoint, Glue through its interface endpoint."""
        env = {k: v for k, v in os.environ.items() if k in CREDENTIALS or k in HOST_ENV}
        env |= self.credentials
        env |= {
            "PATH": f"{self.shims}:{self.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root / "home" / "hadoop"),
            "TMPDIR": str(self.root / "tmp"),
            "FRUITS_NODE_ROOT": str(self.root),
            JOB_FLOW_ENV: str(self.job_flow_file),
            "PIP_NO_INDEX": "1",
            "PIP_INDEX_URL": NO_INDEX,
            # No ~/.aws/config of this machine's either.
            "AWS_CONFIG_FILE": str(self.root / "home" / "hadoop" / ".aws" / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "home" / "hadoop" / ".aws" / "none"),
        }
        if self.s3_gateway:  # stands for the DNS that sends S3's names to the gateway endpoint
            env["AWS_ENDPOINT_URL_S3"] = self.s3_gateway
        if self.settings.s3_endpoint:
            # The subnet's Glue interface endpoint (the VPC's private DNS for Glue's name): the
            # stand-in is moto, which serves Glue at the S3 server's address. Iceberg's Glue
            # client (AWS SDK v2 in iceberg-aws-bundle) and boto3 both read this variable.
            env["AWS_ENDPOINT_URL_GLUE"] = self.settings.s3_endpoint
        return env

    def step_environment(self) -> dict[str, str]:
        """A step's: the node's Python drives Spark and runs its Python workers."""
        python = str(self.python)
        return self.environment() | {
            "SPARK_HOME": str(spark_home()),
            "PYSPARK_PYTHON": python,
            "PYSPARK_DRIVER_PYTHON": python,
            "SPARK_LOCAL_IP": "127.0.0.1",
        }

    def spark_python_path(self) -> str:
        """Spark's own PYTHONPATH (what spark-submit gives the driver and workers)."""
        lib = spark_home() / "python" / "lib"
        return ":".join(str(p) for p in sorted(lib.glob("*.zip")))

    def run_bootstrap_actions(
        self, request: dict[str, Any], log_uri: str | None, run: ProcessRunner
    ) -> None:
        """Each action of the request, in order, as EMR runs them: its script fetched from S3,
        run with its arguments; stdout and stderr go to the LogUri. The first that fails stops
        the node (BootstrapFailure, with EMR's message)."""
        s3 = self.s3()
        for number, action in enumerate(request.get("BootstrapActions", []), start=1):
            spec = action["ScriptBootstrapAction"]
            folder = self.root / "tmp" / "bootstrap-actions" / str(number)
            folder.mkdir(parents=True, exist_ok=True)
            script = folder / spec["Path"].rsplit("/", 1)[-1]
            try:
                s3.download_file(*split_uri(spec["Path"]), str(script))
            except (ClientError, BotoCoreError) as error:
                raise BootstrapFailure(
                    f"bootstrap action {number}: cannot fetch {spec['Path']}: {error}", ""
                ) from None
            code, stdout, stderr = run(
                ["bash", str(script), *spec.get("Args", [])], self.environment(), folder
            )
            self._upload_action_logs(s3, log_uri, number, stdout, stderr)
            if code != 0:
                raise BootstrapFailure(
                    f"On the master instance ({self.instance_id}), bootstrap action {number} "
                    f"returned a non-zero return code",
                    stderr.decode(errors="replace"),
                )

    def _upload_action_logs(
        self, s3: Any, log_uri: str | None, number: int, stdout: bytes, stderr: bytes
    ) -> None:
        if not log_uri:
            return
        bucket, prefix = split_uri(log_uri.replace("s3n://", "s3://"))
        cluster_id = json.loads(self.job_flow_file.read_text())["jobFlowId"]
        folder = f"{prefix}{cluster_id}/node/{self.instance_id}/bootstrap-actions/{number}"
        for name, data in (("stdout", stdout), ("stderr", stderr)):
            s3.put_object(Bucket=bucket, Key=f"{folder}/{name}.gz", Body=gzip.compress(data))


# --- the `aws` shim ------------------------------------------------------------------------
def aws_s3_cp(args: list[str]) -> int:
    """`aws s3 cp` from S3 to a local path, one object or --recursive, as the AWS CLI does it:
    on error one `fatal error:` line and exit 1."""
    recursive = "--recursive" in args
    region = None
    if "--region" in args:
        at = args.index("--region")
        region, args = args[at + 1], args[:at] + args[at + 2 :]
    source, target = [a for a in args if not a.startswith("--")]
    bucket, key = split_uri(source)
    s3 = boto3.client("s3", region_name=region)  # none: the AWS CLI's default, us-east-1
    try:
        if not recursive:
            s3.download_file(bucket, key, target)
            return 0
        prefix = key if key.endswith("/") or not key else f"{key}/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                local = Path(target, item["Key"][len(prefix) :])
                local.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(local))
    except (ClientError, BotoCoreError) as error:
        print(f"fatal error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:3] != ["aws", "s3", "cp"]:
        print(f"the fake node's aws shim does only `aws s3 cp`, not {args[:3]}", file=sys.stderr)
        return 2
    return aws_s3_cp(args[3:])


if __name__ == "__main__":
    sys.exit(main())
