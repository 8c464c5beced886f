"""The consolidation stage (`INVSYNC_CONSOLIDATED=true`): consolidated ATP per SKU.

Two steps, each on the per-partition batch path (`streams/fastpath.py`):

1. *re-key*: each `marketplace.inventory` record goes, unchanged, to the internal
   `{app id}-inventory-by-sku` topic keyed by its `channelSkuCode` (Kafka's default
   partitioner), so one worker sees every location of a SKU. Sent and acknowledged
   before the batch's offsets may be committed; a replay re-sends, which is harmless.
2. *consolidate*: `models.consolidation.ConsolidationEngine` holds each location's
   newest record per SKU in the `consolidated-state` table and publishes the coalesced
   `{channelSkuCode, quantity, locations, version, asOf}` to
   `marketplace.inventory-consolidated`, flushing as the inventory agent does
   (`streams/publishing.py`).

A record that cannot be read (not an inventory record, a key that does not name it) is
dead-lettered with the reason, like any input.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import faust
from faust.types import TP

from models.consolidation import (
    ConsolidatedUpdate,
    ConsolidationEngine,
    LocationRecord,
    Publication,
    SkuState,
    decode_location_record,
)
from models.errors import DecodeError
from streams import fastpath
from streams.deadletters import DeadLetters, Message, Send
from streams.inventory import FLUSH_TICK_S, Rebalances
from streams.metrics import Metrics
from streams.publishing import PublishingAgent
from streams.settings import Settings
from streams.state import StateTable, default_partition, register_state_codec
from streams.topics import CONSOLIDATION_TABLE

log = logging.getLogger(__name__)

SKU_CODEC = "invsync-skustate"
register_state_codec(SKU_CODEC, SkuState)


class ConsolidationAgent(PublishingAgent[SkuState, ConsolidatedUpdate]):
    """Runs the consolidation engine against the by-SKU topic."""

    name = "SKUs"
    engine: ConsolidationEngine

    def __init__(
        self,
        *,
        engine: ConsolidationEngine,
        state: StateTable,
        publish: Send,
        dead_letters: DeadLetters,
        metrics: Metrics,
    ) -> None:
        super().__init__(engine=engine, state=state, publish=publish)
        self.dead_letters = dead_letters
        self.metrics = metrics

    async def process(self, messages: Sequence[Message]) -> None:
        """Apply a batch; returns once its outputs and state writes are acknowledged."""
        records: list[LocationRecord] = []
        source: dict[int, Message] = {}
        for msg in messages:
            try:
                update = decode_location_record(msg.key, msg.value, by_sku=True)
            except DecodeError as exc:
                await self.dead_letters.reject(msg, exc)
                continue
            record = LocationRecord(msg.partition, msg.offset, update)
            source[id(record)] = msg
            records.append(record)
        async with self.applying():
            applied = self.engine.apply(records, self.clock())
            for record, error in applied.rejected:
                await self.dead_letters.reject(source[id(record)], error)
            for outcome, n in applied.records.items():
                self.metrics.consolidated_records.labels(outcome).inc(n)
            await self._flush(applied.writes)

    def _observe(self, pubs: list[Publication], wall: datetime, now: float) -> None:
        self.metrics.consolidated_published.inc(len(pubs))


async def rekey(messages: Sequence[Message], send: Send, dead_letters: DeadLetters) -> None:
    """Each per-location record to the by-SKU topic, keyed by its SKU; returns once the
    broker acknowledged them all."""
    acks = []
    for msg in messages:
        try:
            update = decode_location_record(msg.key, msg.value, by_sku=False)
        except DecodeError as exc:
            await dead_letters.reject(msg, exc)
            continue
        acks.append(await send(update.channelSkuCode.encode("utf-8"), msg.value or b""))
    await asyncio.gather(*acks)


def install_consolidation(
    app: faust.App,
    settings: Settings,
    *,
    inventory: faust.TopicT,
    by_sku: faust.TopicT,
    send_by_sku: Send,
    publish: Send,
    dead_letters: DeadLetters,
    metrics: Metrics,
    rebalances: Rebalances,
    fatal: Callable[[BaseException], None],
) -> ConsolidationAgent:
    """Re-key ``inventory`` onto ``by_sku`` and consolidate it into ``publish``'s topic."""
    partitions = settings.topic_partitions
    state = StateTable(app, CONSOLIDATION_TABLE, partitions, SKU_CODEC)
    engine = ConsolidationEngine(
        state,
        debounce_s=settings.debounce_ms / 1000,
        max_delay_s=settings.max_delay_ms / 1000,
        partition_for=lambda sku: default_partition(sku, partitions),
    )
    agent = ConsolidationAgent(
        engine=engine, state=state, publish=publish, dead_letters=dead_letters, metrics=metrics
    )

    async def rekey_batch(tp: TP, messages: list[Any]) -> None:
        await rekey(messages, send_by_sku, dead_letters)

    async def consolidate_batch(tp: TP, messages: list[Any]) -> None:
        await agent.process(messages)

    fastpath.install(app, inventory, rekey_batch, combine=True, fatal=fatal, name="rekey")
    fastpath.install(
        app, by_sku, consolidate_batch, combine=True, fatal=fatal, name="consolidation"
    )
    rebalances.follow(agent, settings.topic_inventory_by_sku)

    async def flush_due() -> None:
        await agent.flush_due()

    timer: Any = app.timer  # untyped decorator in faust
    timer(FLUSH_TICK_S, on_leader=False)(flush_due)
    return agent
