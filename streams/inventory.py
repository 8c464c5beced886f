"""The inventory agent's I/O: decode, run the engine, send, wait for acks, write state.

Every decision is `models.engine.InventoryEngine`'s. This class decodes a batch, hands
it to the engine, dead-letters what the engine refuses, and flushes as every publishing
stage does (`streams/publishing.py`: send, wait for the broker, record, write the named
states and wait again) — all before the batch's offsets may be committed (the fast path
acks the batch only when `process` returns). One lock serializes the batch path, the
flush timer, expiry and rebalances.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from models.engine import Input, InventoryEngine, Publication
from models.errors import DecodeError
from models.events import (
    InventoryCommand,
    InventoryUpdate,
    StockEvent,
    decode_command,
)
from models.fastdecode import decode_stock_event_fast
from models.inventory import KeyState, SafetyStock
from streams import fastpath, faustcompat
from streams.deadletters import DeadLetters, Message, Send
from streams.kafka import partition_bounds
from streams.metrics import Metrics
from streams.publishing import PublishingAgent
from streams.settings import Settings
from streams.state import StateTable, default_partition
from streams.store import KeyStore

log = logging.getLogger(__name__)

Published = Callable[[Publication], None]

BATCH_MAX = 4000
BATCH_WITHIN_S = 0.1
"""How long Faust's per-record path (`INVSYNC_FAST_PATH=false`) gathers a batch. At 10 ms
its `take_events` handed on 5-20 events per batch while thousands waited in the stream's
queue, and each batch costs the broker round trips of its flush: behind a slow broker
(0.25 s each way) that path fell thousands of events behind at 800 events/s."""
FLUSH_TICK_S = 0.02


class InventoryAgent(PublishingAgent[KeyState, InventoryUpdate]):
    """Runs the engine against Kafka (via Faust)."""

    engine: InventoryEngine

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
        super().__init__(engine=engine, state=state, publish=publish, clock=clock)
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.on_published = on_published

    # -- the batch path ----------------------------------------------------------------

    async def process(self, messages: Sequence[Message]) -> None:
        """Apply a batch; returns once its outputs and state writes are acknowledged."""
        inputs: list[Input] = []
        decoded: list[Message] = []
        stock_topic = self.engine.stock_topic
        for msg in messages:
            try:
                item: StockEvent | InventoryCommand
                if msg.topic == stock_topic:
                    item = decode_stock_event_fast(msg.key, msg.value or b"")
                else:
                    item = decode_command(msg.key, msg.value or b"")
            except DecodeError as exc:
                await self.dead_letters.reject(msg, exc)
                continue
            inputs.append(Input(msg.topic, msg.partition, msg.offset, item))
            decoded.append(msg)
        async with self.applying():
            applied = self.engine.apply(inputs, self.clock())
            if applied.rejected:
                source = {id(inp): msg for inp, msg in zip(inputs, decoded, strict=True)}
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

    def _flushed(self) -> None:
        self.metrics.keys_dirty.set(self.engine.pending)

    async def recovered(self) -> int:
        started = time.monotonic()
        marked = await super().recovered()
        if self.state.disk is not None:
            log.info(
                "inventory state restored: %d changelog records read back since start; "
                "pending keys checked in %.1f s",
                self.state.read_back,
                time.monotonic() - started,
            )
        return marked

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


# -- wiring ------------------------------------------------------------------------------


class Rebalances:
    """Follows Faust's rebalance signals for the agent (and the stages that `follow`
    it), and says whether the worker is ready.

    A rebalance: revoked (eager: everything) -> assigned (Faust starts restoring the
    tables) -> rebalance complete (restored). Nothing is published or written between
    the first and the last, when keys may briefly hold older states of the changelog.
    """

    def __init__(
        self,
        app: faust.App,
        agent: InventoryAgent,
        stock_topic: str,
        *,
        on_recovered: Callable[[Iterator[tuple[str, KeyState, int]]], object] | None,
        on_lost: Callable[[set[int]], None] | None,
        on_revoked: Callable[[set[int]], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.on_revoked = on_revoked
        self.agent = agent
        self.stock_topic = stock_topic
        self.on_recovered = on_recovered
        self.on_lost = on_lost
        self.restoring: int | None = None  # the generation being restored
        self.joined: int | None = None
        self.broker_reachable = False
        self.followers: list[tuple[PublishingAgent[Any, Any], str]] = []
        signals: Any = app  # Faust's signal types do not admit async bound methods
        signals.on_partitions_revoked.connect(self.revoked)
        signals.on_partitions_assigned.connect(self.assigned)
        signals.on_rebalance_complete.connect(self.complete)

    def follow(self, agent: PublishingAgent[Any, Any], topic: str) -> None:
        """Also suspend, assign (``topic``'s partitions) and recover ``agent``."""
        self.followers.append((agent, topic))

    async def revoked(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        self.restoring = None
        await self.agent.suspend()
        for follower, _ in self.followers:
            await follower.suspend()
        if self.on_revoked is not None:
            await self.on_revoked({tp.partition for tp in revoked if tp.topic == self.stock_topic})

    async def assigned(self, sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        now = {tp.partition for tp in assigned if tp.topic == self.stock_topic}
        lost = self.agent.engine.assignment - now
        await self.agent.assigned(now)
        for follower, topic in self.followers:
            await follower.assigned({tp.partition for tp in assigned if tp.topic == topic})
        if self.on_lost is not None and lost:
            self.on_lost(lost)
        self.restoring = self.joined = self.app.consumer_generation_id

    async def complete(self, sender: Any, **kwargs: Any) -> None:
        if self.restoring != self.app.consumer_generation_id:
            return  # a newer rebalance began: its own completion activates it
        self.restoring = None
        await self.agent.recovered()
        for follower, _ in self.followers:
            await follower.recovered()
        if self.on_recovered is not None:
            self.on_recovered(self.agent.engine.items_active())
        # Move what exists now (modules, the app, recovered state) out of the cyclic
        # GC's reach: full collections scanned it all, 75-100 ms pauses on the loop
        # that showed up as the live latency's p99. Refcounting still frees it.
        gc.collect()
        gc.freeze()

    def restored_reason(self) -> str | None:
        """Why the worker is not ready as far as its tables go, or None."""
        engines = [self.agent.engine, *(follower.engine for follower, _ in self.followers)]
        if self.joined is None:
            return "not yet a member of the consumer group (no partitions assigned)"
        if self.restoring is not None or any(e.active != e.assignment for e in engines):
            return "rebalancing: tables are being restored"
        return None

    async def check_broker(self) -> None:
        self.broker_reachable = await faustcompat.broker_reachable(self.app)

    async def broker_ok(self) -> bool:
        """The broker as last checked (every 5 s), checked now when it was not reachable."""
        if not self.broker_reachable:
            await self.check_broker()
        return self.broker_reachable

    async def not_ready(self) -> str | None:
        """Readiness (DESIGN.md): broker reachable, partitions assigned, tables restored."""
        reason = self.restored_reason()
        if reason is None:
            await self.check_broker()
            if not self.broker_reachable:
                reason = "broker unreachable"
        return reason


def install_inventory(
    app: faust.App,
    settings: Settings,
    *,
    source: faust.TopicT,
    publish: Send,
    dead_letters: DeadLetters,
    metrics: Metrics,
    on_published: Published | None,
    on_recovered: Callable[[Iterator[tuple[str, KeyState, int]]], object] | None,
    on_lost: Callable[[set[int]], None] | None,
    on_revoked: Callable[[set[int]], Awaitable[None]] | None = None,
    fatal: Callable[[BaseException], None],
) -> Rebalances:
    """The inventory agent on ``source`` (stock events + commands): engine, state table,
    the fast path or Faust's agent, its timers and rebalance handling."""
    disk = None
    if settings.state_store == "rocksdb":
        disk = KeyStore(Path(app.conf.tabledir) / "inventory-state.rocksdb")

    async def bounds(topic: str) -> tuple[dict[int, int], dict[int, int]]:
        return await partition_bounds(settings, topic)

    state = StateTable(
        app, "inventory-state", settings.topic_partitions, disk=disk, bounds=bounds, sku_index=True
    )
    partitions = settings.topic_partitions
    overrides = settings.safety_stock_overrides
    engine = InventoryEngine(
        state,
        stock_topic=settings.topic_stock_events,
        safety=SafetyStock(
            default=settings.safety_stock,
            per_location={k: v for k, v in overrides.items() if ":" not in k},
            per_key={k: v for k, v in overrides.items() if ":" in k},
        ),
        debounce_s=settings.debounce_ms / 1000,
        max_delay_s=settings.max_delay_ms / 1000,
        reservation_ttl_s=settings.reservation_ttl_s,
        settle_grace_s=settings.settle_grace_s,
        partition_for=lambda key: default_partition(key, partitions),
    )
    agent = InventoryAgent(
        engine=engine,
        state=state,
        publish=publish,
        dead_letters=dead_letters,
        metrics=metrics,
        on_published=on_published,
    )
    if settings.fast_path:

        async def apply_batch(tp: TP, messages: list[Any]) -> None:
            await agent.process(messages)

        # process() handles events of several partitions at once (explicit changelog
        # partitions), so take all queued partitions in one call: one wait for the
        # outputs' acks per call instead of one per partition batch.
        fastpath.install(app, source, apply_batch, combine=True, fatal=fatal)
    else:

        async def apply_inventory(stream: Any) -> None:  # a faust.Stream: untyped
            async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
                try:
                    await agent.process([event.message for event in events])
                except Exception as exc:  # noqa: BLE001 - Faust would restart the agent and ack it
                    fatal(exc)

        app.agent(source, name="inventory")(apply_inventory)

    async def expire_reservations() -> None:
        await agent.expire()

    async def flush_due() -> None:
        await agent.flush_due()

    rebalances = Rebalances(
        app,
        agent,
        settings.topic_stock_events,
        on_recovered=on_recovered,
        on_lost=on_lost,
        on_revoked=on_revoked,
    )
    timer: Any = app.timer  # untyped decorator in faust
    timer(FLUSH_TICK_S, on_leader=False)(flush_due)
    ttl_tick = min(60.0, max(1.0, settings.reservation_ttl_s / 10))
    timer(ttl_tick, on_leader=False)(expire_reservations)
    timer(5.0, on_leader=False)(rebalances.check_broker)
    # `invsync_ready` at each scrape: the broker as last checked (every 5 s).
    metrics.report_ready(
        lambda: rebalances.broker_reachable and rebalances.restored_reason() is None
    )
    return rebalances
