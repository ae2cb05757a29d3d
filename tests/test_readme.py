"""Every command the README and docs/*.md show is run: here, by a named test, or by CI; AWS-only
ones say so. Their links resolve, and their performance figures are bench/results.json's.

A command added to a doc without a place that runs it fails this test, so none rots.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
PERFORMANCE_DOC = REPO / "docs" / "performance.md"
COMMAND = re.compile(r"^(make |\.venv/bin/|DAGSTER_HOME=|export |aws )")

# Run by this file, each in a scratch folder (beside a link to .venv) against the test S3.
RUN_HERE = {
    ".venv/bin/python -m bootstrap.aws.cost --images 10000000 --region eu-west-3"
    " --deadline 2h": "Spot",
    ".venv/bin/python -m bootstrap.aws.buckets create": "encrypted, private",
    ".venv/bin/python -m bootstrap.aws.iam operator > fruits-operator-policy.json": "",
    ".venv/bin/python -m bootstrap.aws.iam host > fruits-host-policy.json": "",
    ".venv/bin/python -m bootstrap.sample.sample_data generate --dates 2026-11-20,2026-11-21 "
    "--per-date 60": "",
    ".venv/bin/python -m bootstrap.sample.sample_data generate --dates 2026-11-23": "",
    ".venv/bin/python -m bootstrap.local.local_s3 ls warehouse/": "",
}
# Run by a test elsewhere (the same command, or its CLI's main() with the same arguments).
ELSEWHERE = {
    r"make test": ".ci/run",
    r"make install": ".ci/run",  # make test installs first
    r"make lock": "tests/test_lock.py::test_make_lock_reproduces_the_committed_lock",
    r"make (demo|stop)": "tests/test_readme.py::test_make_demo_then_make_stop",
    r"make ui": "tests/ui/test_browser.py",
    r"make check": "tests/test_readme.py::test_make_check_runs_its_three_steps",
    r"make bench": "tests/bench/test_bench.py::test_the_benchmark_smoke_run_reports_every_figure",
    r"\.venv/bin/python -m bench\.report": (
        "tests/test_readme.py::test_the_performance_figures_are_those_of_bench_results"
    ),
    # The launch `make demo` runs (bootstrap.sample.demo.launch_command over its dates).
    r"DAGSTER_HOME=\S+ \.venv/bin/dg launch .*2026-11-22": (
        "tests/test_readme.py::test_make_demo_then_make_stop"
    ),
    r"\.venv/bin/dg check defs": (
        "tests/fruits_assets/test_definitions.py::test_the_definitions_load"
    ),
    r"\.venv/bin/python -m bootstrap\.local\.local_s3 (start\|stop\|status|ls \[FOLDER\])": (
        "tests/bootstrap/local/test_local_s3.py::test_cli_status_start_stop"
    ),
    r"\.venv/bin/python -m bootstrap\.local\.local_s3 status": (
        "tests/bootstrap/local/test_local_s3.py::test_cli_status_start_stop"
    ),
    r"\.venv/bin/python -m bootstrap\.local\.local_catalog (start\|stop\|status|status)": (
        "tests/bootstrap/local/test_local_catalog.py"
    ),
    r"\.venv/bin/python -m bootstrap\.sample\.sample_data import-fruits360 .*": (
        "tests/bootstrap/sample/test_sample_data.py::test_cli_uploads_into_the_raw_layout"
    ),
    r"\.venv/bin/python -m bootstrap\.aws\.erase .*": (
        "tests/spark/test_erasure.py::test_erasure_by_path_and_by_hash"
    ),
}
# AWS itself: run against the local stand-ins (moto's EMR, the fake EMR control plane).
AWS = {
    # The account set-up, in the order of docs/deploying-on-aws.md: buckets, roles, stage,
    # doctor, create.
    r"\.venv/bin/python -m bootstrap\.aws\.emr_cluster (roles|stage|doctor) .*": (
        "tests/bootstrap/aws/test_doctor.py::test_a_clean_account_has_no_findings"
    ),
    r"\.venv/bin/python -m bootstrap\.aws\.emr_cluster stage": (
        "tests/bootstrap/aws/test_doctor.py::test_a_clean_account_has_no_findings"
    ),
    r"export FRUITS_EMR_CLUSTER_ID="
    r"\$\(\.venv/bin/python -m bootstrap\.aws\.emr_cluster create .*": (
        "tests/bootstrap/aws/test_doctor.py::test_then_create_uses_the_roles_key_and_staged_zip"
    ),
    r"\.venv/bin/python -m bootstrap\.aws\.emr_cluster .*": (
        "tests/bootstrap/aws/test_emr_cluster.py::test_create_describe_steps_terminate_against_moto"
    ),
    r"\.venv/bin/python -m bootstrap\.aws\.wheelhouse stage": (
        "tests/bootstrap/aws/test_wheelhouse.py::"
        "test_the_cli_stages_the_wheelhouse_beside_the_bootstrap_action"
    ),
    r"export FRUITS_EMR_CLUSTER_ID=.*": (
        "tests/bootstrap/aws/test_emr_cluster.py::test_create_describe_steps_terminate_against_moto"
    ),
    r"\.venv/bin/dg launch .*2026-11-23": (
        "tests/fruits_assets/test_emr_round_trip.py::test_a_backfill_runs_as_one_emr_step_and_reports_back"
    ),
    r"\.venv/bin/python -m bootstrap\.aws\.weights stage": (
        "tests/bootstrap/aws/test_weights.py::test_stage_uploads_the_keras_imagenet_file_and_it_loads"
    ),
    r"export (FRUITS_DEPLOYMENT|FRUITS_BUCKET|FRUITS_WEIGHTS|DAGSTER_HOME)=.*": (
        "set by the tests above"
    ),
}
# Only on AWS, with no local stand-in: the AWS CLI's account set-up.
AWS_ONLY = [r"aws sso login", r"aws iam put-(user|role)-policy .*", r"aws s3 sync"]
AWS_ONLY += [r"aws s3 cp emr-tls\.zip .*"]  # test_doctor.py puts the same object


def doc_commands(doc: Path) -> list[str]:
    """Commands in fenced blocks (continuations joined, comments cut) and in inline code."""
    text = doc.read_text()
    found: list[str] = []
    for block in re.findall(r"^ *```\n(.*?)^ *```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line.strip())
            if COMMAND.match(line):
                found.append(line)
    text_outside = re.sub(r"^ *```\n.*?^ *```", "", text, flags=re.S | re.M)
    found += [c for c in re.findall(r"`([^`\n]+)`", text_outside) if COMMAND.match(c)]
    return sorted(set(found))


def where_it_runs(command: str) -> str | None:
    if command in RUN_HERE:
        return "tests/test_readme.py::test_readme_command_runs"
    for table in (ELSEWHERE, AWS):
        for pattern, place in table.items():
            if re.fullmatch(pattern, command):
                return place
    if any(re.fullmatch(pattern, command) for pattern in AWS_ONLY):
        return "AWS only"
    return None


def readme_commands() -> list[str]:
    """The commands of the README and of every doc page, each once."""
    return sorted({c for doc in DOCS for c in doc_commands(doc)})


def test_every_readme_command_runs_somewhere() -> None:
    commands = readme_commands()
    assert len(commands) > 20
    assert {c: where_it_runs(c) for c in commands if where_it_runs(c) is None} == {}
    assert set(RUN_HERE) <= set(commands)  # none of these is stale either


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_command_of_each_doc_runs_somewhere(doc: Path) -> None:
    unplaced = {c: where_it_runs(c) for c in doc_commands(doc) if where_it_runs(c) is None}
    assert unplaced == {}


@pytest.mark.parametrize(
    "place", sorted({p for p in [*ELSEWHERE.values(), *AWS.values()] if p.startswith("tests/")})
)
def test_the_named_tests_exist(place: str) -> None:
    path, _, name = place.partition("::")
    source = (REPO / path).read_text()
    assert not name or re.search(rf"^def {name}\(", source, flags=re.M), place


def scratch_env(tmp_path: Path, prefix: str) -> dict[str, str]:
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    home = tmp_path / "dagster_home"
    home.mkdir()
    return {**os.environ, "FRUITS_PREFIX": prefix, "DAGSTER_HOME": str(home)}


@pytest.mark.parametrize("command", sorted(RUN_HERE))
def test_readme_command_runs(command: str, tmp_path: Path, local_s3) -> None:
    env = scratch_env(tmp_path, "readme")
    done = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert RUN_HERE[command] in done.stdout
    if ">" in command:
        assert (tmp_path / command.split(">")[1].strip()).stat().st_size > 0


def assert_no_credentials(output: str, dagster_home: Path, scan) -> None:
    """The run's whole log (Dagster, Spark, workers) and what it left in DAGSTER_HOME (logs,
    event log) never show a credential: neither the local S3 server's nor the environment's."""
    from fruits_assets.deployments.local import DUMMY_CREDENTIALS

    secrets = set(DUMMY_CREDENTIALS.values()) | {
        os.environ[key] for key in DUMMY_CREDENTIALS if os.environ.get(key)
    }
    stored = [f for f in dagster_home.rglob("*") if f.is_file()]
    assert stored
    for where, text in [("output", output)] + [
        (str(f), f.read_bytes().decode(errors="ignore")) for f in stored
    ]:
        assert not [secret for secret in secrets if secret in text], where
        assert scan(text) == [], where


def assert_demo_summary(summary: dict) -> None:
    """The sample's counts (bootstrap.sample.demo's defaults: 60 small and 2 phone photos a
    date, two undecodable files on the first date), every image accounted for."""
    first, *others = sorted(summary["dates"])
    assert summary["dates"][first] == {"images": 64, "features": 62, "rejects": 2, "reduced": 62}
    for date in others:
        assert summary["dates"][date] == {
            "images": 62, "features": 62, "rejects": 0, "reduced": 62
        }  # fmt: skip
    assert summary["feature_shape"] == [186, 1280]
    assert summary["pca"]["rows"] == 186
    probe = summary["probe"]
    # 186 rows over 12 labels support no verdict on what the PCA keeps, and the probe says why:
    # each photo is an object of its own (bootstrap.sample.sample_data.photo_name), a fifth
    # of each label is held out, and that is fewer rows than the minimum of 100.
    assert probe["verdict"] == "inconclusive" and probe["k"] == 100
    assert probe["groups"]["train"] + probe["groups"]["test"] == 186  # no two photos grouped
    assert probe["groups"]["test"] == probe["rows_test"] and 30 <= probe["rows_test"] < 100
    assert probe["why"].startswith(f"{probe['rows_test']} held-out rows, fewer than 100")
    assert "(0)" not in probe["why"]  # no label left without held-out rows
    if probe["ratio"] is not None:
        assert probe["ratio"] == pytest.approx(probe["reduced"] / probe["full"])
    assert summary["outputs"]["probe_png"].endswith("feature_quality.png")
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in summary["rejects"]) == [
        "not_an_image.jpg",
        "truncated_upload.jpg",
    ]


@pytest.mark.slow
def test_make_demo_then_make_stop(
    scan_credentials,
    tmp_path: Path,
    unused_port: int,
    unused_catalog_uri: str,
    test_env,
    outside_readers,
    monkeypatch,
) -> None:
    """The README's main command, on servers and a bucket of its own; then `make stop`."""
    from bootstrap.local.local_catalog import from_uri
    from bootstrap.local.local_s3 import LocalS3

    endpoint = f"http://127.0.0.1:{unused_port}"
    catalog = from_uri(unused_catalog_uri)  # the demo's state folder: `make stop` finds it
    env = {
        **os.environ,
        "FRUITS_S3_ENDPOINT": endpoint,
        "FRUITS_CATALOG_URI": unused_catalog_uri,
        "FRUITS_BUCKET": "fruits-demo-test",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }

    def make(target: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", target], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
        )

    try:
        demo = make("demo")
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
        assert "Fruits! pipeline run" in demo.stdout
        assert "rejected" in demo.stdout and "explained variance" in demo.stdout
        assert "linear probe at k=" in demo.stdout and "probe_png" in demo.stdout
        assert_no_credentials(
            demo.stdout + demo.stderr, Path(env["DAGSTER_HOME"]), scan_credentials
        )
        assert_demo_summary(json.loads((REPO / ".fruits" / "last_run.json").read_text()))
        monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with dg.DagsterInstance.get() as instance:
            assert len(instance.get_run_records()) == 1  # the sample's dates in one run
        # left running to look at the outputs
        assert LocalS3(endpoint).responds() and catalog.responds()
        # ... by clients that are not this project's code, as the README shows them, with
        # the credentials the local S3 server takes
        from fruits_assets.deployments.local import DUMMY_CREDENTIALS

        for key, value in DUMMY_CREDENTIALS.items():
            monkeypatch.setenv(key, value)
        summary = json.loads((REPO / ".fruits" / "last_run.json").read_text())
        published = sum(d["features"] + d["rejects"] for d in summary["dates"].values())
        where = (unused_catalog_uri, endpoint, "eu-west-3", "fruits", "features")
        jars = ",".join(str(j) for j in sorted((REPO / ".jars").glob("*.jar")))
        seen = {
            "spark-sql": outside_readers.spark_sql_cli(
                *where, jars=jars, warehouse="s3://fruits-demo-test/fruits/warehouse", cwd=tmp_path
            ),
            "pyiceberg": outside_readers.pyiceberg(*where),
            "duckdb": outside_readers.duckdb(*where),
        }
        assert {len(rows) for rows in seen.values()} == {published}
        assert seen["spark-sql"] == seen["pyiceberg"] == seen["duckdb"]
    finally:
        stop = make("stop")
    assert stop.returncode == 0 and stop.stdout.count("stopped") == 2
    assert not LocalS3(endpoint).responds() and not catalog.responds()


