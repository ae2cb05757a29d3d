"""A stand-in for EMR's control plane, for running the real step-launcher path without AWS.

It speaks EMR's JSON API (the calls the cluster CLI and Dagster's EMR step launcher make) on
loopback, and really runs each step: the exact spark-submit command a step holds, with only
the master switched from YARN to Spark's `local-cluster` (executors in JVMs of their own,
each with its own Python workers, so nothing relies on the driver's memory) and the S3A
settings that make s3:// URIs reach the local S3 server (through the subnet's gateway).

The control plane behaves as EMR's does, because the host's code must survive it:
- a cluster walks STARTING -> BOOTSTRAPPING -> WAITING (RUNNING while a step runs) and ends
  TERMINATING -> TERMINATED with EMR's StateChangeReason codes: USER_REQUEST (TerminateJobFlows),
  ALL_STEPS_COMPLETED (idle past its AutoTerminationPolicy, or out of steps without
  KeepJobFlowAliveWhenNoSteps), STEP_FAILURE (ActionOnFailure TERMINATE_CLUSTER),
  BOOTSTRAP_FAILURE; a terminated cluster stays describable and refuses new steps;
- steps run one at a time, in order (step concurrency 1); ActionOnFailure is honoured;
- a step's stdout.gz and stderr.gz reach LogUri/<cluster>/steps/<step>/ only some time after
  the step ended (EMR pushes logs about every 5 minutes), and a failed step carries
  FailureDetails (reason, message, log file) at once;
- CancelSteps cancels PENDING steps, and RUNNING ones through CANCEL_PENDING: SEND_INTERRUPT
  sends SIGTERM to the step's process group, TERMINATE_PROCESS sends SIGKILL.
Durations are EMR's by default and scaled down in tests (FakeEmrTiming).

Where AWS refuses, so does the fake, when it is given what to judge by:
- `principals` (access key id -> identity policy): every API call is authorized as IAM would,
  conditions included (bootstrap.aws.iam.decide): the region it was signed for, the cluster's
  tags, RunJobFlow's tags, and the roles RunJobFlow passes (iam:PassRole, iam:PassedToService);
  a refusal is EMR's AccessDeniedException;
- `network` (an EC2 client of the account, moto's): the service role provisions under the
  published AmazonEMRServicePolicy_v2 (MANAGED_POLICIES), so a cluster whose default security
  groups it may not create (a VPC without for-use-with-amazon-emr-managed-policies=true) ends
  TERMINATED_WITH_ERRORS with VALIDATION_ERROR, before any node starts; and where the
  cluster's SecurityConfiguration encrypts local disks with AwsKms, its node asks KMS for its
  disks' data key at boot (GenerateDataKey, as the instance role, on moto's KMS): from a
  subnet with no route to KMS (no NAT or internet gateway, no KMS interface endpoint with
  private DNS: bootstrap.aws.network, the rule `doctor` checks), or refused by the key policy
  and the instance role's policy (`instance_policy`, conditions included), the cluster ends
  TERMINATED_WITH_ERRORS with INSTANCE_FAILURE before any bootstrap action runs;
- the nodes reach S3 only through a regional gateway endpoint (bootstrap.local.fake_node):
  boto3, the AWS CLI shim and Spark's S3A alike; given `instance_policy`, it decides their
  requests under it, conditions included.

Each cluster starts one node (bootstrap.local.fake_node): an empty Python 3.11, job-flow.json, and
the request's real bootstrap actions run on it with no package index; steps then run with
that node's Python. What runs on the node (bootstrap actions, steps, log pushes) uses the
node's credentials: the instance role's where the fake is given them (instance_credentials).
Each cluster has its own spark-env.sh, written from the `spark-env` export classification as
EMR does, sourced before every spark-submit; `bash -c` steps that append to
/etc/spark/conf/spark-env.sh append to it.

    python -m bootstrap.local.fake_emr --port 9071      (foreground; Ctrl-C stops it and its steps)

moto's EMR mock, by contrast, records steps but never runs them.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

from bootstrap import cli
from bootstrap.aws.network import describe_subnet, reaches_service
from bootstrap.local.fake_node import (
    BootstrapFailure,
    FakeNode,
    S3Gateway,
    key_use_decision,
    spark_home,
)
from fruits_assets.deployments import current_settings
from spark.layout import split_uri
from spark.session import ICEBERG_RUNTIME_JAR, s3a_conf, s3a_jars
from spark.settings import Settings

EMR_SPARK_ENV = "/etc/spark/conf/spark-env.sh"
# The published texts of the AWS managed policies the design relies on (source and date inside).
MANAGED_POLICIES = Path(__file__).with_name("aws_managed_policies.json")
SERVICE_POLICY = "AmazonEMRServicePolicy_v2"
ACCOUNT = "123456789012"  # the account of the ARNs the fake builds (moto's default)
# Two executors of one core each, in JVMs of their own, as YARN would run them.
SPARK_MASTER = "local-cluster[2,1,1024]"
_ids = itertools.count(1)

ENDED = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
# EMR's words for a step sent to an ended cluster, and for its reason codes' usual messages.
ENDED_CLUSTER_REFUSAL = (
    "A job flow that is shutting down, terminated, or finished may not be modified."
)
USER_REQUEST = ("USER_REQUEST", "Terminated by user request")
STEPS_COMPLETED = ("ALL_STEPS_COMPLETED", "Steps completed")
STEP_FAILURE = ("STEP_FAILURE", "Shut down as step failed")
IDLE_TIMEOUT_S = (60, 604_800)  # the range EMR accepts for AutoTerminationPolicy.IdleTimeout


@dataclass(frozen=True)
class FakeEmrTiming:
    """How long the control plane's phases take, in real seconds. Defaults are EMR's where
    the host's code depends on them (log delay, idle timeout); tests shrink them."""

    starting_s: float = 1.0  # provisioning: EMR takes minutes, the fake has no instances
    terminating_s: float = 1.0
    log_push_delay_s: float = 300.0  # EMR pushes step logs to S3 about every 5 minutes
    idle_scale: float = 1.0  # real seconds per second of the AutoTerminationPolicy


