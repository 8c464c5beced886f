"""The state the router keeps per order code: what it ordered, and what waits for Increff.

A `Lane` is one value of the router's table (keyed by orderCode / returnOrderCode,
co-partitioned with `marketplace.orders`, so recovered before any order is handled):

* `ordered`: the create's quantity per orderItemCode, to refuse a larger cancellation;
* `parked`: events Increff could not take yet, oldest first, each with its original
  bytes and its next attempt time. While it is not empty, every later event of the
  order queues behind it, so a cancel never overtakes its create.

Pure: times are passed in (epoch seconds), the JSON form is what the table stores.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_PARKED = 1000
"""Events one order may have waiting; more is a flood, not an order's life."""


class Parked(BaseModel):
    """One order event waiting for Increff."""

    model_config = ConfigDict(extra="ignore")

    value: str
    """The original `marketplace.orders` value (UTF-8 text: it decoded once)."""
    key: str
    partition: int
    offset: int
    parkedAt: float
    nextAttemptAt: float
    attempts: int = 0
    lastError: str = ""
    commandsSent: bool = False
    """Its reservation commands reached Kafka on arrival (else the retry sends them)."""


class Lane(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ordered: dict[str, int] | None = None
    seenAt: float = 0.0
    parked: list[Parked] = Field(default_factory=list)

    @classmethod
    def load(cls, stored: Any) -> Lane:
        return cls() if stored is None else cls.model_validate(stored)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    @property
    def head(self) -> Parked | None:
        return self.parked[0] if self.parked else None

    def due(self, now: float) -> bool:
        head = self.head
        return head is not None and head.nextAttemptAt <= now

    @property
    def next_attempt(self) -> float | None:
        head = self.head
        return None if head is None else head.nextAttemptAt

    def full(self) -> bool:
        return len(self.parked) >= MAX_PARKED

    def forgettable(self, now: float, keep_s: float) -> bool:
        """Nothing waits and the order was last seen `keep_s` ago: the entry can go."""
        return not self.parked and now - self.seenAt > keep_s


def retry_at(now: float, retry_after: float | None, backoff_delay: float) -> float:
    """The next attempt: the server's `Retry-After` when it gave one, else the backoff."""
    return now + (retry_after if retry_after is not None else backoff_delay)


def gave_up(entry: Parked, now: float, limit_s: float) -> bool:
    """Failing for longer than `INVSYNC_ORDER_RETRY_LIMIT_S` since it was parked."""
    return now - entry.parkedAt > limit_s
