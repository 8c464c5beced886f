"""Client helpers for the two sides of invsync's topics (docs/integrating.md).

`StockEventPublisher` is for warehouse systems: it validates each event with the same
model the worker uses, keys it `locationCode:channelSkuCode`, and sends it through an
idempotent producer with Kafka's default (murmur2) partitioner, so the event lands on
the partition where the worker keeps that key's state, exactly once per send.

`InventoryView` is for marketplaces: it reads the compacted `marketplace.inventory`
from the start, keeps the highest `version` per key (never the last offset: a worker
losing a partition may append one older update) and calls back on every newer one.

Both take extra aiokafka options (`security_protocol`, `sasl_mechanism`,
`ssl_context`, ...) for clusters with authentication. Tooling: `streams/` never
imports this module.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, ItemsView, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from models.events import (
    DecodeError,
    InventoryUpdate,
    StockEvent,
    decode_inventory_update,
    inventory_key,
    validation_reason,
)

log = logging.getLogger(__name__)

STOCK_EVENTS_TOPIC = "warehouse.stock-events"
INVENTORY_TOPIC = "marketplace.inventory"
_FIXED_PRODUCER_OPTIONS = {"enable_idempotence", "acks", "partitioner", "key_serializer"}

OnChange = Callable[[InventoryUpdate, InventoryUpdate | None], Awaitable[None] | None]
"""Called with (newer update, the one it replaces or None) for each accepted update."""


class InvalidStockEvent(ValueError):
    """The event would be dead-lettered by the worker; `str(exc)` says why."""


@dataclass(frozen=True)
class Published:
    """Where the broker stored one event."""

    key: str
    topic: str
    partition: int
    offset: int


def _servers(bootstrap_servers: str | Iterable[str]) -> list[str]:
    if isinstance(bootstrap_servers, str):
        return [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
    return list(bootstrap_servers)


class StockEventPublisher:
    """Publishes `warehouse.stock-events`; use `async with` or `start()`/`stop()`."""

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str],
        *,
        topic: str = STOCK_EVENTS_TOPIC,
        **kafka_options: Any,
    ) -> None:
        fixed = _FIXED_PRODUCER_OPTIONS & set(kafka_options)
        if fixed:
            raise ValueError(f"options set by the publisher itself: {', '.join(sorted(fixed))}")
        self.topic = topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=_servers(bootstrap_servers),
            enable_idempotence=True,  # retries never duplicate or reorder an event
            acks="all",
            **kafka_options,
        )

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def __aenter__(self) -> StockEventPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @staticmethod
    def validate(event: StockEvent | Mapping[str, Any]) -> StockEvent:
        """The worker's own model; raises `InvalidStockEvent` instead of publishing junk."""
        if isinstance(event, StockEvent):
            return event
        try:
            return StockEvent.model_validate(event)
        except ValidationError as exc:
            raise InvalidStockEvent(validation_reason(exc)) from exc

    @staticmethod
    def encode(event: StockEvent) -> tuple[bytes, bytes]:
        """(key, value) as they go on the wire."""
        value = orjson.dumps(event.model_dump(mode="json", exclude_none=True))
        return event.key.encode("utf-8"), value

    async def publish(self, event: StockEvent | Mapping[str, Any]) -> Published:
        """Send one event and wait until the broker has it."""
        return (await self.publish_many([event]))[0]

    async def publish_many(
        self, events: Iterable[StockEvent | Mapping[str, Any]]
    ) -> list[Published]:
        """Validate all first (nothing is sent if one is invalid), send, then wait for acks.

        Events of one key keep their order: same partition, idempotent producer.
        """
        checked = [self.validate(e) for e in events]
        pending = []
        for event in checked:
            key, value = self.encode(event)
            pending.append((event.key, await self.producer.send(self.topic, value, key=key)))
        out = []
        for key_text, future in pending:
            meta = await future
            out.append(Published(key_text, meta.topic, meta.partition, meta.offset))
        return out


