"""The `new_uploads` sensor at scale: S3 requests and seconds per tick as objects accumulate.

Synthetic objects (a few bytes each, no images) spread over upload dates; the figures are
those of a steady tick, once the sensor has seen every date (its first ticks list the history
once, NEW_DATES_PER_TICK dates at a time).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from spark.layout import Layout
from spark.uploads import UploadCursor, scan_uploads


class RequestCounter:
    """Counts the API calls a boto3 client makes (one per LIST page, GET, PUT...)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-call", self._count)

    def _count(self, event_name: str, **_: Any) -> None:
        self.calls[event_name.rsplit(".", 1)[-1]] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()


def dates_ending(last: str, count: int) -> list[str]:
    end = dt.date.fromisoformat(last)
    return [(end - dt.timedelta(days=n)).isoformat() for n in range(count - 1, -1, -1)]


Put = Callable[[str, str, bytes], Any]  # (bucket, key, body)


def populate(
    s3: Any, layout: Layout, dates: list[str], objects: int, start: int = 0, put: Put | None = None
) -> None:
    """Objects number start..objects-1, spread round-robin over the dates (a few bytes each),
    with `put` (by default a PutObject each)."""
    put = put or (lambda bucket, key, body: s3.put_object(Bucket=bucket, Key=key, Body=body))
    for n in range(start, objects):
        date = dates[n % len(dates)]
        put(layout.bucket, layout.raw_image_key(date, f"label{n % 7}", f"{n:08d}.jpg"), b"x")


def settle(s3: Any, layout: Layout, valid: set[str], cursor: UploadCursor) -> UploadCursor:
    """Ticks until a tick requests nothing: from an empty cursor, the sensor has seen every date
    (it lists at most NEW_DATES_PER_TICK unseen dates a tick)."""
    while True:
        scan = scan_uploads(s3, layout, cursor, valid)
        cursor = scan.cursor
        if not scan.requested:
            return cursor


def steady_tick(
    s3: Any, counter: RequestCounter, layout: Layout, valid: set[str], cursor: UploadCursor
) -> dict[str, Any]:
    """One tick with nothing new: its requests, seconds and the cursor after it."""
    counter.reset()
    started = time.perf_counter()
    scan = scan_uploads(s3, layout, cursor, valid)
    return {
        "requests": counter.total,
        "seconds": round(time.perf_counter() - started, 4),
        "requested": sorted(scan.requested),
        "cursor": scan.cursor,
    }


def measure(
    s3: Any,
    layout: Layout,
    sizes: list[int],
    dates: int = 365,
    last: str = "2027-10-31",
    put: Put | None = None,
) -> list[dict[str, Any]]:
    """Requests and seconds of a steady tick at each number of objects, accumulated in turn."""
    counter = RequestCounter(s3)
    all_dates = dates_ending(last, dates)
    valid = set(all_dates)
    populated, rows = 0, []
    for size in sorted(sizes):
        populate(s3, layout, all_dates, size, start=populated, put=put)
        populated = size
        cursor = settle(s3, layout, valid, UploadCursor())
        tick = steady_tick(s3, counter, layout, valid, cursor)
        del tick["cursor"]
        rows.append({"objects": size, "dates": dates, **tick})
    return rows
