"""The Dagster UI end to end in headless Chromium: `make ui`, the `fruits` resource's
configuration, the asset graph and its lineage, a backfill of two upload dates launched by
clicking, its partitions and its asset checks.

Screenshots of every step go to .fruits/artifacts/ui/.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from fruits_assets.definitions import defs
from spark.layout import Layout
from spark.settings import Settings

pytestmark = pytest.mark.slow

LOCATION, GROUP = "fruits_assets.definitions", "fruits"
ASSETS = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
EDGES = {
    ("raw_images", "image_features"),
    ("image_features", "pca_model"),
    ("image_features", "reduced_features"),
    ("pca_model", "reduced_features"),
    ("reduced_features", "feature_quality"),
}
CHECKS = {
    "raw_images": ["storage_in_eu"],
    "image_features": ["every_image_accounted", "reject_rate", "vectors_finite"],
}
BACKFILL_TIMEOUT_S = 480  # real Spark work on 2 cores, after Spark and TensorFlow start up

# Each edge is an SVG path from its source node's right side to its target node's left side
# (less the arrow head); nodes are foreignObjects whose first line of text is the asset's name.
EDGES_JS = """svg => {
  const nodes = [...svg.querySelectorAll('foreignObject')].map(fo => ({
    name: (fo.firstElementChild?.innerText ?? '').trim().split('\\n')[0].trim(),
    x: +fo.getAttribute('x'), y: +fo.getAttribute('y'),
    w: +fo.getAttribute('width'), h: +fo.getAttribute('height')}));
  const near = (px, py, side) => nodes.find(n =>
    Math.abs(side === 'right' ? n.x + n.w - px : n.x - px) < 12 && n.y <= py && py <= n.y + n.h);
  return [...svg.querySelectorAll('path[marker-end]')].map(p => {
    const a = p.getPointAtLength(0), b = p.getPointAtLength(p.getTotalLength());
    return [near(a.x, a.y, 'right')?.name ?? null, near(b.x, b.y, 'left')?.name ?? null];
  });
}"""


def shot(page: Page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=path)
    print(f"screenshot: {path}")
    return path


def skip_community_modal(page: Page) -> None:
    """A fresh DAGSTER_HOME greets the first visit with a newsletter dialog: skip it whenever
    it shows up."""
    dialog = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
    page.add_locator_handler(dialog, lambda d: d.get_by_role("button", name="Skip").click())


def stop_sensor(page: Page, base: str, name: str) -> None:
    """With the sensor running, the daemon would launch runs of its own for the uploaded dates."""
    page.goto(f"{base}/automation")
    row = (
        page.locator("div")
        .filter(has=page.get_by_text(name, exact=True))
        .filter(has=page.locator("input[type=checkbox]"))
        .last  # the innermost: the sensor's own row
    )
    checkbox = page.locator("input[type=checkbox]")
    switch = row.locator("input[type=checkbox]").last
    expect(switch).to_be_checked(timeout=60_000)  # disabled until the instance's state loads
    row.locator("label").filter(has=checkbox).last.click()  # the input itself is hidden
    expect(switch).not_to_be_checked()
    page.reload()
    expect(switch).not_to_be_checked()  # stored in the instance, not only on the page


def open_graph(page: Page, base: str) -> Locator:
    page.goto(f"{base}/locations/{LOCATION}/asset-groups/{GROUP}")
    graph = page.locator("svg").filter(has=page.locator("foreignObject"))
    for asset in ASSETS:
        expect(node(graph, asset)).to_be_visible(timeout=90_000)  # the code location loads
    expect(graph.get_by_role("progressbar")).to_have_count(0, timeout=60_000)
    return graph


def check_resource_config(page: Page, base: str, resource: str, fields: dict[str, object]) -> None:
    """The resource's page in the UI: its configuration, one row per field (its name above its
    description, its type, its value as JSON)."""
    page.goto(f"{base}/locations/{LOCATION}/resources/{resource}")
    for name, value in fields.items():
        row = page.get_by_role("row").filter(has=page.get_by_text(name, exact=True))
        # A deployment's value is the field's default, which the UI marks as such.
        text = json.dumps(value)
        shown = row.get_by_role("cell", name=text, exact=True).or_(
            row.get_by_role("cell", name=f"{text} Default", exact=True)
        )
        expect(shown).to_be_visible(timeout=90_000)


def node(graph: Locator, asset: str) -> Locator:
    return graph.locator("foreignObject").filter(has=graph.page.get_by_text(asset, exact=True))


def check_partitions(page: Page, base: str, asset: str, dates: list[str], done: bool) -> None:
    """The partitions tab: how many are materialized; once done, each date's materialization."""
    page.goto(f"{base}/assets/{asset}?view=partitions")
    expect(page.get_by_text(f"Materialized ({len(dates) if done else 0})")).to_be_visible()
    expect(page.get_by_text("Failed (0)")).to_be_visible()
    for day in dates if done else []:
        search = page.get_by_placeholder(re.compile("Filter by name"))
        search.fill(day)  # the list is virtual: only what fits is in the DOM
        column = page.locator("div").filter(has=search).filter(has=page.get_by_text(day)).last
        column.get_by_text(day, exact=True).filter(visible=True).first.click()
        expect(page).to_have_url(re.compile(rf"partition={day}"))
        # The detail pane: the date's title with its state, one materialization.
        title = page.locator("div").filter(has=page.get_by_text(day, exact=True))
        expect(title.filter(has=page.get_by_text("Materialized", exact=True)).last).to_be_visible()
        expect(page.get_by_text("View all historical events (1)")).to_be_visible()