class InventoryView:
    """The current ATP of every key, from `marketplace.inventory`; `async with` it.

    Reads every partition from the beginning without a consumer group (each view sees
    all keys). `wait_caught_up()` returns once everything that was on the topic at start
    has been read; updates go on arriving until `stop()`. Bound `start()` with
    `asyncio.timeout` where the cluster may not answer.
    """

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str],
        *,
        topic: str = INVENTORY_TOPIC,
        on_change: OnChange | None = None,
        poll_timeout_ms: int = 200,
        **kafka_options: Any,
    ) -> None:
        self.topic = topic
        self._on_change = on_change
        self._poll_ms = poll_timeout_ms
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=_servers(bootstrap_servers),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **kafka_options,
        )
        self._current: dict[str, InventoryUpdate] = {}
        self._end: dict[TopicPartition, int] = {}
        self._caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stale = 0
        """Records ignored because their key already had that version or a higher one."""
        self.invalid = 0
        """Records that are not inventory updates (never written by invsync)."""

    async def start(self) -> None:
        await self.consumer.start()
        try:
            tps = await self._assignment()
            await self.consumer.seek_to_beginning(*tps)
            self._end = dict(await self.consumer.end_offsets(tps))
        except BaseException:
            await self.consumer.stop()
            raise
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _assignment(self) -> list[TopicPartition]:
        """Every partition, assigned without a group (it follows partitions added later)."""
        if self.topic not in await self.consumer.topics():
            raise LookupError(f"topic {self.topic!r} does not exist")
        self.consumer.subscribe([self.topic])
        while not self.consumer.assignment():  # noqa: ASYNC110 - aiokafka signals no event here
            await asyncio.sleep(0.01)
        return sorted(self.consumer.assignment())

    async def stop(self) -> None:
        """Stop reading; raises what stopped the reader early (e.g. `on_change` failing)."""
        task, self._task = self._task, None
        failed = task is not None and task.done() and not task.cancelled()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.consumer.stop()
        if failed and task is not None:
            task.result()

    async def __aenter__(self) -> InventoryView:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_caught_up(self) -> None:
        """Until the view holds everything the topic held at start; bound it with
        `asyncio.timeout`. Raises what stopped the reader, if it stopped."""
        if self._task is None:
            raise RuntimeError("InventoryView is not started")
        caught_up = asyncio.ensure_future(self._caught_up.wait())
        try:
            await asyncio.wait({caught_up, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            caught_up.cancel()
        if self._task.done():
            self._task.result()

    def get(self, location_code: str, channel_sku_code: str) -> InventoryUpdate | None:
        return self._current.get(inventory_key(location_code, channel_sku_code))

    def __getitem__(self, key: str) -> InventoryUpdate:
        return self._current[key]

    def __len__(self) -> int:
        return len(self._current)

    def items(self) -> ItemsView[str, InventoryUpdate]:
        return self._current.items()

    async def _run(self) -> None:
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=self._poll_ms)
                for records in batches.values():
                    for record in records:
                        await self.apply(record.value)
                if not self._caught_up.is_set() and await self._reached_end():
                    self._caught_up.set()
        except Exception:
            log.exception("%s: the inventory view stopped reading", self.topic)
            raise

    async def _reached_end(self) -> bool:
        for tp, end in self._end.items():
            if await self.consumer.position(tp) < end:
                return False
        return True

    async def apply(self, value: bytes | None) -> bool:
        """Keep `value` if it is newer than what its key holds; True when it was kept."""
        if value is None:  # a tombstone: invsync never writes one
            self.invalid += 1
            return False
        try:
            update = decode_inventory_update(value)
        except DecodeError as exc:
            self.invalid += 1
            log.warning("%s: skipped a record that is not an inventory update: %s", self.topic, exc)
            return False
        previous = self._current.get(update.key)
        if previous is not None and update.version <= previous.version:
            self.stale += 1
            return False
        self._current[update.key] = update
        if self._on_change is not None:
            result = self._on_change(update, previous)
            if inspect.isawaitable(result):
                await result
        return True
