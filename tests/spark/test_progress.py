"""Progress lines: logfmt, the arithmetic of what is left, and a real run reporting them."""

import re

import pytest

from spark import progress
from spark.progress import CountsParam, logfmt, partition_lines, short_stage_name


def parse(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line)}


def test_logfmt_quotes_what_has_spaces() -> None:
    line = logfmt(stage="featurize", name="collect at x.py:1", rate=12.345, empty="")
    assert line == 'stage=featurize name="collect at x.py:1" rate=12.3 empty=""'
    assert parse(line)["name"] == "collect at x.py:1"


def test_partition_lines_count_what_is_left_and_when_it_ends() -> None:
    lines = partition_lines("featurize", {"d1": 30, "d2": 10}, {"d1": 30, "d2": 50}, 4.0)
    d1, d2 = (parse(line) for line in lines)
    assert d1 == {
        "stage": "featurize",
        "partition": "d1",
        "done": "30",
        "to_go": "0",
        "images_per_s": "10.0",
        "eta_s": "0.0",
    }
    assert (d2["done"], d2["to_go"], d2["eta_s"]) == ("10", "40", "4.0")  # 40 left at 10/s


def test_nothing_done_yet_has_no_eta() -> None:
    [line] = partition_lines("featurize", {}, {"d1": 5}, 1.0)
    assert parse(line)["eta_s"] == "unknown"


def test_counts_accumulate_key_by_key() -> None:
    param = CountsParam()
    total = param.addInPlace(param.zero({}), {"a": 2})
    assert param.addInPlace(total, {"a": 1, "b": 4}) == {"a": 3, "b": 4}


def test_stage_names_lose_their_folders() -> None:
    assert short_stage_name("collect at /w/spark/pipeline.py:61") == "collect at pipeline.py:61"
    assert short_stage_name("parquet at X.java:0") == "parquet at X.java:0"


@pytest.mark.slow
def test_a_run_reports_each_partition_and_spark_stage(
    fresh_layout, upload_sample, weights, monkeypatch, extract
) -> None:
    monkeypatch.setattr(progress, "POLL_S", 0.2)
    dates = ["2026-05-01", "2026-05-02"]
    uploaded = upload_sample(fresh_layout, dates, per_date=60)
    lines: list[str] = []
    extract(fresh_layout, dates, weights, progress=lines.append, expected=uploaded)
    parsed = [parse(line) for line in lines]
    assert parsed[0] == {"stage": "featurize", "event": "start"}
    assert parsed[-1]["event"] == "done" and float(parsed[-1]["elapsed_s"]) > 0
    final = {p["partition"]: p for p in parsed if "partition" in p}
    assert {d: int(final[d]["done"]) for d in dates} == uploaded
    assert {final[d]["to_go"] for d in dates} == {"0"}
    assert any(p["stage"] == "spark" and int(p["tasks"]) > 0 for p in parsed if "tasks" in p)
    assert any(int(p["to_go"]) > 0 for p in parsed if "to_go" in p)  # mid-run


def test_a_failing_body_reports_failed_not_done(spark) -> None:
    lines: list[str] = []
    with pytest.raises(ValueError), progress.watch(spark, lines.append, "pca"):
        raise ValueError("boom")
    assert [parse(line)["event"] for line in lines] == ["start", "failed"]
