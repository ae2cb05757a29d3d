"""A stand-in for EMR's control plane, for running the real step-launcher path without AWS.

It speaks EMR's JSON API (the calls the cluster CLI and Dagster's EMR step launcher make) on
loopback, and really runs each step: the exact spark-submit command a step holds, with only
the master switched from YARN to Spark's `local-cluster` (executors in JVMs of their own, each
with its own Python workers, so nothing relies on the driver's memory) and the S3A settings
that make s3:// URIs reach the local S3 server. Steps go PENDING -> RUNNING -> COMPLETED or
FAILED, one at a time per cluster as on EMR, and their stdout and stderr land gzipped under
the cluster's LogUri.

Each cluster starts one node (bootstrap.fake_node): an empty Python 3.11, job-flow.json, and
the request's real bootstrap actions run on it with no package index; steps then run with
that node's Python. Each cluster has its own spark-env.sh, written from the `spark-env` export
classification as EMR does, sourced before every spark-submit; `bash -c` steps that append to
/etc/spark/conf/spark-env.sh append to it.

    python -m bootstrap.fake_emr --port 9071      (foreground; Ctrl-C stops it and its steps)

moto's EMR mock, by contrast, records steps but never runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bootstrap.fake_node import BootstrapFailure, FakeNode, spark_home
from spark.layout import split_uri
from spark.session import s3a_conf, s3a_jars
from spark.settings import Settings
from spark.storage import s3_client

EMR_SPARK_ENV = "/etc/spark/conf/spark-env.sh"
# Two executors of one core each, in JVMs of their own, as YARN would run them.
SPARK_MASTER = "local-cluster[2,1,1024]"
_ids = itertools.count(1)


class EmrApiError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Step:
    id: str
    name: str
    args: list[str]
    action_on_failure: str
    state: str = "PENDING"
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    reason: str = ""

    def describe(self) -> dict[str, Any]:
        timeline = {"CreationDateTime": self.created}
        if self.started:
            timeline["StartDateTime"] = self.started
        if self.ended:
            timeline["EndDateTime"] = self.ended
        status: dict[str, Any] = {
            "State": self.state,
            "StateChangeReason": {},
            "Timeline": timeline,
        }
        if self.reason:
            status["FailureDetails"] = {"Reason": "Step failed", "Message": self.reason}
        return {
            "Id": self.id,
            "Name": self.name,
            "Config": {"Jar": "command-runner.jar", "Args": self.args, "Properties": {}},
            "ActionOnFailure": self.action_on_failure,
            "Status": status,
        }


@dataclass
class Cluster:
    id: str
    request: dict[str, Any]
    conf_dir: Path
    node: FakeNode
    state: str = "STARTING"
    reason: str = ""
    steps: list[Step] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    @property
    def spark_env_file(self) -> Path:
        return self.conf_dir / "spark-env.sh"

    @property
    def log_uri(self) -> str | None:
        return self.request.get("LogUri")

    def spark_env(self) -> dict[str, str]:
        """The `export` properties of the spark-env classification: the steps' environment."""
        for config in self.request.get("Configurations", []):
            if config.get("Classification") == "spark-env":
                for nested in config.get("Configurations", []):
                    if nested.get("Classification") == "export":
                        return dict(nested.get("Properties", {}))
        return {}

    def describe(self) -> dict[str, Any]:
        request = self.request
        return {
            "Id": self.id,
            "Name": request.get("Name", ""),
            "Status": {
                "State": self.state,
                "StateChangeReason": {"Code": "BOOTSTRAP_FAILURE", "Message": self.reason}
                if self.reason
                else {},
                "Timeline": {"CreationDateTime": self.created},
            },
            "LogUri": self.log_uri,
            "ReleaseLabel": request.get("ReleaseLabel"),
            "Applications": request.get("Applications", []),
            "Configurations": request.get("Configurations", []),
            "SecurityConfiguration": request.get("SecurityConfiguration"),
            "AutoTerminate": False,
            "Tags": request.get("Tags", []),
        }


