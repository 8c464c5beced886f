"""The inventory agent's I/O: decode, run the engine, send, wait for acks, write state.

Every decision is `models.engine.InventoryEngine`'s. This class decodes a batch, hands
it to the engine, dead-letters what the engine refuses, sends the publications it
returns, waits for the broker, records them, writes the named states to the changelog
and waits again — all before the batch's offsets may be committed (the fast path acks
the batch only when `process` returns). One lock serializes the batch path, the flush
timer, expiry and rebalances, so a publication is never recorded before it was
acknowledged and nothing is written to a partition while it is restored or revoked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from models.engine import Input, InventoryEngine, Publication, StateWrite
from models.errors import DecodeError
from models.events import InventoryCommand, StockEvent, decode_command, decode_stock_event
from streams.deadletters import DeadLetters, Message
from streams.metrics import Metrics
from streams.state import StateTable

log = logging.getLogger(__name__)

Send = Callable[[bytes, bytes], Awaitable[Any]]
"""Sends a record; returns an awaitable that resolves when the broker acknowledged it."""
Published = Callable[[Publication], None]


class InventoryAgent:
    """Runs the engine against Kafka (via Faust)."""

    def __init__(
        self,
        *,
        engine: InventoryEngine,
        state: StateTable,
        publish: Send,
        dead_letters: DeadLetters,
        metrics: Metrics,
        on_published: Published | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.state = state
        self._publish = publish
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.on_published = on_published
        self.clock = clock
        self.lock = asyncio.Lock()

    # -- the batch path ----------------------------------------------------------------

    async def process(self, messages: Sequence[Message]) -> None:
        """Apply a batch; returns once its outputs and state writes are acknowledged."""
        inputs: list[Input] = []
        source: dict[int, Message] = {}
        stock_topic = self.engine.stock_topic
        for msg in messages:
            try:
                item: StockEvent | InventoryCommand
                if msg.topic == stock_topic:
                    item = decode_stock_event(msg.key, msg.value or b"")
                else:
                    item = decode_command(msg.key, msg.value or b"")
            except DecodeError as exc:
                await self.dead_letters.reject(msg, exc)
                continue
            inp = Input(msg.topic, msg.partition, msg.offset, item)
            source[id(inp)] = msg
            inputs.append(inp)
        async with self.lock:
            applied = self.engine.apply(inputs, self.clock())
            for rejection in applied.rejected:
                await self.dead_letters.reject(source[id(rejection.input)], rejection.error)
            # Counted per batch, not per event: a labelled counter costs a lookup and a lock.
            for counts, metric in (
                (applied.stock, self.metrics.stock_events),
                (applied.commands, self.metrics.commands),
                (applied.duplicates, self.metrics.duplicates),
            ):
                for label, n in counts.items():
                    metric.labels(label).inc(n)
            await self._flush(applied.writes)

    # -- publishing ----------------------------------------------------------------------

    async def flush(self, *, everything: bool = False) -> int:
        """Publish what is due (everything pending with ``everything``)."""
        async with self.lock:
            return await self._flush([], everything=everything)

    async def _flush(self, writes: list[StateWrite], *, everything: bool = False) -> int:
        now = self.clock()
        wall = datetime.now(UTC)
        pubs = self.engine.due(now, wall, everything=everything)
        if pubs:
            acks = [await self._publish(p.key.encode("utf-8"), p.update.encode()) for p in pubs]
            try:
                await asyncio.gather(*acks)
            except BaseException:
                self.engine.unpublished(pubs, now)
                raise
            writes = writes + self.engine.published(pubs)
            self._observe(pubs, wall, now)
        await self.state.write(writes)
        self.metrics.keys_dirty.set(self.engine.pending)
        return len(pubs)

    def _observe(self, pubs: list[Publication], wall: datetime, now: float) -> None:
        self.metrics.updates_published.inc(len(pubs))
        at = wall.timestamp()
        for pub in pubs:
            if pub.marked is not None:
                self.metrics.publish_delay.observe(max(0.0, now - pub.marked))
            if self.on_published is not None:
                self.on_published(pub)
            if pub.since is not None:
                lag = max(0.0, at - pub.since)
                self.metrics.e2e_latency.observe(lag)
                if pub.stockout:
                    self.metrics.stockout_latency.observe(lag)
            if pub.stockout:
                self.metrics.stockouts.inc()

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
            log.info("%d keys pending publication after rebalance", marked)
        return marked

    # -- reservation expiry --------------------------------------------------------------

    async def expire(self, now_epoch: float | None = None) -> list[tuple[str, str]]:
        """Close reservations past their TTL; returns (key, orderCode) for each expiry."""
        async with self.lock:
            now = time.time() if now_epoch is None else now_epoch
            expired = self.engine.expire(now, self.clock())
            for key, order in expired.orders:
                log.warning(
                    "reservation of order %s at %s expired unreleased",
                    order,
                    key,
                    extra={"key": key, "order_code": order},
                )
            if expired.orders:
                self.metrics.reservations_expired.inc(len(expired.orders))
            self.metrics.reservations_open.set(expired.open_reservations)
            await self._flush(expired.writes)
            return expired.orders