MEASURED = r"\d[\d.,]*\s*(img/s|ms|s|MB|GB|GiB|USD|x|%)(?![\w(])"


def test_the_performance_figures_are_those_of_bench_results(tmp_path: Path) -> None:
    """docs/performance.md's figures are exactly what bench.report renders from
    bench/results.json (every figure, compared as text), and `python -m bench.report`
    rewrites them in place; the prose around them quotes no figure of its own."""
    from bench.report import BEGIN, END, main, render
    from bench.report import PERFORMANCE_DOC as written

    assert written == PERFORMANCE_DOC  # bench.report writes the page this test reads
    page = PERFORMANCE_DOC.read_text()
    results = json.loads((REPO / "bench" / "results.json").read_text())
    generated = page[page.index(BEGIN) : page.index(END) + len(END)]
    assert generated == render(results)
    assert re.findall(MEASURED, page.replace(generated, "")) == []
    copy = tmp_path / "performance.md"
    copy.write_text(page.replace(generated, f"{BEGIN}\nstale\n{END}"))
    assert main(["--doc", str(copy)]) == 0
    assert copy.read_text() == page


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_measured_figures_live_in_the_performance_page_only(doc: Path) -> None:
    """Only docs/performance.md holds bench.report's markers; the README quotes no measured
    figure at all (they come from bench/results.json, on that page)."""
    from bench.report import BEGIN, END

    text = doc.read_text()
    assert (BEGIN in text, END in text) == ((doc == PERFORMANCE_DOC),) * 2
    if doc == README:
        assert re.findall(MEASURED, text) == []