def managed_policy(name: str) -> dict[str, Any]:
    """An AWS managed policy's document, as published (MANAGED_POLICIES)."""
    return json.loads(MANAGED_POLICIES.read_text())["policies"][name]["document"]


Caller = tuple[str | None, str | None]  # the access key id and region a request was signed with


def _role_arn(name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:iam::{ACCOUNT}:role/{name}"


def _profile_role(profile: str) -> str:
    """The role in an instance profile (the project's profile holds the project's role; any
    other, as EMR's default, one of its own name)."""
    from bootstrap.aws import roles

    return roles.INSTANCE_ROLE if profile == roles.INSTANCE_PROFILE else profile


def signed_by(authorization: str) -> Caller:
    """The access key id and region of a SigV4 Authorization header."""
    found = re.search(r"Credential=([^/]+)/\d{8}/([a-z0-9-]+)/", authorization)
    return (found[1], found[2]) if found else (None, None)


class EmrApiError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _timeline(**moments: float | None) -> dict[str, float]:
    """EMR's Timeline: only the moments that have happened."""
    return {name: moment for name, moment in moments.items() if moment is not None}


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
    reason: str = ""  # StateChangeReason message
    failure: dict[str, str] | None = None  # FailureDetails

    def describe(self) -> dict[str, Any]:
        timeline = _timeline(
            CreationDateTime=self.created, StartDateTime=self.started, EndDateTime=self.ended
        )
        status: dict[str, Any] = {
            "State": self.state,
            "StateChangeReason": {"Message": self.reason} if self.reason else {},
            "Timeline": timeline,
        }
        if self.failure:
            status["FailureDetails"] = self.failure
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
    reason: tuple[str, str] | None = None  # StateChangeReason (Code, Message)
    steps: list[Step] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    ready: float | None = None
    ended: float | None = None
    idle_since: float = field(default_factory=time.time)
    ended_with_errors: bool = False
    # Every state it went through, with the reason code: what a test of the walk reads.
    history: list[tuple[str, str | None]] = field(default_factory=lambda: [("STARTING", None)])

    @property
    def spark_env_file(self) -> Path:
        return self.conf_dir / "spark-env.sh"

    @property
    def log_uri(self) -> str | None:
        return self.request.get("LogUri")

    @property
    def keep_alive(self) -> bool:
        return bool(self.request.get("Instances", {}).get("KeepJobFlowAliveWhenNoSteps", False))

    @property
    def idle_timeout_s(self) -> int | None:
        return self.request.get("AutoTerminationPolicy", {}).get("IdleTimeout")

    def enter(self, state: str, reason: tuple[str, str] | None = None) -> None:
        self.state = state
        if reason:
            self.reason = reason
        self.history.append((state, reason[0] if reason else None))

    def classification(self, name: str) -> dict[str, Any]:
        """One classification of the cluster's configuration (empty when it has none)."""
        found = [
            c for c in self.request.get("Configurations", []) if c.get("Classification") == name
        ]
        return found[0] if found else {}

    def spark_env(self) -> dict[str, str]:
        """The `export` properties of the spark-env classification: the steps' environment."""
        for nested in self.classification("spark-env").get("Configurations", []):
            if nested.get("Classification") == "export":
                return dict(nested.get("Properties", {}))
        return {}

    @property
    def iceberg_enabled(self) -> bool:
        """EMR puts its Iceberg on the nodes' class path only when the configuration asks."""
        properties = self.classification("iceberg-defaults").get("Properties", {})
        return properties.get("iceberg.enabled") == "true"

    def status(self) -> dict[str, Any]:
        timeline = _timeline(
            CreationDateTime=self.created, ReadyDateTime=self.ready, EndDateTime=self.ended
        )
        reason = {"Code": self.reason[0], "Message": self.reason[1]} if self.reason else {}
        return {"State": self.state, "StateChangeReason": reason, "Timeline": timeline}

    def summary(self) -> dict[str, Any]:
        """ListClusters' view of the cluster."""
        return {
            "Id": self.id,
            "Name": self.request.get("Name", ""),
            "Status": self.status(),
            "NormalizedInstanceHours": 0,
            "ClusterArn": f"arn:aws:elasticmapreduce:::cluster/{self.id}",
        }

    def describe(self) -> dict[str, Any]:
        request, instances = self.request, self.request.get("Instances", {})
        subnets = instances.get("Ec2SubnetIds") or [instances.get("Ec2SubnetId", "")]
        return self.summary() | {
            "LogUri": self.log_uri,
            "ReleaseLabel": request.get("ReleaseLabel"),
            "Applications": request.get("Applications", []),
            "Configurations": request.get("Configurations", []),
            "SecurityConfiguration": request.get("SecurityConfiguration"),
            "ServiceRole": request.get("ServiceRole"),
            "Ec2InstanceAttributes": {
                "IamInstanceProfile": request.get("JobFlowRole"),
                "Ec2SubnetId": subnets[0],
                "RequestedEc2SubnetIds": [s for s in subnets if s],
            },
            "InstanceCollectionType": (
                "INSTANCE_FLEET" if "InstanceFleets" in instances else "INSTANCE_GROUP"
            ),
            "AutoTerminate": not self.keep_alive,
            "TerminationProtected": bool(instances.get("TerminationProtected", False)),
            "VisibleToAllUsers": bool(request.get("VisibleToAllUsers", True)),
            "StepConcurrencyLevel": 1,
            "Tags": request.get("Tags", []),
        }


class FakeEmr:
    """The clusters and steps, and one thread per cluster that walks it through its life."""

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        spark_master: str = SPARK_MASTER,
        timing: FakeEmrTiming = FakeEmrTiming(),
        instance_credentials: dict[str, str] | None = None,
        network: Any | None = None,
        principals: dict[str, dict[str, Any]] | None = None,
        instance_policy: dict[str, Any] | None = None,
        kms: Any | None = None,
    ) -> None:
        self.settings = settings
        # Access key id -> the identity policy of whoever holds it: with them, every call is
        # authorized as IAM would (authorize); without, none is.
        self.principals = principals
        self.state_dir = state_dir
        # An EC2 client of the account (moto's): with it the service role provisions in the
        # cluster's VPC under AmazonEMRServicePolicy_v2, as EMR does (default_groups_refusal).
        self.network = network
        # The subnet's S3 gateway endpoint, the nodes' only way to S3 (bootstrap.local.fake_node).
        # With the instance role's policy, it decides the nodes' requests with their
        # conditions (s3:prefix) before the S3 server does.
        self.gateway = None
        # The instance role's identity policy: also what KMS decides the nodes' boot call by.
        self.instance_policy = instance_policy
        # A KMS client of the account, to read key policies as KMS holds them (a server that
        # enforces IAM needs credentials that may); None: one with the default credentials.
        self.kms = kms
        if settings.s3_endpoint:
            gateway = S3Gateway(settings.s3_endpoint, settings.region, instance_policy)
            self.gateway = gateway.__enter__()
        # What the nodes run with (bootstrap actions, steps, log pushes): bootstrap.local.fake_node.
        self.instance_credentials = instance_credentials
        self.spark_master = spark_master
        self.timing = timing
        self.clusters: dict[str, Cluster] = {}
        self.security_configurations: dict[str, Any] = {}
        self.lock = threading.Condition()
        self.processes: dict[str, subprocess.Popen] = {}  # by step id
        self.log_pushes: list[threading.Timer] = []
        self.stopping = False

    # --- the API ---------------------------------------------------------------------------
    def call(
        self, operation: str, body: dict[str, Any], caller: Caller | None = None
    ) -> dict[str, Any]:
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            raise EmrApiError(
                "InvalidRequestException", f"the fake EMR does not implement {operation}"
            )
        with self.lock:
            if self.principals is not None:
                self.authorize(operation, body, caller)
            return handler(body)

    # --- IAM, as EMR asks it (only with `principals`) --------------------------------------
    def cluster_arn(self, cluster_id: str) -> str:
        return f"arn:aws:elasticmapreduce:{self.settings.region}:{ACCOUNT}:cluster/{cluster_id}"

    def authorize(self, operation: str, body: dict[str, Any], caller: Caller | None) -> None:
        """IAM's decision on the call, with its conditions: the caller's policy (by its access
        key), the request's region, the cluster's tags (aws:ResourceTag/...), RunJobFlow's tags
        (aws:RequestTag/...) and the roles it passes (iam:PassRole, iam:PassedToService)."""
        from bootstrap.aws.iam import decide

        key, region = caller or (None, None)
        if key not in (self.principals or {}):
            raise EmrApiError("UnrecognizedClientException", "The security token is invalid.")
        document = self.principals[key]
        context: dict[str, Any] = {"aws:RequestedRegion": region}
        cluster_id = (
            body.get("ClusterId") or body.get("JobFlowId") or (body.get("JobFlowIds") or [None])[0]
        )
        resource = "*"
        if cluster_id in self.clusters:
            resource = self.cluster_arn(cluster_id)
            tags = self.clusters[cluster_id].request.get("Tags", [])
            context |= {f"aws:ResourceTag/{t['Key']}": t.get("Value", "") for t in tags}
        elif cluster_id:
            resource = self.cluster_arn(cluster_id)
        asked = [(f"elasticmapreduce:{operation}", resource, context)]
        if operation == "RunJobFlow":
            tags = body.get("Tags", [])
            context |= {f"aws:RequestTag/{t['Key']}": t.get("Value", "") for t in tags}
            asked += [
                ("iam:PassRole", _role_arn(body.get("ServiceRole", "")),
                 {"iam:PassedToService": "elasticmapreduce.amazonaws.com"}),
                ("iam:PassRole", _role_arn(_profile_role(body.get("JobFlowRole", ""))),
                 {"iam:PassedToService": "ec2.amazonaws.com"}),
            ]  # fmt: skip
        for action, arn, keys in asked:
            if decide([document], action, arn, keys) != "Allow":
                raise EmrApiError(
                    "AccessDeniedException",
                    f"User: arn:aws:iam::{ACCOUNT}:user/{key} is not authorized to perform: "
                    f"{action} on resource: {arn} because no identity-based policy allows "
                    f"the {action} action",
                )

    def cluster(self, cluster_id: str) -> Cluster:
        if cluster_id not in self.clusters:
            raise EmrApiError("InvalidRequestException", f"Cluster id '{cluster_id}' is not valid.")
        return self.clusters[cluster_id]

    def op_RunJobFlow(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 (API names)
        idle = body.get("AutoTerminationPolicy", {}).get("IdleTimeout")
        if idle is not None and not IDLE_TIMEOUT_S[0] <= idle <= IDLE_TIMEOUT_S[1]:
            raise EmrApiError(
                "ValidationException",
                f"IdleTimeout must be between {IDLE_TIMEOUT_S[0]} and {IDLE_TIMEOUT_S[1]} seconds.",
            )
        cluster_id = f"j-FAKE{next(_ids):08d}"
        conf_dir = self.state_dir / cluster_id
        node = FakeNode(
            conf_dir / "node", self.settings, f"i-0{cluster_id[6:].lower()}",
            self.instance_credentials, self.gateway.endpoint if self.gateway else None,
        )  # fmt: skip
        cluster = Cluster(id=cluster_id, request=body, conf_dir=conf_dir, node=node)
        cluster.conf_dir.mkdir(parents=True)
        exports = "".join(
            f'export {k}="{node.on_node(v)}"\n' for k, v in cluster.spark_env().items()
        )
        cluster.spark_env_file.write_text(exports)
        self.clusters[cluster.id] = cluster
        threading.Thread(target=self._live, args=(cluster,), daemon=True).start()
        return {"JobFlowId": cluster.id, "ClusterArn": cluster.summary()["ClusterArn"]}

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
        wanted = set(body.get("ClusterStates") or [])
        newest_first = sorted(self.clusters.values(), key=lambda c: c.created, reverse=True)
        return {"Clusters": [c.summary() for c in newest_first if not wanted or c.state in wanted]}

    def op_GetAutoTerminationPolicy(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        policy = self.cluster(body["ClusterId"]).request.get("AutoTerminationPolicy")
        return {"AutoTerminationPolicy": policy} if policy else {}

    def op_TerminateJobFlows(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        clusters = [self.cluster(cluster_id) for cluster_id in body["JobFlowIds"]]
        if any(c.describe()["TerminationProtected"] for c in clusters):
            raise EmrApiError(
                "ValidationException",
                "Could not shut down one or more job flows since they are termination protected.",
            )
        for cluster in clusters:
            self._terminate(cluster, USER_REQUEST)
        return {}

    def op_AddJobFlowSteps(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        cluster = self.cluster(body["JobFlowId"])
        if cluster.state in ENDED:
            raise EmrApiError("ValidationException", ENDED_CLUSTER_REFUSAL)
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

    def step(self, cluster_id: str, step_id: str) -> Step:
        for step in self.cluster(cluster_id).steps:
            if step.id == step_id:
                return step
        raise EmrApiError("InvalidRequestException", f"Step id '{step_id}' is not valid.")

    def op_DescribeStep(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {"Step": self.step(body["ClusterId"], body["StepId"]).describe()}

    def op_ListSteps(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        states, ids = set(body.get("StepStates") or []), set(body.get("StepIds") or [])
        steps = reversed(self.cluster(body["ClusterId"]).steps)  # EMR lists newest first
        return {
            "Steps": [
                s.describe()
                for s in steps
                if (not states or s.state in states) and (not ids or s.id in ids)
            ]
        }

    def op_CancelSteps(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        option = body.get("StepCancellationOption", "SEND_INTERRUPT")
        answers = []
        for step_id in body["StepIds"]:
            step = self.step(body["ClusterId"], step_id)
            if step.state == "PENDING":
                step.state, step.ended = "CANCELLED", time.time()
            elif step.state in ("RUNNING", "CANCEL_PENDING"):
                step.state = "CANCEL_PENDING"  # CANCELLED once its process has exited
                self._signal_step(step, signal.SIGKILL if option == "TERMINATE_PROCESS" else None)
            else:
                answers.append(
                    {"StepId": step_id, "Status": "FAILED", "Reason": f"Step is {step.state}."}
                )
                continue
            answers.append({"StepId": step_id, "Status": "SUBMITTED", "Reason": ""})
        self.lock.notify_all()
        return {"CancelStepsInfoList": answers}

    # --- the cluster's life ----------------------------------------------------------------
    def _live(self, cluster: Cluster) -> None:
        """STARTING, BOOTSTRAPPING, WAITING/RUNNING until it ends, then TERMINATED."""
        with self.lock:
            self.lock.wait_for(lambda: self.stopping or cluster.state in ENDED,
                               timeout=self.timing.starting_s)  # fmt: skip
            refusal = None if cluster.state in ENDED else self._provisioning_refusal(cluster)
            if refusal is not None:
                self._terminate(cluster, ("VALIDATION_ERROR", refusal), errors=True)
        # The node boots (outside the lock: its KMS call goes over the network).
        failure = None if cluster.state in ENDED else self._boot_failure(cluster)
        with self.lock:
            if failure is not None and cluster.state not in ENDED:
                self._terminate(cluster, ("INSTANCE_FAILURE", failure), errors=True)
            elif cluster.state not in ENDED:
                cluster.enter("BOOTSTRAPPING")
        if cluster.state == "BOOTSTRAPPING":
            try:
                self._bootstrap_nodes(cluster)
            except BootstrapFailure as failure:
                with self.lock:
                    self._terminate(cluster, ("BOOTSTRAP_FAILURE", str(failure)), errors=True)
            with self.lock:
                if cluster.state not in ENDED:
                    cluster.ready = cluster.idle_since = time.time()
                    cluster.enter("WAITING")
            self._run_steps(cluster)
        self._shut_down(cluster)

    def _provisioning_refusal(self, cluster: Cluster) -> str | None:
        """What EMR's service role is refused while provisioning (None without a network)."""
        if self.network is None:
            return None
        return default_groups_refusal(self.network, cluster.request, self.settings.region)

    def _boot_failure(self, cluster: Cluster) -> str | None:
        """Why the cluster's node fails to boot, or None (only with `network`). Local-disk
        encryption with AwsKms (the cluster's SecurityConfiguration) makes every node ask KMS
        for its disks' data key at boot, as the instance role: from a subnet that reaches KMS
        (bootstrap.aws.network, doctor's rule), and under the key's policy and the role's."""
        named = cluster.request.get("SecurityConfiguration")
        key = local_disk_key(self.security_configurations.get(named))
        if self.network is None or key is None:
            return None
        region = self.settings.region
        subnet_id = cluster_subnet(cluster.request)
        # Without a subnet: the default VPC's, whose default subnets route to its internet gateway.
        reaches = subnet_id is None or reaches_service(
            self.network, region, describe_subnet(self.network, subnet_id), "kms"
        )
        role = _role_arn(_profile_role(cluster.request.get("JobFlowRole", "")))
        decision = functools.partial(self._key_use, key, role)
        return cluster.node.request_disk_key(key, reaches, decision)

    def _key_use(self, key: str, role: str, action: str) -> str | None:
        """KMS's decision on the role's `action` on the key (fake_node.key_use_decision): its
        key policy, read as KMS holds it, and the instance role's policy where the fake has it;
        None for a key KMS does not know (its own answer, NotFoundException, follows)."""
        kms = self.kms or boto3.client(
            "kms", region_name=self.settings.region, endpoint_url=self.settings.s3_endpoint
        )
        try:
            arn = kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
            policy = kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
        except kms.exceptions.NotFoundException:
            return None
        context = {"aws:RequestedRegion": self.settings.region}
        return key_use_decision(
            json.loads(policy), self.instance_policy, role, action, arn, context
        )

    def _bootstrap_nodes(self, cluster: Cluster) -> None:
        """Provision the cluster's node (a clean Python 3.11, job-flow.json) and run the
        request's bootstrap actions on it; BootstrapFailure if one fails."""
        cluster.node.provision(cluster.id, cluster.request, cluster.created)
        cluster.node.run_bootstrap_actions(cluster.request, cluster.log_uri, self.run_process)

    def _run_steps(self, cluster: Cluster) -> None:
        """One step at a time, in order, like an EMR cluster with step concurrency 1."""
        while True:
            with self.lock:
                step = self._next_step(cluster)
                if step is None:
                    return
                step.state, step.started = "RUNNING", time.time()
                if cluster.state != "RUNNING":
                    cluster.enter("RUNNING")
            code, stdout, stderr = self._execute(cluster, step)
            with self.lock:
                self._finish_step(cluster, step, code, stdout, stderr)

    def _next_step(self, cluster: Cluster) -> Step | None:
        """The next PENDING step, once there is one; None once the cluster ends, which happens
        here when it has been idle past its IdleTimeout or is out of steps to keep it alive."""
        while not self.stopping and cluster.state not in ENDED:
            step = next((s for s in cluster.steps if s.state == "PENDING"), None)
            if step is not None:
                return step
            if not cluster.keep_alive:
                self._terminate(cluster, STEPS_COMPLETED)
                break
            if cluster.idle_timeout_s is None:
                self.lock.wait()
                continue
            idle_left = cluster.idle_since + cluster.idle_timeout_s * self.timing.idle_scale
            if idle_left <= time.time():
                idle = f"Idle for {cluster.idle_timeout_s} seconds (auto-termination policy)"
                self._terminate(cluster, ("ALL_STEPS_COMPLETED", idle))
                break
            self.lock.wait(timeout=idle_left - time.time())
        return None

    def _finish_step(
        self, cluster: Cluster, step: Step, code: int, stdout: bytes, stderr: bytes
    ) -> None:
        step.ended = cluster.idle_since = time.time()
        if step.state == "CANCEL_PENDING":
            step.state = "CANCELLED"
        elif cluster.state in ENDED:
            step.state, step.reason = "CANCELLED", "Job terminated"
        elif code == 0:
            step.state = "COMPLETED"
        else:
            step.state = "FAILED"
            step.failure = {
                "Reason": _root_cause(stderr),
                "Message": f"Step command exited with return code {code}.",
            }
            if cluster.log_uri:
                step.failure["LogFile"] = self._log_key(cluster, step, "stderr")
            self._act_on_failure(cluster, step)
        if cluster.state == "RUNNING" and not any(s.state == "PENDING" for s in cluster.steps):
            cluster.enter("WAITING")  # back to back, steps keep the cluster RUNNING
        self._push_logs_later(cluster, step, stdout, stderr)
        self.lock.notify_all()

    def _act_on_failure(self, cluster: Cluster, step: Step) -> None:
        action = step.action_on_failure
        if action in ("TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"):
            self._terminate(cluster, STEP_FAILURE, errors=True)
        elif action == "CANCEL_AND_WAIT":
            for pending in cluster.steps:
                if pending.state == "PENDING":
                    pending.state, pending.ended = "CANCELLED", time.time()

    def _terminate(self, cluster: Cluster, reason: tuple[str, str], errors: bool = False) -> None:
        """TERMINATING at once: pending steps cancelled, the running one interrupted."""
        if cluster.state in ENDED:
            return
        cluster.enter("TERMINATING", reason)
        cluster.ended_with_errors = errors
        for step in cluster.steps:
            if step.state == "PENDING":
                step.state, step.ended, step.reason = "CANCELLED", time.time(), "Job terminated"
            elif step.state in ("RUNNING", "CANCEL_PENDING"):
                self._signal_step(step)
        self.lock.notify_all()

    def _shut_down(self, cluster: Cluster) -> None:
        time.sleep(self.timing.terminating_s)
        with self.lock:
            if cluster.state != "TERMINATING":  # the fake itself is stopping
                self._terminate(cluster, USER_REQUEST)
            cluster.ended = time.time()
            cluster.enter("TERMINATED_WITH_ERRORS" if cluster.ended_with_errors else "TERMINATED")
            self.lock.notify_all()

    def _signal_step(self, step: Step, signum: int | None = None) -> None:
        """SIGTERM (SEND_INTERRUPT) or SIGKILL to the step's process group, as EMR does to a
        step's process and its descendants."""
        process = self.processes.get(step.id)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum or signal.SIGTERM)

    def _track(self, key: str, process: subprocess.Popen, step: Step | None) -> None:
        with self.lock:
            self.processes[key] = process
            if step is not None and step.state == "CANCEL_PENDING":  # cancelled before it ran
                self._signal_step(step)

    def _untrack(self, key: str) -> None:
        with self.lock:
            self.processes.pop(key, None)

    # --- running steps ---------------------------------------------------------------------
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
        # S3A (standing for EMRFS) through the subnet's gateway too, as the node's boto3.
        node_s3 = self.gateway.endpoint if self.gateway else self.settings.s3_endpoint
        hadoop = s3a_conf(replace(self.settings, s3_endpoint=node_s3))
        command += [a for k, v in hadoop.items() for a in ("--conf", f"spark.hadoop.{k}={v}")]
        # On every node's disk, as EMRFS is on EMR's: the driver's and the executors' class path;
        # Iceberg's runtime only where the cluster enabled it, as on EMR.
        jars = ":".join(
            str(j)
            for j in s3a_jars()
            if cluster.iceberg_enabled or not j.name.startswith(ICEBERG_RUNTIME_JAR)
        )
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
        return self.run_process(command, self.step_environment(cluster), step=step)

    def run_process(
        self,
        command: list[str],
        env: dict[str, str],
        cwd: Path | None = None,
        step: Step | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Runs a node's process (a step, a bootstrap action) to its end, or until stop();
        a step's process is the one CancelSteps signals."""
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # stop() ends the JVMs and Python workers with it
        )
        key = step.id if step is not None else f"process-{process.pid}"
        self._track(key, process, step)
        try:
            stdout, stderr = process.communicate()
        finally:
            self._untrack(key)
        return process.returncode, stdout, stderr

    # --- step logs -------------------------------------------------------------------------
    def _log_key(self, cluster: Cluster, step: Step, name: str) -> str:
        assert cluster.log_uri
        return f"{cluster.log_uri.replace('s3n://', 's3://')}{cluster.id}/steps/{step.id}/{name}.gz"

    def _push_logs_later(self, cluster: Cluster, step: Step, stdout: bytes, stderr: bytes) -> None:
        """As EMR: the step's logs reach the LogUri a while after the step ended."""
        if not cluster.log_uri:
            return
        push = threading.Timer(
            self.timing.log_push_delay_s,
            self._push_logs,
            args=(cluster, step, {"stdout": stdout, "stderr": stderr}),
        )
        push.daemon = True
        self.log_pushes.append(push)
        push.start()

    def _push_logs(self, cluster: Cluster, step: Step, logs: dict[str, bytes]) -> None:
        client = cluster.node.s3()  # EMR's log pushes run on the node, as its instance role
        for name, data in logs.items():
            bucket, key = split_uri(self._log_key(cluster, step, name))
            client.put_object(Bucket=bucket, Key=key, Body=gzip.compress(data))

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
            processes = list(self.processes.values())
            pushes = list(self.log_pushes)
        for push in pushes:
            push.cancel()  # the S3 server may be gone with the fake
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        if self.gateway is not None:
            self.gateway.__exit__()
            self.gateway = None


def cluster_subnet(request: dict[str, Any]) -> str | None:
    """The subnet the cluster's node starts in (the request's first), or None."""
    instances = request.get("Instances", {})
    subnets = instances.get("Ec2SubnetIds") or [instances.get("Ec2SubnetId")]
    return subnets[0] or None


def local_disk_key(configuration: dict[str, Any] | None) -> str | None:
    """The KMS key of a security configuration's local-disk encryption (AwsKms), or None."""
    encryption = (configuration or {}).get("EncryptionConfiguration", {})
    if not encryption.get("EnableAtRestEncryption"):
        return None
    at_rest = encryption.get("AtRestEncryptionConfiguration", {})
    local = at_rest.get("LocalDiskEncryptionConfiguration", {})
    return local.get("AwsKmsKey") if local.get("EncryptionKeyProviderType") == "AwsKms" else None


def cluster_vpc(ec2: Any, request: dict[str, Any]) -> str | None:
    """The VPC the cluster starts in: its first subnet's, else the region's default VPC."""
    subnet_id = cluster_subnet(request)
    if subnet_id:
        return describe_subnet(ec2, subnet_id)["VpcId"]
    default = [{"Name": "isDefault", "Values": ["true"]}]
    vpcs = ec2.describe_vpcs(Filters=default)["Vpcs"]
    return vpcs[0]["VpcId"] if vpcs else None


def default_groups_refusal(ec2: Any, request: dict[str, Any], region: str) -> str | None:
    """Why the service role may not create the cluster's default security groups, or None.

    Without EmrManagedMasterSecurityGroup and EmrManagedSlaveSecurityGroup in the request EMR
    creates them, as the service role: AmazonEMRServicePolicy_v2 allows ec2:CreateSecurityGroup
    on the VPC only when the VPC carries for-use-with-amazon-emr-managed-policies=true, and on
    the new group only with that tag in the request (EMR adds it)."""
    from bootstrap.aws.iam import decide
    from bootstrap.aws.roles import MANAGED_POLICY_TAG

    instances = request.get("Instances", {})
    if instances.get("EmrManagedMasterSecurityGroup") and instances.get(
        "EmrManagedSlaveSecurityGroup"
    ):
        return None
    vpc_id = cluster_vpc(ec2, request)
    if vpc_id is None:
        return "No default VPC in the region and no subnet in the request."
    tags = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0].get("Tags", [])
    context = {f"aws:ResourceTag/{t['Key']}": t["Value"] for t in tags}
    context[f"aws:RequestTag/{MANAGED_POLICY_TAG['Key']}"] = MANAGED_POLICY_TAG["Value"]
    policy = managed_policy(SERVICE_POLICY)
    arns = [
        f"arn:aws:ec2:{region}:{ACCOUNT}:vpc/{vpc_id}",
        f"arn:aws:ec2:{region}:{ACCOUNT}:security-group/*",
    ]
    refused = [
        a for a in arns if decide([policy], "ec2:CreateSecurityGroup", a, context) != "Allow"
    ]
    if not refused:
        return None
    return (
        f"The EMR service role {request.get('ServiceRole')} is not authorized to perform "
        f"ec2:CreateSecurityGroup on {refused[0]} (the cluster's default security groups)."
    )


def _root_cause(stderr: bytes) -> str:
    """FailureDetails' reason: as EMR, the last error the step's stderr names."""
    lines = stderr.decode(errors="replace").splitlines()
    errors = [ln.strip() for ln in lines if "Error" in ln or "Exception" in ln]
    return errors[-1][:1000] if errors else "Unknown Error."


class _Handler(BaseHTTPRequestHandler):
    emr: FakeEmr

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        target = self.headers.get("X-Amz-Target", "")
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        try:
            caller = signed_by(self.headers.get("Authorization", ""))
            status, answer = 200, self.emr.call(target.rpartition(".")[2], body, caller)
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

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        port: int = 0,
        timing: FakeEmrTiming = FakeEmrTiming(),
        instance_credentials: dict[str, str] | None = None,
        network: Any | None = None,
        principals: dict[str, dict[str, Any]] | None = None,
        instance_policy: dict[str, Any] | None = None,
        kms: Any | None = None,
    ) -> None:
        self.emr = FakeEmr(
            settings, state_dir, timing=timing, instance_credentials=instance_credentials,
            network=network, principals=principals, instance_policy=instance_policy, kms=kms,
        )  # fmt: skip
        handler = type("Handler", (_Handler,), {"emr": self.emr})
        self.http = ThreadingHTTPServer(("127.0.0.1", port), handler)
        # A short poll: shutdown() (each test's teardown) waits for one.
        serve = functools.partial(self.http.serve_forever, poll_interval=0.05)
        self.thread = threading.Thread(target=serve, daemon=True)

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


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.local.fake_emr", __doc__)
    parser.add_argument("--port", type=int, default=9071)
    parser.add_argument(
        "--log-push-delay", type=float, default=FakeEmrTiming.log_push_delay_s,
        help="seconds between a step's end and its logs on S3 (EMR: about 300)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    timing = FakeEmrTiming(log_push_delay_s=args.log_push_delay)
    with (
        tempfile.TemporaryDirectory(prefix="fake-emr-") as state_dir,
        FakeEmrServer(current_settings(), Path(state_dir), args.port, timing) as server,
    ):
        print(f"fake EMR on {server.endpoint}: export AWS_ENDPOINT_URL_EMR={server.endpoint}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
