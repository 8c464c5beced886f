"""The inventory agent's work: decode, apply the rules, write state, coalesce, publish.

Agents only move data: this module groups a batch of events by key, applies them with
the pure rules of `invsync.rules`, writes each touched key's state once per batch, and
publishes due keys (DESIGN.md "Inventory semantics"). Everything that must survive a
rebalance is in the state table; the coalescer is derived and rebuilt on assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from models.coalescer import Coalescer
from models.events import (
    DecodeError,
    InventoryCommand,
    InventoryUpdate,
    StockEvent,
    decode_command,
    decode_stock_event,
)
from models.inventory import (
    KeyState,
    Outcome,
    SafetyStock,
    apply_command,
    apply_stock_event,
    atp,
    build_update,
    expire_reservations,
)
from streams.deadletters import DeadLetters, Message
from streams.metrics import Metrics
from streams.state import StateTable

log = logging.getLogger(__name__)

Send = Callable[[bytes, bytes], Awaitable[Any]]
"""Sends a record; returns an awaitable that resolves when the broker acknowledged it."""
Published = Callable[[str, InventoryUpdate, int], None]


class InventoryProcessor:
    """Per-worker inventory logic between Kafka (via Faust) and the pure rules."""

    def __init__(
        self,
        *,
        state: StateTable,
        stock_topic: str,
        safety: SafetyStock,
        debounce_s: float,
        max_delay_s: float,
        reservation_ttl_s: float,
        publish: Send,
        settle_grace_s: float = 0.0,
        dead_letters: DeadLetters,
        metrics: Metrics,
        on_published: Published | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.stock_topic = stock_topic
        self.safety = safety
        self.coalescer = Coalescer(debounce_s, max_delay_s)
        self.reservation_ttl_s = reservation_ttl_s
        self.settle_grace_s = settle_grace_s
        self._publish = publish
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.clock = clock
        self.on_published = on_published
        self.assigned: set[int] = set()
        self._rescan = False
        # Oldest occurredAt (epoch s) of the changes folded into a key's pending update.
        self._pending_since: dict[str, float] = {}

    # -- the batch path ---------------------------------------------------------

    async def process(self, messages: Sequence[Message]) -> None:
        """Apply a batch: one state write per touched key, then flush what is due."""
        groups: dict[str, list[tuple[Message, StockEvent | InventoryCommand]]] = {}
        for msg in messages:
            try:
                decoded: StockEvent | InventoryCommand
                if msg.topic == self.stock_topic:
                    decoded = decode_stock_event(msg.key, msg.value or b"")
                else:
                    decoded = decode_command(msg.key, msg.value or b"")
            except DecodeError as exc:
                await self.reject(msg, str(exc))
                continue
            groups.setdefault(decoded.key, []).append((msg, decoded))

        now = self.clock()
        touched: dict[str, int] = {}
        # Counted per batch, not per event: a labelled counter costs a lookup and a lock.
        applied: Counter[str] = Counter()
        commands: Counter[str] = Counter()
        duplicates: Counter[str] = Counter()
        for key, items in groups.items():
            state = self.state.get(key)
            if state is None:
                state = KeyState()
            changed = False
            for msg, item in items:
                source = f"{msg.topic}:{msg.partition}"
                try:
                    if isinstance(item, StockEvent):
                        outcome = apply_stock_event(
                            state, item, source, msg.offset, settle_after_s=self.settle_grace_s
                        )
                        kind = "stock"
                        if outcome is Outcome.APPLIED:
                            applied[item.type] += 1
                    else:
                        outcome = apply_command(state, item, source, msg.offset)
                        kind = "commands"
                        if outcome is not Outcome.DUPLICATE:
                            commands[item.type] += 1
                except Exception as exc:
                    log.exception("could not apply event at %s offset %s", source, msg.offset)
                    await self.reject(msg, f"could not apply: {type(exc).__name__}: {exc}")
                    continue
                if outcome is Outcome.DUPLICATE:
                    duplicates[kind] += 1
                    continue
                changed = True
                occurred = item.occurredAt.timestamp()
                pending = self._pending_since.get(key)
                if pending is None or occurred < pending:
                    self._pending_since[key] = occurred
            if changed:
                if self.state.get(key) is None:
                    self.state.hold(key, state, items[-1][0].partition)
                touched[key] = items[-1][0].partition
                self._mark(key, state, now)
        for counts, metric in (
            (applied, self.metrics.stock_events),
            (commands, self.metrics.commands),
            (duplicates, self.metrics.duplicates),
        ):
            for label, n in counts.items():
                metric.labels(label).inc(n)
        await self.flush(touched=touched)

    def _safety_for(self, key: str) -> int:
        location, _, sku = key.partition(":")
        return self.safety.for_key(location, sku)

    def _mark(self, key: str, state: KeyState, now: float) -> None:
        self.coalescer.mark(key, now, atp(state, self._safety_for(key)), state.last_published_qty)

    async def reject(self, msg: Message, error: str) -> None:
        await self.dead_letters.reject(msg, error)

    # -- publishing ----------------------------------------------------------------

    async def flush(
        self, *, everything: bool = False, touched: dict[str, int] | None = None
    ) -> int:
        """Publish every due key whose ATP differs from its last publication, then write
        the state of every touched key once.

        The outputs are acknowledged by the broker *before* the state writes that record
        them: a state that says "published" while the message was lost would leave the
        key stale for good, whereas the reverse is repaired by a replay.
        """
        if self._rescan:
            self._rescan_assigned()
        writes = dict(touched) if touched else {}
        now = self.clock()
        keys = self.coalescer.drain() if everything else self.coalescer.due(now)
        acks: list[Awaitable[Any]] = []
        for key in keys:
            state = self.state.get(key)
            since = self._pending_since.pop(key, None)
            if state is None:
                continue
            partition = self.state.partition_of(key)
            if partition not in self.assigned:
                continue  # revoked meanwhile: the new owner re-marks it
            safety = self._safety_for(key)
            quantity = atp(state, safety)
            if not self.coalescer.should_publish(key, quantity, state.last_published_qty):
                continue
            location, _, sku = key.partition(":")
            stockout = quantity == 0 and state.last_published_qty != 0
            wall = datetime.now(UTC)
            update = build_update(state, location, sku, safety, wall)
            acks.append(await self._publish(key.encode("utf-8"), update.encode()))
            writes[key] = partition
            self.coalescer.confirm(key)
            if self.on_published is not None:
                self.on_published(key, update, partition)
            self.metrics.updates_published.inc()
            if since is not None:
                lag = max(0.0, wall.timestamp() - since)
                self.metrics.e2e_latency.observe(lag)
                if stockout:
                    self.metrics.stockout_latency.observe(lag)
            if stockout:
                self.metrics.stockouts.inc()
        if acks:
            await asyncio.gather(*acks)
        for key, partition in writes.items():
            state = self.state.get(key)
            if state is not None:
                self.state.put(key, state, partition)
        self.metrics.keys_dirty.set(len(self.coalescer))
        return len(acks)

    def next_deadline(self) -> float | None:
        return self.coalescer.next_deadline()

    # -- rebalance -----------------------------------------------------------------

    def on_assigned(self, partitions: set[int]) -> None:
        self.assigned = set(partitions)
        self._rescan = True

    def on_revoked(self, partitions: set[int]) -> None:
        self.assigned -= partitions
        self.coalescer.drop_partition(
            [k for k, _, _ in self.state.items_in(partitions) if k in self.coalescer]
        )
        self.state.forget_partitions(partitions)

    def request_rescan(self) -> None:
        self._rescan = True

    @property
    def rescan_pending(self) -> bool:
        """A rebalance completed and the keys of the assignment are not re-marked yet."""
        return self._rescan

    def _rescan_assigned(self) -> None:
        """Re-mark keys whose ATP differs from their last publication (after a rebalance)."""
        self._rescan = False
        now = self.clock()
        marked = 0
        for key, state, _ in self.state.items_in(self.assigned):
            if state.last_published_qty != atp(state, self._safety_for(key)):
                self._mark(key, state, now)
                marked += 1
        if marked:
            log.info("re-marked %d keys pending publication after rebalance", marked)

    # -- reservation expiry --------------------------------------------------------

    async def expire(self, now_epoch: float | None = None) -> list[tuple[str, str]]:
        """Close reservations past their TTL; returns (key, orderCode) for each expiry."""
        now = time.time() if now_epoch is None else now_epoch
        expired: list[tuple[str, str]] = []
        open_total = 0
        mono = self.clock()
        for key, state, partition in list(self.state.items_in(self.assigned)):
            before = len(state.reservations)
            orders = expire_reservations(state, now, self.reservation_ttl_s)
            if orders or len(state.reservations) != before:
                self.state.put(key, state, partition)
            for order in orders:
                log.warning("reservation of order %s at %s expired unreleased", order, key)
                expired.append((key, order))
            if orders:
                self._mark(key, state, mono)
            open_total += sum(1 for r in state.reservations.values() if r.open > 0)
        if expired:
            self.metrics.reservations_expired.inc(len(expired))
        self.metrics.reservations_open.set(open_total)
        await self.flush()
        return expired