def launch_backfill(page: Page, base: str, dates: list[str], artifacts: Path) -> str:
    """Select raw_images and image_features in the graph, then Materialize -> the two dates ->
    Launch backfill; returns the backfill's id."""
    graph = open_graph(page, base)
    node(graph, "raw_images").get_by_text("raw_images", exact=True).click()
    node(graph, "image_features").get_by_text("image_features", exact=True).click(
        modifiers=["Shift"]
    )
    page.get_by_role("button", name=re.compile(r"Materialize selected \(2\)")).click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize 2 assets")
    partitions = dialog.get_by_placeholder(re.compile("partitions", re.IGNORECASE))
    partitions.fill(f"[{dates[0]}...{dates[-1]}]")
    partitions.press("Enter")
    expect(dialog.get_by_text(f"{len(dates)} partitions", exact=True)).to_be_visible()
    shot(page, artifacts, "04-launch-backfill")
    dialog.get_by_role("button", name="Launch backfill").click()
    toast = page.get_by_text(re.compile(r"Created backfill \w+"))
    expect(toast).to_be_visible()
    return toast.inner_text().split()[-1]


def backfill_status(page: Page) -> str:
    """The backfill page's status, once rendered: the label and its value share a parent."""
    column = page.get_by_text("Status", exact=True).locator("xpath=..")
    expect(column).to_contain_text(re.compile(r"Status\s*\S"), timeout=30_000)  # a busy machine
    return column.inner_text().replace("Status", "", 1).strip()


def wait_for_backfill(page: Page, base: str, backfill_id: str, timeout_s: float) -> None:
    page.goto(f"{base}/runs/b/{backfill_id}")
    deadline = time.monotonic() + timeout_s
    while (status := backfill_status(page)) != "Succeeded":
        if re.search(r"fail|cancel", status, re.IGNORECASE):
            pytest.fail(f"backfill {status}:\n{failures(base, backfill_id)}")
        assert time.monotonic() < deadline, f"backfill still '{status}' after {timeout_s} s"
        time.sleep(5)
        page.reload()
    # One progress bar per asset of the backfill.
    expect(page.get_by_text("100% completed")).to_have_count(len(CHECKS))


FAILURES_QUERY = """query Failures($backfill: String!) {
  partitionBackfillOrError(backfillId: $backfill) {
    ... on PartitionBackfill { runs(limit: 20) { runId status } }
    ... on PythonError { message }
  }
}"""
ERRORS_QUERY = """query Errors($run: ID!) {
  logsForRun(runId: $run) {
    ... on EventConnection { events {
      ... on ErrorEvent { error { message stack causes { message } } }
      ... on MessageEvent { message }
    } }
  }
}"""


def graphql(base: str, query: str, variables: dict[str, str]) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["data"]


def failures(base: str, backfill_id: str) -> str:
    """What the backfill's failed runs reported, from the webserver's GraphQL API: a failure
    in CI leaves no other trace of its cause."""
    backfill = graphql(base, FAILURES_QUERY, {"backfill": backfill_id})["partitionBackfillOrError"]
    lines = [backfill.get("message", "")]
    for run in backfill.get("runs", []):
        lines.append(f"run {run['runId']}: {run['status']}")
        if run["status"] != "FAILURE":
            continue
        events = graphql(base, ERRORS_QUERY, {"run": run["runId"]})["logsForRun"]
        for event in events.get("events", []):
            if event.get("error"):
                error = event["error"]
                causes = " / ".join(cause["message"] for cause in error["causes"])
                lines.append(f"  {error['message']}{''.join(error['stack'][-3:])} {causes}")
    return "\n".join(line for line in lines if line)


