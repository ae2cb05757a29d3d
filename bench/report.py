"""The performance figures of docs/performance.md, written from bench/results.json (the last
`make bench`).

    python -m bench.report            # rewrites the part of docs/performance.md between the markers

Every figure of that part comes from the results file; tests/test_readme.py checks that the
page holds exactly what this module renders from the committed results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.targets import RESULTS, SCALE_TARGETS, TARGETS
from bootstrap import cli
from spark.settings import PROJECT_ROOT

PERFORMANCE_DOC = PROJECT_ROOT / "docs" / "performance.md"
BEGIN = "<!-- bench:begin (python -m bench.report writes this part from bench/results.json) -->"
END = "<!-- bench:end -->"

# (what, how it is shown): the figures besides the targets, in the table's order.
FIGURES = [
    ("decode + model alone on the bytes in memory, LiteRT, 2 processes x 1 thread (each "
     "ceiling: the mean of a window right before and one right after the pipeline's run)",
     "{decode_model_ceiling_ips:.0f} img/s, {decode_model_cpu_ms_per_image:.2f} ms CPU/img"),
    ("pipeline: S3 bytes -> 1280 features in an Iceberg table on S3, local[2]",
     "{pipeline_ips:.0f} img/s, {pipeline_cpu_ms_per_image:.2f} ms CPU/img"),
    ("... ratio to decode + model alone", "{ratio_to_ceiling:.2f}"),
    ("decode + model alone reading each image from the same local S3 server (through the "
     "proxy, 16 GETs in flight per process), 2 processes x 1 thread",
     "{decode_model_s3_ceiling_ips:.0f} img/s, {decode_model_s3_cpu_ms_per_image:.2f} ms "
     "CPU/img (before, after: {s3_ceiling_windows_text})"),
    ("... pipeline's ratio to it (target of issue 22: >= 0.85); photos 1280x960",
     "{ratio_to_s3_ceiling:.2f}; {phone_ratio_to_s3_ceiling:.2f}"),
    ("... requests by type", "{requests_text}"),
    ("... CPU ms per image by process", "{roles_text}"),
    ("... its floors here (bench.floors): a signed GET alone over a kept-alive connection; "
     "Spark with no image (a fixed vector per manifest row, cached, staged)",
     "{floor_get_cpu_ms_per_image:.2f} ms (photos {phone_floor_get_cpu_ms_per_image:.2f}); "
     "{floor_spark_cpu_ms_per_image:.2f} ms CPU/img"),
    ("... the lowest CPU ratio they leave: (decode + model + floors) / decode + model; "
     "photos 1280x960", "{floor_cpu_ratio:.2f}; {phone_floor_cpu_ratio:.2f}"),
    ("... the highest ratio to the S3 ceiling they leave (every core busy at the floors, with "
     "the S3 server's and proxy's CPU); photos 1280x960",
     "{floor_ratio_to_s3_ceiling:.2f}; {phone_floor_ratio_to_s3_ceiling:.2f}"),
    ("... with 100 ms per S3 request / without", "{latency_100ms_ratio:.2f}"),
    ("... seconds added by 30 ms, by 100 ms per request (each against the mean of the runs "
     "without delay right before and right after it); the runs without, in order",
     "{latency_30ms_added_s:.1f} s; {latency_100ms_added_s:.1f} s; {undelayed_seconds_text}"),
    ("... fixed S3 requests (besides one GET per image: serial, each delayed); x 30 ms",
     "{requests_besides_gets}; {fixed_requests_30ms_s:.1f} s"),
    ("... the same, before the Iceberg tables (Parquet + pointers + locks, "
     "`make bench` of {pointer_design_bench_date})",
     "{pointer_design_fixed_requests}; {pointer_design_fixed_requests_30ms_s:.1f} s"),
    ("BASELINE: the common public pattern (model rebuilt per task from broadcast weights, "
     "Keras `predict`, `repartition(24)`, default Arrow batch, binaryFile)",
     "{baseline_ips:.1f} img/s, {baseline_requests_per_image:.2f} requests and "
     "{baseline_cpu_ms_per_image:.1f} ms CPU per image"),
    ("phone photos 1280x960: pipeline; ratio to decode + model alone; CPU ratio",
     "{phone_pipeline_ips:.0f} img/s; {phone_ratio_to_ceiling:.2f}; {phone_cpu_ratio:.2f}"),
    ("... requests per image; S3 server CPU ms per image",
     "{phone_requests_per_image:.2f}; {phone_s3_server_cpu_ms_per_image:.2f}"),
    ("... decode, Pillow (draft mode) against simplejpeg (DCT scaling); largest difference",
     "{decode_ms_phone:.2f} ms against {decode_ms_phone_simplejpeg:.2f} ms; "
     "{simplejpeg_max_abs_difference:.1e}"),
    ("... decode's share of the model's CPU time", "{decode_share_phone:.2f}"),
    ("TensorFlow threads 2 (LiteRT interpreter built again, with 2 threads)",
     "{tf_threads_2_ips:.0f} img/s, {tf_threads_2_model_builds} model builds"),
    ("peak RSS per workload, each in a Spark session of its own: Python worker; whole run "
     "(100x100 / 1280x960)",
     "{own_session_worker_peak_rss_mb:.0f} / {phone_own_session_worker_peak_rss_mb:.0f} MB; "
     "{own_session_run_peak_rss_mb:.0f} / {phone_own_session_run_peak_rss_mb:.0f} MB"),
    ("model builds counted in the workers: warm-up; all later runs",
     "{model_builds_warmup}; {model_builds_after_warmup}"),
    ("PCA fit, {pca_rows} x 1280 -> 100; share of featurizing as many images",
     "{pca_fit_s:.1f} s; {pca_share_of_featurize:.3f}"),
    ("end to end: the 3 sample dates through the dagster CLI; Dagster start-up; "
     "Spark + TensorFlow start-up", "{e2e_s:.0f} s; {dagster_startup_s:.1f} s; "
     "{spark_and_tf_startup_s:.1f} s"),
    # bench.scale, on synthetic feature rows
    ("scale: `new_uploads` S3 requests per steady tick (seconds on moto), by objects over "
     "{scale_sensor_dates} dates", "{sensor_text}"),
    ("scale: PCA refit, {scale_refit_rows:,} rows over {scale_refit_dates} dates, "
     "k = {scale_refit_k}, {scale_refit_method}", "{scale_refit_s:.1f} s"),
    ("scale: ... the per-date statistics of those rows (once per date, with its features)",
     "{scale_statistics_s:.1f} s"),
    ("scale: reduced rows per second after the refit", "{scale_reduced_rows_per_s:,.0f}"),
    ("scale: data files per date, features table, {scale_files_dates} dates written in one "
     "run on {scale_spark_cores} cores", "{scale_files_per_date_max} at most, "
     "{scale_files_per_date_mean:.2f} on average"),
    ("scale: Dagster, a {scale_backfill_dates}-date backfill of the ingest assets: plan; "
     "launch (runs queued); its code location's load",
     "{scale_backfill_plan_s:.2f} s; {scale_backfill_launch_s:.1f} s; "
     "{scale_backfill_code_location_load_s:.1f} s"),
]  # fmt: skip


def _fields(results: dict[str, Any]) -> dict[str, Any]:
    by_type = sorted(results["requests_by_type"].items(), key=lambda kv: -kv[1])
    roles = results["cpu_ms_per_image_by_role"].items()
    ticks = results.get("scale_sensor_requests_per_tick", [])
    sensor = {
        "sensor_text": "; ".join(
            f"{t['objects']:,}: {t['requests']} ({t['seconds']:.2f} s)" for t in ticks
        ),
        "scale_sensor_dates": ticks[0]["dates"],
    } if ticks else {}  # fmt: skip
    return (
        results
        | sensor
        | {
            "requests_text": ", ".join(f"{name} {count}" for name, count in by_type),
            "roles_text": ", ".join(f"{role} {ms:.2f}" for role, ms in roles),
            "undelayed_seconds_text": ", ".join(
                f"{seconds:.1f} s" for seconds in results["latency_0ms_seconds"]
            ),
            "s3_ceiling_windows_text": ", ".join(
                f"{ips:.0f} img/s" for ips in results["decode_model_s3_ceiling_ips_before_after"]
            ),
        }
    )


def render(results: dict[str, Any]) -> str:
    """The part of docs/performance.md between the markers, markers included."""
    fields = _fields(results)
    lines = [
        BEGIN,
        f"Figures of {results['date'][:10]}, {results['machine']}, `{results['command']}`: "
        f"{results['images']:,} images of 100x100, {results['phone_images']:,} photos of "
        f"1280x960."
        + (
            f" Scale figures (`python -m bench.scale`) of {results['scale_date'][:16]} UTC."
            if "scale_date" in results
            else ""
        ),
        "",
        "| target | measured | required | |",
        "|---|---|---|---|",
    ]
    for key, comparison, target, label in TARGETS + SCALE_TARGETS:
        if key not in results["targets"]:
            continue  # not measured in this run (`--no-scale`)
        verdict = "met" if results["targets"][key] else "**not met**"
        lines.append(f"| {label} | {results[key]:.2f} | {comparison} {target:g} | {verdict} |")
    lines += ["", "| figure | measured |", "|---|---|"]
    for what, shown in FIGURES:
        try:
            lines.append(f"| {what.format(**fields)} | {shown.format(**fields)} |")
        except KeyError:
            continue  # not measured in this run (`--no-e2e`)
    return "\n".join([*lines, END])


def rewrite(doc: Path, results: dict[str, Any]) -> None:
    text = doc.read_text()
    before, _, rest = text.partition(BEGIN)
    _, found, after = rest.partition(END)
    if not found:
        raise SystemExit(f"{doc}: the markers of the performance figures are missing")
    doc.write_text(before + render(results) + after)


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bench.report", __doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--doc", type=Path, default=PERFORMANCE_DOC)
    args = parser.parse_args(argv)
    rewrite(args.doc, json.loads(args.results.read_text()))
    print(f"{args.doc}: performance figures of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