class FakeEmr:
    """The clusters and steps, and the threads that run the steps."""

    def __init__(
        self, settings: Settings, state_dir: Path, spark_master: str = SPARK_MASTER
    ) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.spark_master = spark_master
        self.clusters: dict[str, Cluster] = {}
        self.security_configurations: dict[str, Any] = {}
        self.lock = threading.Condition()
        self.processes: set[subprocess.Popen] = set()
        self.stopping = False

    # --- the API ---------------------------------------------------------------------------
    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            raise EmrApiError(
                "InvalidRequestException", f"the fake EMR does not implement {operation}"
            )
        with self.lock:
            return handler(body)

    def cluster(self, cluster_id: str) -> Cluster:
        if cluster_id not in self.clusters:
            raise EmrApiError("InvalidRequestException", f"Cluster id '{cluster_id}' is not valid.")
        return self.clusters[cluster_id]

    def op_RunJobFlow(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 (API names)
        cluster_id = f"j-FAKE{next(_ids):08d}"
        conf_dir = self.state_dir / cluster_id
        node = FakeNode(conf_dir / "node", self.settings, f"i-0{cluster_id[6:].lower()}")
        cluster = Cluster(id=cluster_id, request=body, conf_dir=conf_dir, node=node)
        cluster.conf_dir.mkdir(parents=True)
        exports = "".join(
            f'export {k}="{node.on_node(v)}"\n' for k, v in cluster.spark_env().items()
        )
        cluster.spark_env_file.write_text(exports)
        self.clusters[cluster.id] = cluster
        threading.Thread(target=self._run_cluster, args=(cluster,), daemon=True).start()
        return {"JobFlowId": cluster.id, "ClusterArn": f"arn:aws:elasticmapreduce:::{cluster.id}"}

    def op_CreateSecurityConfiguration(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        self.security_configurations[body["Name"]] = json.loads(body["SecurityConfiguration"])
        return {"Name": body["Name"], "CreationDateTime": time.time()}

    def op_DescribeSecurityConfiguration(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if body["Name"] not in self.security_configurations:
            raise EmrApiError(
                "InvalidRequestException", f"Security configuration {body['Name']} does not exist"
            )
        document = json.dumps(self.security_configurations[body["Name"]])
        return {
            "Name": body["Name"],
            "SecurityConfiguration": document,
            "CreationDateTime": time.time(),
        }

    def op_DescribeCluster(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {"Cluster": self.cluster(body["ClusterId"]).describe()}

    def op_ListClusters(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {
            "Clusters": [
                {"Id": c.id, "Name": c.request.get("Name", ""), "Status": c.describe()["Status"]}
                for c in self.clusters.values()
            ]
        }

    def op_TerminateJobFlows(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        for cluster_id in body["JobFlowIds"]:
            cluster = self.cluster(cluster_id)
            cluster.state = "TERMINATED"
            for step in cluster.steps:
                if step.state == "PENDING":
                    step.state = "CANCELLED"
        self.lock.notify_all()
        return {}

    def op_AddJobFlowSteps(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        cluster = self.cluster(body["JobFlowId"])
        if cluster.state.startswith("TERMINAT"):
            raise EmrApiError("ValidationException", f"cluster {cluster.id} is {cluster.state}")
        ids = []
        for spec in body["Steps"]:
            step = Step(
                id=f"s-FAKE{next(_ids):08d}",
                name=spec["Name"],
                args=list(spec["HadoopJarStep"].get("Args", [])),
                action_on_failure=spec.get("ActionOnFailure", "CONTINUE"),
            )
            cluster.steps.append(step)
            ids.append(step.id)
        self.lock.notify_all()
        return {"StepIds": ids}

    def op_DescribeStep(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        for step in self.cluster(body["ClusterId"]).steps:
            if step.id == body["StepId"]:
                return {"Step": step.describe()}
        raise EmrApiError("InvalidRequestException", f"Step id '{body['StepId']}' is not valid.")

    def op_ListSteps(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        steps = reversed(self.cluster(body["ClusterId"]).steps)  # EMR lists newest first
        return {"Steps": [s.describe() for s in steps]}

    # --- running the cluster ---------------------------------------------------------------
    def _run_cluster(self, cluster: Cluster) -> None:
        if self._start_node(cluster):
            self._run_steps(cluster)

    def _start_node(self, cluster: Cluster) -> bool:
        """STARTING -> BOOTSTRAPPING -> WAITING, or TERMINATED_WITH_ERRORS when a bootstrap
        action fails (its pending steps cancelled, as EMR does)."""
        try:
            cluster.node.provision(cluster.id, cluster.request, cluster.created)
            with self.lock:
                if cluster.state != "STARTING":  # terminated meanwhile
                    return False
                cluster.state = "BOOTSTRAPPING"
            cluster.node.run_bootstrap_actions(cluster.request, cluster.log_uri, self.run_process)
        except BootstrapFailure as failure:
            with self.lock:
                cluster.state, cluster.reason = "TERMINATED_WITH_ERRORS", str(failure)
                for step in cluster.steps:
                    if step.state == "PENDING":
                        step.state = "CANCELLED"
                self.lock.notify_all()
            return False
        with self.lock:
            if cluster.state == "BOOTSTRAPPING":
                cluster.state = "WAITING"
            self.lock.notify_all()
        return True

    # --- running steps ---------------------------------------------------------------------
    def _run_steps(self, cluster: Cluster) -> None:
        """One step at a time, in order, like an EMR cluster with step concurrency 1."""
        while True:
            with self.lock:
                while (
                    not self.stopping
                    and not cluster.state.startswith("TERMINAT")
                    and not any(s.state == "PENDING" for s in cluster.steps)
                ):
                    self.lock.wait()
                if self.stopping or cluster.state.startswith("TERMINAT"):
                    return
                step = next(s for s in cluster.steps if s.state == "PENDING")
                step.state, step.started, cluster.state = "RUNNING", time.time(), "RUNNING"
            code, stdout, stderr = self._execute(cluster, step)
            self._upload_logs(cluster, step, stdout, stderr)
            with self.lock:
                step.ended = time.time()
                step.state = "COMPLETED" if code == 0 else "FAILED"
                if code != 0:
                    step.reason = f"spark-submit exited with {code}"
                if cluster.state == "RUNNING":
                    cluster.state = "WAITING"

    def local_command(self, cluster: Cluster, args: list[str]) -> list[str]:
        """The step's command as it would run on the master node, with a local master."""
        if args[:2] == ["bash", "-c"] and len(args) == 3:
            script = (
                args[2].replace("sudo ", "").replace(EMR_SPARK_ENV, str(cluster.spark_env_file))
            )
            return ["bash", "-c", script]
        if not args or not args[0].endswith("spark-submit"):
            raise EmrApiError("ValidationException", f"unsupported step command: {args[:2]}")
        # As on a node: spark-submit sources spark-env.sh with every variable exported.
        source_env = 'set -a; . "$0"; set +a; exec "$@"'
        command = ["bash", "-c", source_env, str(cluster.spark_env_file)]
        command += [str(spark_home() / "bin" / "spark-submit")]
        hadoop = s3a_conf(self.settings)
        command += [a for k, v in hadoop.items() for a in ("--conf", f"spark.hadoop.{k}={v}")]
        # On every node's disk, as EMRFS is on EMR's: the driver's and the executors' class path.
        jars = ":".join(str(j) for j in s3a_jars())
        command += ["--driver-class-path", jars, "--conf", f"spark.executor.extraClassPath={jars}"]
        rest = list(args[1:])
        if "--master" in rest:
            rest[rest.index("--master") + 1] = self.spark_master
        return command + rest

    def step_environment(self, cluster: Cluster) -> dict[str, str]:
        """The node's (credentials, the endpoints it reaches as AWS, its Python); what the
        cluster's configuration exports comes from spark-env.sh."""
        return cluster.node.step_environment()

    def _execute(self, cluster: Cluster, step: Step) -> tuple[int, bytes, bytes]:
        try:
            command = self.local_command(cluster, step.args)
        except EmrApiError as error:
            return 1, b"", str(error).encode()
        return self.run_process(command, self.step_environment(cluster))

    def run_process(
        self, command: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> tuple[int, bytes, bytes]:
        """Runs a node's process (a step, a bootstrap action) to its end, or until stop()."""
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # stop() ends the JVMs and Python workers with it
        )
        with self.lock:
            self.processes.add(process)
        try:
            stdout, stderr = process.communicate()
        finally:
            with self.lock:
                self.processes.discard(process)
        return process.returncode, stdout, stderr

    def _upload_logs(self, cluster: Cluster, step: Step, stdout: bytes, stderr: bytes) -> None:
        if not cluster.log_uri:
            return
        bucket, prefix = split_uri(cluster.log_uri.replace("s3n://", "s3://"))
        client = s3_client(self.settings)
        for name, data in (("stdout", stdout), ("stderr", stderr)):
            key = f"{prefix}{cluster.id}/steps/{step.id}/{name}.gz"
            client.put_object(Bucket=bucket, Key=key, Body=gzip.compress(data))

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
            processes = list(self.processes)
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)


class _Handler(BaseHTTPRequestHandler):
    emr: FakeEmr

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        target = self.headers.get("X-Amz-Target", "")
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        try:
            status, answer = 200, self.emr.call(target.rpartition(".")[2], body)
        except EmrApiError as error:
            status, answer = 400, {"__type": error.kind, "message": str(error)}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: the step logs are what matters


class FakeEmrServer:
    """The fake EMR API on 127.0.0.1, served from a background thread."""

    def __init__(self, settings: Settings, state_dir: Path, port: int = 0) -> None:
        self.emr = FakeEmr(settings, state_dir)
        handler = type("Handler", (_Handler,), {"emr": self.emr})
        self.http = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def __enter__(self) -> FakeEmrServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emr.stop()
        self.http.shutdown()
        self.http.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bootstrap.fake_emr", description=__doc__)
    parser.add_argument("--port", type=int, default=9071)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="fake-emr-") as state_dir,
        FakeEmrServer(Settings.load(), Path(state_dir), args.port) as server,
    ):
        print(f"fake EMR on {server.endpoint}: export AWS_ENDPOINT_URL_EMR={server.endpoint}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