def backfill_runs(page: Page, base: str, backfill_id: str) -> list[str]:
    page.goto(f"{base}/runs/b/{backfill_id}?tab=runs")
    runs = page.locator("a[href^='/runs/']").filter(has_text=re.compile(r"^\w{8}$"))
    expect(runs.first).to_be_visible()
    return sorted(set(runs.all_inner_texts()))


def check_checks_passed(page: Page, base: str, asset: str, checks: list[str]) -> None:
    page.goto(f"{base}/assets/{asset}?view=checks")
    expect(page.get_by_text(f"Checks ({len(checks)})")).to_be_visible()
    for check in checks:
        # The list on the left: each check's name above its latest status; the innermost match.
        entry = (
            page.locator("div")
            .filter(has=page.get_by_text(check, exact=True))
            .filter(has=page.get_by_text("Succeeded", exact=True))
            .last
        )
        expect(entry).to_be_visible()
        entry.click()
        expect(page.get_by_text("Passed", exact=True).first).to_be_visible()


@contextmanager
def screenshot_on_failure(page: Page, artifacts: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        shot(page, artifacts, "failed")
        raise


def check_listed(page: Page, base: str, asset: str, checks: list[str]) -> None:
    """The asset's checks are listed on its page, before any run evaluated them."""
    page.goto(f"{base}/assets/{asset}?view=checks")
    expect(page.get_by_text(f"Checks ({len(checks)})")).to_be_visible()
    for check in checks:
        expect(page.get_by_text(check, exact=True).first).to_be_visible()


def test_a_backfill_of_two_upload_dates_launched_in_the_ui(
    dagster_ui: str,
    page: Page,
    artifacts: Path,
    settings: Settings,
    fresh_layout: Layout,
    upload_sample,
) -> None:
    started = time.monotonic()
    first = date.fromisoformat(settings.partitions_start)
    dates = [first.isoformat(), (first + timedelta(days=1)).isoformat()]
    skip_community_modal(page)
    with screenshot_on_failure(page, artifacts):
        stop_sensor(page, dagster_ui, "new_uploads")
        shot(page, artifacts, "01-sensor-stopped")
        # The configuration is the `fruits` resource's fields; FRUITS_PREFIX of `make ui`
        # (tests/ui/conftest.py) reached its field.
        fields = {"bucket": settings.bucket, "prefix": fresh_layout.prefix, "pca_k": 100}
        check_resource_config(page, dagster_ui, "fruits", fields)
        shot(page, artifacts, "01-fruits-resource")
        # One image per label, no broken file: every check passes for both dates.
        upload_sample(fresh_layout, dates, per_date=12, broken=False)

        graph = open_graph(page, dagster_ui)
        assert {tuple(edge) for edge in graph.evaluate(EDGES_JS)} == EDGES
        shot(page, artifacts, "02-asset-graph")
        check_listed(page, dagster_ui, "feature_quality", ["probe_keeps_accuracy"])
        shot(page, artifacts, "02-feature-quality-check")

        check_partitions(page, dagster_ui, "image_features", dates, done=False)
        shot(page, artifacts, "03-partitions-before")

        backfill_id = launch_backfill(page, dagster_ui, dates, artifacts)
        wait_for_backfill(page, dagster_ui, backfill_id, BACKFILL_TIMEOUT_S)
        shot(page, artifacts, "05-backfill-succeeded")
        assert len(backfill_runs(page, dagster_ui, backfill_id)) == 1  # single_run policy
        shot(page, artifacts, "06-backfill-runs")

        for asset, checks in CHECKS.items():
            check_partitions(page, dagster_ui, asset, dates, done=True)
            shot(page, artifacts, f"07-{asset}-partitions")
            check_checks_passed(page, dagster_ui, asset, checks)
            shot(page, artifacts, f"08-{asset}-checks")

        open_graph(page, dagster_ui)
        shot(page, artifacts, "09-asset-graph-after")
    print(f"UI steps and backfill: {time.monotonic() - started:.0f} s; screenshots in {artifacts}")