def headings(doc: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for title in re.findall(r"^#+ (.+)$", doc.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower().replace("`", ""))
        found.add(slug.replace(" ", "-"))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_links_resolve(doc: Path) -> None:
    """Every relative link (file, and heading anchor where given) points at something."""
    text = re.sub(r"^ *```\n.*?^ *```", "", doc.read_text(), flags=re.S | re.M)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    broken = []
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        if not target.exists() or (anchor and anchor not in headings(target)):
            broken.append(link)
    assert broken == []


def test_the_readme_is_short_and_maps_every_doc() -> None:
    """A newcomer's five minutes: about 150 lines, each docs/ page linked from its map, and
    where to add an asset, a check and a deployment said in the README itself."""
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    for doc in DOCS[1:]:
        assert f"](docs/{doc.name})" in text, doc.name
    where_to_add = text[text.index("## Where to add") :].split("\n## ")[0]
    for thing in ("**An asset**", "**A check**", "**A deployment**"):
        assert thing in where_to_add
    for place in (
        "fruits_assets/assets.py",
        "fruits_assets/names.py",
        "fruits_assets/deployments/",
    ):
        assert place in where_to_add


def test_make_check_runs_its_three_steps(repo_root: Path, test_env) -> None:
    """`make check` as written, its tests only collected (running them is `make test`'s job):
    ruff, `dg check defs` and the selection of tests not marked slow all work."""
    result = subprocess.run(
        ["make", "check"],
        cwd=repo_root,
        env={**os.environ, "PYTEST_ADDOPTS": "--collect-only"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "All checks passed!" in out and "All definitions loaded successfully." in out
    collected = re.search(r"(\d+)/\d+ tests collected \((\d+) deselected\)", out)
    assert collected and int(collected.group(1)) > 100 and int(collected.group(2)) > 0, out[-2000:]
