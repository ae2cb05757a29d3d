"""Per-date locks on S3 alone (conditional PUTs): exclusive, released, ordered, expiring."""

import threading
import time

import pytest

from spark import locks
from spark.locks import LockTimeout, date_locks, holder

D1, D2, D3 = "2026-04-01", "2026-04-02", "2026-04-03"


def test_a_lock_is_exclusive(s3, fresh_layout) -> None:
    with date_locks(s3, fresh_layout, [D2], owner="first"):
        assert holder(s3, fresh_layout, D2)["owner"] == "first"
        started = time.monotonic()
        with (
            pytest.raises(LockTimeout, match=f"{D2} is locked by .*first") as raised,
            date_locks(s3, fresh_layout, [D1, D2], owner="second", wait_s=0.3, poll_s=0.05),
        ):
            pytest.fail("a second writer entered a locked date")
        assert time.monotonic() - started >= 0.3
        assert fresh_layout.lock_key(D2) in str(raised.value)
        # The first holder keeps its lock; the date the second one did take (D1) is let go.
        assert holder(s3, fresh_layout, D2)["owner"] == "first"
        assert holder(s3, fresh_layout, D1) is None


def test_a_lock_is_released_on_exit_also_when_the_body_raises(s3, fresh_layout) -> None:
    with date_locks(s3, fresh_layout, [D1, D2], owner="clean"):
        assert holder(s3, fresh_layout, D1)["owner"] == "clean"
        assert holder(s3, fresh_layout, D2)["owner"] == "clean"
    assert holder(s3, fresh_layout, D1) is None
    assert holder(s3, fresh_layout, D2) is None

    with (
        pytest.raises(RuntimeError, match="body failed"),
        date_locks(s3, fresh_layout, [D1, D2], owner="failing"),
    ):
        assert holder(s3, fresh_layout, D1)["owner"] == "failing"
        raise RuntimeError("body failed")
    assert holder(s3, fresh_layout, D1) is None
    assert holder(s3, fresh_layout, D2) is None
    # Free at once for the next writer: no waiting.
    with date_locks(s3, fresh_layout, [D1, D2], owner="next", wait_s=0):
        assert holder(s3, fresh_layout, D1)["owner"] == "next"


def test_dates_are_taken_in_order_so_two_writers_never_deadlock_nor_overlap(
    s3, fresh_layout, monkeypatch
) -> None:
    taken: list[tuple[str, str]] = []  # (writer, lock key), in the order they were taken
    original = locks._try_take

    def slow_take(s3, bucket, key, owner, ttl_s):
        etag = original(s3, bucket, key, owner, ttl_s)
        if etag is not None:
            taken.append((owner, key))
            # Hold the first date a while before asking for the next, as a slow writer
            # would: taken in the callers' orders, [D1, D2] and [D2, D1] would deadlock.
            time.sleep(0.2)
        return etag

    monkeypatch.setattr(locks, "_try_take", slow_take)
    inside: dict[str, tuple[float, float]] = {}
    errors: list[BaseException] = []

    def writer(name: str, dates: list[str], delay: float) -> None:
        time.sleep(delay)
        try:
            with date_locks(s3, fresh_layout, dates, owner=name, wait_s=10, poll_s=0.05):
                entered = time.monotonic()
                time.sleep(0.3)
                inside[name] = (entered, time.monotonic())
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [
        threading.Thread(target=writer, args=("a", [D1, D2], 0.0)),
        # A little later, so that 'a' holds its first date when 'b' asks for its own first.
        threading.Thread(target=writer, args=("b", [D2, D1], 0.05)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(inside) == ["a", "b"]
    (a_in, a_out), (b_in, b_out) = inside["a"], inside["b"]
    assert a_out <= b_in or b_out <= a_in, f"both held {D1} and {D2} at once: {inside}"
    for name in ("a", "b"):
        keys = [key for owner, key in taken if owner == name]
        assert keys == [fresh_layout.lock_key(D1), fresh_layout.lock_key(D2)]
    assert holder(s3, fresh_layout, D1) is None and holder(s3, fresh_layout, D2) is None


def test_an_expired_lock_is_taken_over(s3, fresh_layout) -> None:
    with date_locks(s3, fresh_layout, [D3], owner="dead", ttl_s=0.05):
        time.sleep(0.2)  # its holder stalls past its lock's expiry
        with date_locks(s3, fresh_layout, [D3], owner="alive", wait_s=5, poll_s=0.05):
            assert holder(s3, fresh_layout, D3)["owner"] == "alive"


def test_an_unexpired_lock_is_not_taken_over(s3, fresh_layout) -> None:
    with date_locks(s3, fresh_layout, [D3], owner="slow", ttl_s=60):
        time.sleep(0.2)
        with (
            pytest.raises(LockTimeout),
            date_locks(s3, fresh_layout, [D3], owner="eager", wait_s=0.3, poll_s=0.05),
        ):
            pytest.fail("took over a lock that had not expired")
        assert holder(s3, fresh_layout, D3)["owner"] == "slow"


def test_a_lock_taken_over_is_not_deleted_by_its_former_holder(s3, fresh_layout) -> None:
    former = date_locks(s3, fresh_layout, [D3], owner="former", ttl_s=0.05)
    former.__enter__()
    time.sleep(0.2)
    current = date_locks(s3, fresh_layout, [D3], owner="current", wait_s=5, poll_s=0.05)
    current.__enter__()
    try:
        former.__exit__(None, None, None)  # its release must spare the new holder's lock
        assert holder(s3, fresh_layout, D3)["owner"] == "current"
        with (
            pytest.raises(LockTimeout),
            date_locks(s3, fresh_layout, [D3], owner="third", wait_s=0.2, poll_s=0.05),
        ):
            pytest.fail("the lock was freed by its former holder")
    finally:
        current.__exit__(None, None, None)
    assert holder(s3, fresh_layout, D3) is None
