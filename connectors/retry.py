"""Exponential backoff with full jitter, and the retry loop that reads `retriable`.

Pure apart from the injected `sleep`, `clock` and `rand`, so tests drive it with fakes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from connectors.errors import ConnectorError

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int, ConnectorError, float], None]
"""Called before each wait with (attempt that failed, its error, seconds to wait)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """When to try again.

    Attempt `n` (1-based) that fails waits `uniform(0, min(max_delay, base * factor**(n-1)))`
    ("full jitter"; without jitter, the cap itself). A server's `Retry-After` replaces that
    wait, up to `max_retry_after`; longer asks end the retries. Stops after `max_attempts`
    calls in all, or when the next wait would pass `deadline` seconds since the first call.
    """

    base: float = 0.2
    factor: float = 2.0
    max_delay: float = 10.0
    max_attempts: int | None = 5
    deadline: float | None = None
    jitter: bool = True
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.max_delay < 0:
            raise ValueError("Backoff needs base >= 0, factor >= 1, max_delay >= 0")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("Backoff.max_attempts must be >= 1")
        if self.max_attempts is None and self.deadline is None:
            raise ValueError("Backoff needs max_attempts or deadline")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after failed attempt number `attempt` (1-based), before any Retry-After."""
        cap = min(self.max_delay, self.base * self.factor ** (attempt - 1))
        return cap * rand() if self.jitter else cap


NO_RETRY = Backoff(max_attempts=1)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date); None if absent
    or unreadable. A date in the past gives 0."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def is_retriable_status(status: int) -> bool:
    """5xx and 429 may succeed later; any other 4xx is final for that request."""
    return status == 429 or status >= 500


async def with_retries(
    call: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    sleep: Sleep = asyncio.sleep,
    on_retry: OnRetry | None = None,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> T:
    """Await `call()` until it succeeds, retrying while it raises a retriable ConnectorError.

    The last error is re-raised unchanged when retries end; anything that is not a
    ConnectorError (including cancellation) propagates at once.
    """
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except ConnectorError as exc:
            if not exc.retriable:
                raise
            if backoff.max_attempts is not None and attempt >= backoff.max_attempts:
                raise
            if exc.retry_after is not None:
                if exc.retry_after > backoff.max_retry_after:
                    raise
                wait = exc.retry_after
            else:
                wait = backoff.delay(attempt, rand)
            if backoff.deadline is not None and clock() - started + wait > backoff.deadline:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            await sleep(wait)
