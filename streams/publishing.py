"""Running a `models.publishing.Publisher` against Kafka: send, wait, record, write state.

What the inventory agent and the consolidation agent share. Each flush sends the
publications that are due, waits for the broker, records them, writes the named states
to the changelog and waits again, so the input's offsets are never committed ahead of
the outputs and states they depend on. One lock serializes batches, the flush timer and
rebalances, so a publication is never recorded before it was acknowledged and nothing is
written to a partition while it is restored or revoked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from models.publishing import Publication, Publisher, StateWrite
from streams.deadletters import Send
from streams.kafka import acknowledged
from streams.state import StateTable

log = logging.getLogger(__name__)


INPUT_GAP_S = 0.15
"""While input batches follow each other closer than this, the flush timer stands aside:
each batch's own flush publishes what is due. Queued between batches, the timer's flush
held the lock for a whole publish-and-write round trip in front of every batch — behind
a slow broker most of each batch's time (the fault suite's slow broker)."""


class Encodable(Protocol):
    def encode(self) -> bytes: ...


S = TypeVar("S")
U = TypeVar("U", bound=Encodable)


class PublishingAgent(Generic[S, U]):
    """A publisher's I/O; subclasses feed it input and observe what it published."""

    name = "keys"
    """What the log line after a rebalance calls the marked keys."""

    def __init__(
        self,
        *,
        engine: Publisher[S, U],
        state: StateTable,
        publish: Send,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.state = state
        self._publish = publish
        self.clock = clock
        self.lock = asyncio.Lock()
        self._inputs = 0  # input batches waiting for or holding the lock
        self._input_ended = float("-inf")

    @asynccontextmanager
    async def applying(self) -> AsyncIterator[None]:
        """Hold the lock for an input batch, whose flush publishes what is due."""
        self._inputs += 1
        try:
            async with self.lock:
                yield
        finally:
            self._inputs -= 1
            self._input_ended = self.clock()

    async def flush_due(self) -> int:
        """The flush timer's tick: publish what is due, unless input batches are flowing
        (`INPUT_GAP_S`) — then the next batch's flush publishes it."""
        if self.engine.next_deadline() is None:
            return 0
        if self._inputs or self.clock() - self._input_ended < INPUT_GAP_S:
            return 0
        return await self.flush()

    async def flush(self, *, everything: bool = False) -> int:
        """Publish what is due (everything pending with ``everything``)."""
        async with self.lock:
            return await self._flush([], everything=everything)

    async def _flush(self, writes: Sequence[StateWrite[S]], *, everything: bool = False) -> int:
        """Publish what is due, then write ``writes`` and the publications' states."""
        now = self.clock()
        wall = datetime.now(UTC)
        pubs = self.engine.due(now, wall, everything=everything)
        if pubs:
            acks = [await self._publish(p.key.encode("utf-8"), p.update.encode()) for p in pubs]
            try:
                await acknowledged(acks)
            except BaseException:
                self.engine.unpublished(pubs, now)
                raise
            writes = [*writes, *self.engine.published(pubs)]
            self._observe(pubs, wall, now)
        await self.state.write(writes)
        self._flushed()
        return len(pubs)

    def _observe(self, pubs: list[Publication[U]], wall: datetime, now: float) -> None:
        """Count acknowledged publications (metrics, hooks)."""

    def _flushed(self) -> None:
        """After each flush (gauges of what is pending)."""

    def next_deadline(self) -> float | None:
        return self.engine.next_deadline()

    # -- rebalance -----------------------------------------------------------------------

    async def suspend(self) -> None:
        """A rebalance began: wait for what is in flight, then publish nothing."""
        async with self.lock:
            self.engine.suspend()

    async def assigned(self, partitions: set[int]) -> None:
        async with self.lock:
            self.engine.assigned(partitions)

    async def recovered(self) -> int:
        async with self.lock:
            marked = self.engine.recovered(self.clock())
        if marked:
            log.info("%d %s pending publication after rebalance", marked, self.name)
        return marked
