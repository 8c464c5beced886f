"""The orders agent: `marketplace.orders` → Increff, one lane per order code.

DESIGN.md "Orders and callbacks". Each order code has a lane: its events run one at a
time and in order, different codes run concurrently (at most
`INVSYNC_ORDER_CONCURRENCY` events at once). An event that still fails after the
Increff client's short in-line retry is parked in the router's table (`orders-retry`,
keyed by order code, co-partitioned with the orders topic; its changelog carries the
original event and its next attempt time) and retried in the background, in order,
until it succeeds, is rejected, or passes `INVSYNC_ORDER_RETRY_LIMIT_S` (dead letter).
While an order has a parked event, its later events park behind it. Because the table
is recovered before a partition's orders are handled, that holds across restarts and
rebalances.

Acks: an event is acked only once it reached Increff, was parked (the changelog
record acknowledged by the broker) or was dead-lettered, and acks go out in offset
order per partition (`InOrderAcks`): Faust commits up to the first unacked offset.

Stopping: Faust waits for every unacked message before a rebalance or a shutdown. When
flow stops, in-flight events are abandoned instead (tasks cancelled, messages no longer
tracked, nothing acked): their offsets stay uncommitted, so the next owner replays
them, and every Increff call and command is idempotent. A worker stops in seconds,
whatever Increff is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP

from connectors.retry import Backoff
from models.events import DecodeError, OrderEvent, decode_order_event
from models.order_lanes import Lane, Parked, gave_up, retry_at
from models.orders import IncreffOrders, plan_order
from streams.deadletters import DeadLetters
from streams.logs import log_context
from streams.metrics import Metrics
from streams.order_acks import InOrderAcks
from streams.router import Attempt, OrderRouter, PublishUpdate, SendCommands
from streams.settings import Settings
from streams.state import StateTable

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 60.0
RETRY_BACKOFF = Backoff(base=1.0, max_delay=60.0, max_attempts=None, deadline=math.inf)
"""Waits between background attempts of a parked order (INVSYNC_ORDER_RETRY_LIMIT_S ends
them); a server's Retry-After replaces the wait."""


@dataclass(slots=True)
class _Item:
    """Work for a lane: a consumed event (with its decode result), or a retry wake-up."""

    event: Any = None  # faust.Event; None for a retry of the lane's parked events
    order: OrderEvent | None = None
    key: str | None = None
    error: str | None = None


