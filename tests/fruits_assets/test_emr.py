"""The emr deployment: resources, the code package, the bootstrap action, and the step
launcher's handling of the cluster's life, late logs, failures and interrupts (fake EMR)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._utils.interrupts import capture_interrupts
from dagster_aws.emr import EmrError

from fruits_assets.deployments import resources_for
from fruits_assets.deployments.emr import (
    PROJECT_TAG,
    EmrStepLauncherResource,
    build_code_package,
    code_files,
)


def test_the_code_package_holds_only_the_project_code(tmp_path, repo_root) -> None:
    first = build_code_package(tmp_path / "code.zip")
    names = zipfile.ZipFile(tmp_path / "code.zip").namelist()
    assert {n.split("/")[0] for n in names} == {"fruits_assets", "spark"}
    assert "fruits_assets/definitions.py" in names and "fruits_assets/deployments/emr.py" in names
    assert all(n.endswith(".py") for n in names)
    assert not any(
        part in n
        for n in names
        for part in (".venv", ".git", "__pycache__", "node_modules", "tests/")
    )
    assert sum(os.path.getsize(p) for p in code_files()) < 1_000_000
    # Same code, same bytes, same content address.
    assert build_code_package(tmp_path / "again.zip") == first
    assert (tmp_path / "code.zip").read_bytes() == (tmp_path / "again.zip").read_bytes()


def test_the_packaged_code_imports_from_the_zip_alone(tmp_path, repo_root) -> None:
    build_code_package(tmp_path / "code.zip")
    code = "import fruits_assets.definitions as d, spark.settings as s; print(s.__file__)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "code.zip"), "FRUITS_DEPLOYMENT": "local"}
    result = subprocess.run(
        [sys.executable,
         "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'code.zip')!r}); {code}"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "code.zip/spark/settings.py" in result.stdout


def test_emr_resources_use_env_vars_and_refuse_non_eu(monkeypatch) -> None:
    monkeypatch.setenv("FRUITS_EMR_CLUSTER_ID", "j-1")  # a pin (unset: the tagged cluster)
    resources = resources_for("emr")
    launcher = resources["pyspark_step_launcher"]
    assert isinstance(launcher, EmrStepLauncherResource)
    monkeypatch.setenv("FRUITS_REGION", "us-east-1")
    monkeypatch.setenv("FRUITS_STAGING_BUCKET", "staging")
    monkeypatch.setenv("FRUITS_STAGING_PREFIX", "emr_staging")
    with pytest.raises(dg.DagsterResourceFunctionError) as error:
        dg.build_resources({"launcher": launcher}).__enter__()
    assert "outside the EU" in str(error.value.__cause__)
    monkeypatch.setenv("FRUITS_REGION", "eu-west-3")
    with dg.build_resources({"launcher": launcher}) as built:
        assert built.launcher.cluster_id == "j-1" and built.launcher.staging_bucket == "staging"


def test_the_bootstrap_action_passes_shellcheck(repo_root) -> None:
    scripts = [
        repo_root / "bootstrap" / "aws" / "emr" / "install_python_deps.sh",
        repo_root / "bootstrap" / "local" / "setup.sh",
    ]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_on_a_node_the_launcher_s_cluster_is_the_one_of_job_flow_json(
    monkeypatch, tmp_path
) -> None:
    """Dagster builds the resources again on the cluster, where FRUITS_EMR_CLUSTER_ID is not
    set (the host's pin never travels): the node's job-flow.json names the cluster."""
    job_flow = tmp_path / "job-flow.json"
    job_flow.write_text(json.dumps({"jobFlowId": "j-FROMNODE", "instanceCount": 3}))
    monkeypatch.setenv("FRUITS_JOB_FLOW_FILE", str(job_flow))
    monkeypatch.delenv("FRUITS_EMR_CLUSTER_ID", raising=False)
    monkeypatch.setenv("FRUITS_REGION", "eu-west-3")
    monkeypatch.setenv("FRUITS_STAGING_BUCKET", "staging")
    monkeypatch.setenv("FRUITS_STAGING_PREFIX", "emr_staging")
    with dg.build_resources({"launcher": resources_for("emr")["pyspark_step_launcher"]}) as built:
        assert built.launcher.cluster_id == "j-FROMNODE"


# --- the step launcher against the fake EMR control plane -------------------------------------
# Steps here are tiny shell scripts added as a launched step would be; the launcher then waits
# for them exactly as after launch_step. Spark round trips are in test_emr_round_trip.py.


@pytest.fixture
def launcher_on(start_cluster, settings, fresh_layout):
    """The real ProjectPackageStepLauncher, built by its resource, on a fresh fake cluster."""

    def _launcher(cluster_id: str, **config):
        resource = EmrStepLauncherResource(
            cluster_id=cluster_id,
            region_name=settings.region,
            staging_bucket=fresh_layout.bucket,
            staging_prefix=f"{fresh_layout.prefix}/emr_staging",
            poll_interval_s=0.2,
            **config,
        )
        with dg.build_resources({"launcher": resource}) as built:
            return built.launcher

    return _launcher


def add_script_step(launcher, script: str) -> str:
    step = {
        "Name": "script",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["bash", "-c", script]},
    }
    return launcher.emr_job_runner.add_job_flow_steps(
        dg.get_dagster_logger(), launcher.cluster_id, [step]
    )[0]


def wait_as_the_launcher_does(launcher, step_id: str) -> list:
    with dg.build_op_context() as context:
        return list(
            launcher.wait_for_completion_and_log("run-1", "image_features", step_id, context)
        )


def test_a_succeeded_step_whose_logs_come_late_succeeds_with_a_warning(
    start_cluster, launcher_on, capsys
) -> None:
    _, cluster_id = start_cluster()
    launcher = launcher_on(cluster_id, log_wait_s=0)  # logs come 1.5 s after the step's end
    step_id = add_script_step(launcher, "echo done")
    wait_as_the_launcher_does(launcher, step_id)  # no EmrError
    logged = capsys.readouterr().err
    assert "COMPLETED" in logged
    assert f"EMR step {step_id}: EMR log file did not appear on S3 after waiting" in logged


def test_a_failed_step_reports_emrs_failure_details_and_its_stderr(
    start_cluster, launcher_on, capsys
) -> None:
    _, cluster_id = start_cluster()
    script = "echo 'java.io.FileNotFoundException: s3://b/nowhere/weights.h5' >&2; exit 1"
    for log_wait_s, stderr_shown in ((0, False), (5, True)):  # logs late, then within the wait
        launcher = launcher_on(cluster_id, log_wait_s=log_wait_s)
        step_id = add_script_step(launcher, script)
        with pytest.raises(EmrError) as failed:
            wait_as_the_launcher_does(launcher, step_id)
        line = str(failed.value)
        assert line.startswith(f"EMR step {step_id} FAILED: java.io.FileNotFoundException: ")
        assert "nowhere/weights.h5; Step command exited with return code 1." in line
        assert f"{cluster_id}/steps/{step_id}/stderr.gz" in line
        logged = capsys.readouterr().err
        assert ("Spark Driver stderr: java.io.FileNotFoundException" in logged) == stderr_shown


def test_an_interrupted_dagster_step_cancels_its_emr_step(
    start_cluster, launcher_on, step_reaches, tmp_path
) -> None:
    """What a terminated run does to its step: Dagster interrupts the step's process (SIGINT,
    raised as DagsterExecutionInterruptedError while the launcher waits)."""
    emr, cluster_id = start_cluster()
    launcher = launcher_on(cluster_id)
    started = tmp_path / "started"
    step_id = add_script_step(launcher, f"touch {started}; sleep 60")
    interrupt = threading.Thread(target=interrupt_once_exists, args=(started,), daemon=True)
    with capture_interrupts(), pytest.raises(DagsterExecutionInterruptedError):
        # Started only once Dagster's handler is in: a SIGINT before it would reach pytest's
        # own handler and kill the test process (the step can start within milliseconds).
        interrupt.start()
        wait_as_the_launcher_does(launcher, step_id)
    interrupt.join()
    assert step_reaches(emr, cluster_id, step_id, "CANCELLED")
    # With step concurrency 1, the next step is not held up by an orphan.
    follower = add_script_step(launcher, "true")
    assert step_reaches(emr, cluster_id, follower, "COMPLETED", timeout_s=5)


def interrupt_once_exists(path) -> None:
    while not path.exists():
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)


@dg.asset(required_resource_keys={"pyspark_step_launcher"})
def spark_work() -> None:
    raise AssertionError("never runs: the launcher refuses the cluster first")


def test_a_run_aimed_at_an_ended_or_missing_cluster_fails_first_in_one_line(
    start_cluster, launcher_on, monkeypatch, settings, fresh_layout, s3
) -> None:
    emr, cluster_id = start_cluster(idle_timeout_s=60)  # auto-terminates after 1.2 s
    while emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] != "TERMINATED":
        time.sleep(0.1)
    monkeypatch.setenv("FRUITS_REGION", settings.region)
    monkeypatch.setenv("FRUITS_STAGING_BUCKET", fresh_layout.bucket)
    monkeypatch.setenv("FRUITS_STAGING_PREFIX", f"{fresh_layout.prefix}/emr_staging")
    for target, state in ((cluster_id, "TERMINATED (Idle for 60 seconds"), ("j-GONE", "not found")):
        monkeypatch.setenv("FRUITS_EMR_CLUSTER_ID", target)
        launcher = resources_for("emr")["pyspark_step_launcher"]
        result = dg.materialize(
            [spark_work], resources={"pyspark_step_launcher": launcher}, raise_on_error=False
        )
        failure = result.get_step_failure_events()[0].step_failure_data
        message = failure.user_failure_data.description
        assert message.startswith(f"EMR cluster {target} is {state}")
        assert message.endswith(
            "start one with `python -m bootstrap.aws.emr_cluster create` "
            "(FRUITS_EMR_CLUSTER_ID pins it: unset it for the tagged one)"
        )
        assert "\n" not in message
    assert emr.list_steps(ClusterId=cluster_id)["Steps"] == []
    staged = s3.list_objects_v2(Bucket=fresh_layout.bucket, Prefix=fresh_layout.prefix)
    assert [o["Key"] for o in staged.get("Contents", []) if "emr_staging" in o["Key"]] == []


@pytest.mark.slow
def test_terminating_the_dagster_run_cancels_its_emr_step(
    start_cluster, quick_emr, step_reaches, settings, fresh_layout, repo_root, tmp_path
) -> None:
    """A whole run, in its own process with Dagster's multiprocess executor: interrupting it
    (Ctrl-C, or the termination Dagster sends) interrupts the step's process, whose launcher
    cancels the EMR step."""
    emr, cluster_id = start_cluster()
    (tmp_path / "dagster_home").mkdir()
    env = os.environ | {
        "FRUITS_EMR_CLUSTER_ID": cluster_id,
        "FRUITS_REGION": settings.region,
        "FRUITS_STAGING_BUCKET": fresh_layout.bucket,
        "FRUITS_STAGING_PREFIX": f"{fresh_layout.prefix}/emr_staging",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "PYTHONPATH": str(repo_root),
    }
    definitions = repo_root / "tests" / "fruits_assets" / "emr_sleeping_step.py"
    dagster = str(Path(sys.executable).with_name("dagster"))
    run = subprocess.Popen(
        [dagster, "asset", "materialize", "-f", str(definitions), "--select", "sleeping_step"],
        env=env, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (steps := quick_emr.emr.clusters[cluster_id].steps) or steps[0].state != (
            "RUNNING"
        ):
            assert run.poll() is None and time.monotonic() < deadline, run.stdout.read()
            time.sleep(0.1)
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode != 0
    assert step_reaches(emr, cluster_id, steps[0].id, "CANCELLED", timeout_s=5)
    assert f"interrupted: cancelling EMR step {steps[0].id}: SUBMITTED" in output


def test_each_launch_finds_the_project_s_newest_tagged_cluster(
    quick_emr, launcher_on, settings, fresh_layout
) -> None:
    """No cluster id travels through the Dagster host's environment: each launch looks for the
    newest cluster tagged project=fruits that is up, so a new cluster needs no restart."""
    import boto3

    emr = boto3.client("emr", region_name=settings.region)

    def run(tags: list[dict]) -> str:
        return emr.run_job_flow(
            Name="fruits-test", ReleaseLabel="emr-7.12.0", Tags=tags,
            Instances={"KeepJobFlowAliveWhenNoSteps": True},
            JobFlowRole="fruits-emr-instance", ServiceRole="fruits-emr-service",
        )["JobFlowId"]  # fmt: skip

    launcher = launcher_on("")  # as resources_for("emr") builds it without a pin
    with pytest.raises(dg.Failure) as none:
        launcher.find_project_cluster()
    assert none.value.description == (
        f"no EMR cluster tagged project=fruits is up in {settings.region}: "
        "start one with `python -m bootstrap.aws.emr_cluster create`"
    )
    first = run([PROJECT_TAG])
    run([{"Key": "project", "Value": "other"}])  # newer, but not the project's
    assert launcher.find_project_cluster() == first
    emr.terminate_job_flows(JobFlowIds=[first])
    second = run([PROJECT_TAG, {"Key": "data-residency", "Value": "eu"}])
    assert launcher.find_project_cluster() == second  # the same launcher, no restart


def test_a_cluster_the_host_may_not_use_fails_in_one_line(
    settings, local_s3, fresh_layout, tmp_path, monkeypatch
) -> None:
    """The fake EMR holds each caller to its policy, conditions included: the host reaches only
    clusters tagged project=fruits (an untagged one answers AccessDenied, which the launcher
    turns into one line, and which the search for the project's cluster passes over), and the
    operator passes only the project's roles."""
    from dataclasses import replace

    import boto3

    from bootstrap.aws import roles
    from bootstrap.aws.emr_cluster import CLUSTER_TAGS
    from bootstrap.aws.iam import policy
    from bootstrap.local.fake_emr import FakeEmrServer, FakeEmrTiming

    target = replace(settings, staging_bucket=fresh_layout.bucket, staging_prefix="emr_staging")
    keys = {"AKIDHOST": policy(target, "host"), "AKIDOPERATOR": policy(target, "operator")}
    timing = FakeEmrTiming(starting_s=30)  # no node needed here
    with FakeEmrServer(settings, tmp_path / "emr", timing=timing, principals=keys) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EMR", server.endpoint)

        def emr_as(key: str):
            return boto3.client(
                "emr", region_name=settings.region, endpoint_url=server.endpoint,
                aws_access_key_id=key, aws_secret_access_key="x",
            )  # fmt: skip

        def run(client, tags: list[dict], service_role: str = roles.SERVICE_ROLE) -> str:
            return client.run_job_flow(
                Name="fruits-test", ReleaseLabel="emr-7.12.0", Tags=tags,
                Instances={"KeepJobFlowAliveWhenNoSteps": True},
                ServiceRole=service_role, JobFlowRole=roles.INSTANCE_PROFILE,
            )["JobFlowId"]  # fmt: skip

        operator, host = emr_as("AKIDOPERATOR"), emr_as("AKIDHOST")
        tagged = run(operator, CLUSTER_TAGS)
        untagged = run(operator, [])  # newer
        for refused in (
            lambda: run(operator, CLUSTER_TAGS, service_role="EMR_DefaultRole_V2"),  # PassRole
            lambda: run(host, CLUSTER_TAGS),  # the host starts no cluster
            lambda: host.describe_cluster(ClusterId=untagged),
        ):
            with pytest.raises(host.exceptions.ClientError) as error:
                refused()
            assert error.value.response["Error"]["Code"] == "AccessDeniedException"
        assert host.describe_cluster(ClusterId=tagged)["Cluster"]["Id"] == tagged

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDHOST")  # the Dagster host's process
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)

        def launcher(cluster_id: str):
            resource = EmrStepLauncherResource(
                cluster_id=cluster_id, region_name=settings.region,
                staging_bucket=target.staging_bucket, staging_prefix="emr_staging",
            )  # fmt: skip
            with dg.build_resources({"launcher": resource}) as built:
                return built.launcher

        with pytest.raises(dg.Failure) as failure:
            launcher(untagged).require_live_cluster()
        message = failure.value.description
        assert message.startswith(
            f"EMR cluster {untagged} is not the project's (not tagged project=fruits, or not in "
        )
        assert "\n" not in message and "start one with" in message
        assert launcher("").find_project_cluster() == tagged


def test_the_launcher_looks_for_the_tag_the_host_policy_and_create_use() -> None:
    from bootstrap.aws.emr_cluster import CLUSTER_TAGS
    from bootstrap.aws.iam import PROJECT_TAG as POLICY_TAG

    assert PROJECT_TAG == POLICY_TAG and PROJECT_TAG in CLUSTER_TAGS
