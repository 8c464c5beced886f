"""Backoff, Retry-After parsing and the retry loop, driven by a fake sleep and clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import (
    ConnectorError,
    IncreffError,
    InvsyncError,
    MarketplaceError,
    TransportError,
)
from connectors.retry import Backoff, is_retriable_status, parse_retry_after, with_retries


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """A call that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def retriable(retry_after: float | None = None) -> ConnectorError:
    return ConnectorError("boom", retriable=True, retry_after=retry_after, status=503)


def test_error_tree() -> None:
    for cls in (TransportError, IncreffError, MarketplaceError):
        assert issubclass(cls, ConnectorError)
    assert issubclass(ConnectorError, InvsyncError)
    assert TransportError("x").retriable is True
    assert IncreffError("x").retriable is False
    err = IncreffError("bad", code="BAD_DATA", description="[sku]", status=400, endpoint="e")
    assert str(err) == "e: HTTP 400: BAD_DATA: bad ([sku])"
    assert "BAD_DATA" in repr(err) and "retriable=False" in repr(err)


@given(attempt=st.integers(1, 40), r=st.floats(0, 1, exclude_max=True))
def test_full_jitter_stays_within_the_capped_exponential(attempt: int, r: float) -> None:
    b = Backoff(base=0.1, factor=2, max_delay=5)
    cap = min(5.0, 0.1 * 2 ** (attempt - 1))
    assert 0 <= b.delay(attempt, lambda: r) <= cap
    assert Backoff(base=0.1, factor=2, max_delay=5, jitter=False).delay(attempt) == cap


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        Backoff(max_attempts=0)
    with pytest.raises(ValueError, match="max_attempts or deadline"):
        Backoff(max_attempts=None)
    with pytest.raises(ValueError, match="factor"):
        Backoff(factor=0.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("7", 7.0), (" 1.5 ", 1.5), ("-3", 0.0), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0


def test_retriable_statuses() -> None:
    assert [
        s for s in (200, 400, 401, 404, 408, 409, 429, 500, 502, 503) if is_retriable_status(s)
    ] == [
        429,
        500,
        502,
        503,
    ]


async def test_retries_until_success_with_growing_waits() -> None:
    t = FakeTime()
    call = Script(retriable(), retriable(), retriable())
    b = Backoff(base=1, factor=2, max_delay=100, max_attempts=5, jitter=False)
    assert await with_retries(call, b, sleep=t.sleep, clock=t.clock) == "ok"
    assert call.calls == 4
    assert t.sleeps == [1, 2, 4]


async def test_max_delay_caps_the_wait() -> None:
    t = FakeTime()
    b = Backoff(base=1, factor=10, max_delay=3, max_attempts=4, jitter=False)
    await with_retries(Script(retriable(), retriable(), retriable()), b, sleep=t.sleep)
    assert t.sleeps == [1, 3, 3]


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    t = FakeTime()
    errors = [retriable() for _ in range(5)]
    call = Script(*errors)
    with pytest.raises(ConnectorError) as info:
        await with_retries(call, Backoff(max_attempts=3), sleep=t.sleep)
    assert info.value is errors[2]
    assert call.calls == 3 and len(t.sleeps) == 2


async def test_non_retriable_error_is_raised_at_once() -> None:
    t = FakeTime()
    err = IncreffError("bad", code="BAD_DATA", status=400)
    call = Script(err)
    with pytest.raises(IncreffError) as info:
        await with_retries(call, Backoff(), sleep=t.sleep)
    assert info.value is err and call.calls == 1 and t.sleeps == []


async def test_other_exceptions_are_not_retried() -> None:
    t = FakeTime()
    call = Script(KeyError("x"))
    with pytest.raises(KeyError):
        await with_retries(call, Backoff(), sleep=t.sleep)
    assert call.calls == 1


async def test_retry_after_replaces_the_backoff() -> None:
    t = FakeTime()
    call = Script(retriable(retry_after=7.0), retriable())
    b = Backoff(base=1, factor=2, max_delay=2, jitter=False)
    await with_retries(call, b, sleep=t.sleep)
    assert t.sleeps == [7.0, 2.0]


async def test_retry_after_beyond_the_limit_ends_retries() -> None:
    t = FakeTime()
    with pytest.raises(ConnectorError):
        await with_retries(
            Script(retriable(retry_after=600)), Backoff(max_retry_after=60), sleep=t.sleep
        )
    assert t.sleeps == []


async def test_deadline_stops_before_a_wait_that_would_pass_it() -> None:
    t = FakeTime()
    b = Backoff(base=1, factor=2, max_delay=100, max_attempts=None, deadline=10, jitter=False)
    call = Script(*[retriable() for _ in range(10)])
    with pytest.raises(ConnectorError):
        await with_retries(call, b, sleep=t.sleep, clock=t.clock)
    assert t.sleeps == [1, 2, 4]  # the next wait (8) would end at 15 > 10
    assert call.calls == 4


async def test_on_retry_sees_attempt_error_and_wait() -> None:
    t = FakeTime()
    seen: list[tuple[int, str, float]] = []
    err = retriable(retry_after=0.5)
    await with_retries(
        Script(err),
        Backoff(),
        sleep=t.sleep,
        on_retry=lambda n, e, w: seen.append((n, e.message, w)),
    )
    assert seen == [(1, "boom", 0.5)]


async def test_jitter_uses_the_injected_random() -> None:
    t = FakeTime()
    b = Backoff(base=2, factor=2, max_delay=100)
    await with_retries(Script(retriable(), retriable()), b, sleep=t.sleep, rand=lambda: 0.5)
    assert t.sleeps == [1.0, 2.0]