class OrderLanes:
    """Per-order-code lanes, parking and background retries (see the module docstring)."""

    def __init__(
        self,
        app: Any,
        *,
        router: OrderRouter,
        table: StateTable,
        dead_letters: DeadLetters,
        metrics: Metrics,
        source_topic: str,
        concurrency: int,
        retry_limit_s: float,
        backoff: Backoff,
        send_timeout_s: float,
        keep_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.router = router
        self.table = table
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.source_topic = source_topic
        self.concurrency = concurrency
        self.retry_limit_s = retry_limit_s
        self.backoff = backoff
        self.send_timeout_s = send_timeout_s
        self.keep_s = keep_s
        self.clock = clock
        self.acks = InOrderAcks()
        self.assigned: set[int] = set()
        self.waiting: dict[str, float] = {}
        """Order code → next attempt time of its parked head (owned partitions)."""
        self._lanes: dict[str, deque[_Item]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._held = 0
        self._generation = 0
        self._index_stale = True
        self._wake: asyncio.Event | None = None

    # --- the agent side ---------------------------------------------------------------

    async def submit(self, event: Any) -> None:
        """Take one consumed event; returns once a slot is free (backpressure)."""
        msg = event.message
        if msg.generation_id != self.app.consumer_generation_id:
            self._untrack([event])  # from before a rebalance: the new owner replays it
            return
        self.acks.add(event)
        generation = self._generation
        slots = self._slots_()
        await slots.acquire()
        if generation != self._generation:  # abandoned while waiting for a slot
            slots.release()
            return
        self._held += 1
        item = _Item(event=event)
        try:
            item.key = msg.key.decode("utf-8") if msg.key is not None else None
            item.order = decode_order_event(msg.value or b"")
        except UnicodeDecodeError:
            item.error = "key is not valid UTF-8"
        except DecodeError as exc:
            item.error = str(exc)
        if item.error is not None or not item.key:
            lane = f"\x00{msg.partition}:{msg.offset}"  # its own lane: nothing to order
        else:
            lane = item.key
        self._enqueue(lane, item)

    def _enqueue(self, code: str, item: _Item) -> None:
        lane = self._lanes.get(code)
        if lane is not None:
            lane.append(item)
            return
        self._lanes[code] = deque([item])
        self._tasks[code] = asyncio.create_task(self._run(code), name=f"order-lane:{code}")

    async def _run(self, code: str) -> None:
        lane = self._lanes[code]
        try:
            while lane:
                item = lane[0]
                with log_context(order_code=code if code[:1] != "\x00" else None):
                    await self._handle(code, item)
                lane.popleft()
                if item.event is not None:
                    self._held -= 1
                    self._slots_().release()
                    self.acks.finish(item.event)
        finally:
            if self._lanes.get(code) is lane:
                del self._lanes[code]
                del self._tasks[code]

    async def _handle(self, code: str, item: _Item) -> None:
        """Route one item; Kafka failures are retried here until they pass (or abort)."""
        failures = 0
        while True:
            try:
                if item.event is None:
                    await self._retry_parked(code)
                elif item.order is None or item.error is not None or not item.key:
                    await self._reject(item.event.message, item.error or "missing key")
                else:
                    await self._incoming(code, item.event.message, item.order, item.key)
            except Exception as exc:  # noqa: BLE001 - Kafka down: nothing parked or dead-lettered
                failures += 1
                wait = self.backoff.delay(failures)
                log.warning(
                    "order %s: could not route, park or dead-letter (%s: %s); again in %.1fs",
                    code if code[:1] != "\x00" else "?",
                    type(exc).__name__,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
            else:
                return

    async def _incoming(self, code: str, msg: Any, order: OrderEvent, key: str) -> None:
        lane = Lane.load(self.table.get(code))
        try:
            plan = plan_order(order, key, lane.ordered)
        except DecodeError as exc:
            await self._reject(msg, str(exc))
            return
        self.metrics.order_events.labels(order.type).inc()
        now = self.clock()
        remember = plan.ordered is not None
        if remember:
            lane.ordered, lane.seenAt = plan.ordered, now
        if lane.parked:
            if lane.full():
                await self._reject(msg, f"more than {len(lane.parked)} events wait for order")
                return
            sent = await self._try(self.router.send(plan.commands))
            lane.parked.append(_parked(msg, code, now, now, "behind an earlier event", sent))
            await self._save(code, lane, msg.partition)
            self.metrics.orders_parked_total.inc()
            return
        sent = False
        try:
            result = await self.router.attempt(plan, reserve=True)
            sent = True
        except Exception as exc:  # noqa: BLE001 - a Kafka time-out, anything unforeseen: park it
            log.warning("order %s %s failed: %r; parking it", order.type, code, exc)
            result = Attempt.later(f"{type(exc).__name__}: {exc}")
        if not result.retry:
            if remember:
                await self._save(code, lane, msg.partition, wait=False)
            return
        at = retry_at(now, result.retry_after, self.backoff.delay(1))
        lane.parked.append(_parked(msg, code, now, at, result.error, sent, attempts=1))
        await self._save(code, lane, msg.partition)
        self.metrics.orders_parked_total.inc()
        log.warning(
            "Increff unavailable for %s %s (%s); parked, next attempt in %.1fs",
            order.type,
            code,
            result.error,
            at - now,
        )

    async def _retry_parked(self, code: str) -> None:
        """Try the order's parked events, oldest first, while they are due."""
        lane = Lane.load(self.table.get(code))
        known = self.table.partition_of(code)
        partition = known if known is not None else (lane.head.partition if lane.head else 0)
        changed = False
        now = self.clock()
        while lane.due(now):
            entry = lane.parked[0]
            try:
                plan = plan_order(decode_order_event(entry.value.encode()), entry.key, lane.ordered)
            except DecodeError as exc:
                await self._letter(entry, str(exc))
                lane.parked.pop(0)
                changed = True
                continue
            try:
                result = await self.router.attempt(plan, reserve=not entry.commandsSent)
                entry.commandsSent = True
            except Exception as exc:  # noqa: BLE001 - whatever failed, it waits again
                result = Attempt.later(f"{type(exc).__name__}: {exc}")
            now = self.clock()
            changed = True
            if not result.retry:
                lane.parked.pop(0)
                continue
            entry.attempts += 1
            entry.lastError = result.error[:500]
            if gave_up(entry, now, self.retry_limit_s):
                await self._letter(
                    entry,
                    f"Increff did not take it within INVSYNC_ORDER_RETRY_LIMIT_S="
                    f"{self.retry_limit_s:g}s ({entry.attempts} attempts); last error: "
                    f"{entry.lastError}",
                )
                lane.parked.pop(0)
                continue
            entry.nextAttemptAt = retry_at(
                now, result.retry_after, self.backoff.delay(entry.attempts)
            )
            break
        if changed:
            await self._save(code, lane, partition)

    # --- Kafka writes -------------------------------------------------------------------

    async def _save(self, code: str, lane: Lane, partition: int, *, wait: bool = True) -> None:
        """Write the lane to the table; with `wait`, until the broker acknowledged it."""
        if not lane.parked and lane.ordered is None:
            self._forget(code, partition)
        else:
            value = lane.dump()
            self.table.hold(code, value, partition)
            fut = self.table.table.send_changelog(partition, code, value)
            if wait:
                await self._acked(fut)
        if lane.parked:
            self.waiting[code] = lane.parked[0].nextAttemptAt
        else:
            self.waiting.pop(code, None)
        self.metrics.orders_waiting.set(len(self.waiting))
        if self._wake is not None:
            self._wake.set()

    def _forget(self, code: str, partition: int) -> None:
        self.table.table.data.pop(code, None)
        self.table.table.send_changelog(partition, code, None, value_serializer="raw")

    async def _acked(self, fut: Awaitable[Any]) -> None:
        await asyncio.wait_for(asyncio.shield(fut), self.send_timeout_s)

    async def _try(self, send: Awaitable[None]) -> bool:
        try:
            await send
        except Exception as exc:  # noqa: BLE001 - the parked event carries the retry
            log.warning("reservation commands not sent (%r); the retry sends them", exc)
            return False
        return True

    async def _reject(self, msg: Any, error: str) -> None:
        await self.dead_letters.reject(msg, error)

    async def _letter(self, entry: Parked, error: str) -> None:
        log.error("order %s dead-lettered: %s", entry.key, error)
        await self.dead_letters.record(
            source_topic=self.source_topic,
            partition=entry.partition,
            offset=entry.offset,
            key=entry.key.encode(),
            value=entry.value.encode(),
            error=error,
            reason="other",
        )

    # --- background retries, rebalances, stopping ---------------------------------------

    async def run_retries(self) -> None:
        """App task: hand due parked events to their lanes."""
        self._wake = asyncio.Event()
        self.app.flow_control.manage_queue(self)  # `clear()` below: called when flow stops
        while not self.app.should_stop:
            if self.app.flow_control.is_active():
                if self._index_stale:
                    self._rebuild_index()
                now = self.clock()
                for code, at in list(self.waiting.items()):
                    if at <= now and code not in self._lanes:
                        self._enqueue(code, _Item())
            nxt = min(self.waiting.values(), default=self.clock() + 1.0)
            timeout = min(1.0, max(0.05, nxt - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    def _rebuild_index(self) -> None:
        self.waiting.clear()
        for code, value, _ in self.table.items_in(self.assigned):
            lane = Lane.load(value)
            if lane.parked:
                self.waiting[code] = lane.parked[0].nextAttemptAt
        self.metrics.orders_waiting.set(len(self.waiting))
        self._index_stale = False

    async def sweep(self) -> None:
        """Timer: forget lanes with nothing parked whose order is older than `keep_s`."""
        if not self.app.flow_control.is_active():
            return
        now = self.clock()
        for code, value, partition in list(self.table.items_in(self.assigned)):
            if code not in self._lanes and Lane.load(value).forgettable(now, self.keep_s):
                self._forget(code, partition)

    def clear(self) -> None:
        """Faust clears its flow-controlled queues when flow stops (rebalance, shutdown)
        and again when it resumes; on a stop, abandon everything in flight."""
        if self.app.flow_control.is_active():
            return
        self._generation += 1
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self._lanes.clear()
        self._untrack(self.acks.clear())
        slots = self._slots_()
        for _ in range(self._held):
            slots.release()
        self._held = 0
        self.waiting.clear()
        self._index_stale = True

    def _untrack(self, events: list[Any]) -> None:
        unacked = self.app.consumer.unacked
        for event in events:
            unacked.discard(event.message)

    def on_assigned(self, tps: set[TP], topic: str) -> None:
        self.assigned |= {tp.partition for tp in tps if tp.topic == topic}
        self._index_stale = True

    def on_revoked(self, tps: set[TP], topic: str) -> None:
        self.assigned -= {tp.partition for tp in tps if tp.topic == topic}
        self._index_stale = True

    def _slots_(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        return self._slots


def _parked(
    msg: Any, code: str, now: float, at: float, error: str, sent: bool, attempts: int = 0
) -> Parked:
    return Parked(
        value=(msg.value or b"").decode("utf-8"),
        key=code,
        partition=msg.partition,
        offset=msg.offset,
        parkedAt=now,
        nextAttemptAt=at,
        attempts=attempts,
        lastError=error[:500],
        commandsSent=sent,
    )


def install_orders(
    app: faust.App,
    settings: Settings,
    metrics: Metrics,
    *,
    orders_topic: faust.TopicT,
    dead_letter_topic: faust.TopicT,
    increff: IncreffOrders | None,
    send_commands: SendCommands,
    publish_update: PublishUpdate,
) -> OrderLanes:
    """The orders agent, its table, retry task and rebalance hooks."""

    async def send_dead_letter(key: bytes, value: bytes) -> None:
        fut = await dead_letter_topic.send(key=key, value=value)
        await asyncio.wait_for(asyncio.shield(fut), settings.order_send_timeout_s)

    router = OrderRouter(
        increff=increff,
        send_commands=send_commands,
        publish_update=publish_update,
        metrics=metrics,
        send_timeout_s=settings.order_send_timeout_s,
    )
    lanes = OrderLanes(
        app,
        router=router,
        table=StateTable(app, "orders-retry", settings.topic_partitions, "json"),
        dead_letters=DeadLetters(send_dead_letter, metrics),
        metrics=metrics,
        source_topic=settings.topic_orders,
        concurrency=settings.order_concurrency,
        retry_limit_s=settings.order_retry_limit_s,
        backoff=RETRY_BACKOFF,
        send_timeout_s=settings.order_send_timeout_s,
        keep_s=float(settings.reservation_ttl_s),
    )
    topic = settings.topic_orders

    @app.agent(orders_topic, name="orders")
    async def route_orders(stream: Any) -> None:  # a faust.Stream: untyped
        async for event in stream.noack().events():
            await lanes.submit(event)

    async def retries() -> None:
        await lanes.run_retries()

    async def sweep() -> None:
        await lanes.sweep()

    async def on_assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        lanes.on_assigned(assigned, topic)

    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        lanes.on_revoked(revoked, topic)

    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        lanes.on_assigned(set(), topic)  # tables recovered: rebuild the retry index

    app.task(retries)
    timer: Any = app.timer  # untyped decorator in faust
    timer(SWEEP_INTERVAL_S, on_leader=False)(sweep)
    signals: list[tuple[Any, Any]] = [
        (app.on_partitions_assigned, on_assigned),
        (app.on_partitions_revoked, on_revoked),
        (app.on_rebalance_complete, on_rebalance_complete),
    ]
    for signal, handler in signals:
        signal.connect(handler)
    return lanes
