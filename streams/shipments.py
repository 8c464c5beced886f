"""The callback global tables kept bounded, and the shipments table kept indexed.

`ShipmentIndex` maps (orderCode, shipmentCode) to shipmentId, so the invoice callback
finds a shipment with one lookup instead of JSON-parsing every shipment on the event
loop. It follows every change of the table: local writes, and the changelog records
Faust applies (recovery at start and, for a global table, other workers' writes).

Retention (DESIGN.md "Orders and callbacks"): a shipment is kept
`INVSYNC_SHIPMENT_RETENTION_S` after it was published, or until the marketplace
tombstones it; a callback result `INVSYNC_CALLBACK_RESULT_RETENTION_S` after it was
stored. The leader prunes both by writing tombstones to the tables' changelogs, which
every worker applies, and which compaction later removes, so recovery stays bounded too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson

from streams.state import StateTable, default_partition

log = logging.getLogger(__name__)

PRUNE_YIELD_EVERY = 5_000
"""Keys examined between yields to the event loop while pruning."""


def _codes(raw: bytes | None) -> tuple[str, str] | None:
    """(orderCode, shipmentCode) of a stored shipment, if it names both."""
    if not raw:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    order, code = body.get("orderCode"), body.get("shipmentCode")
    if isinstance(order, str) and isinstance(code, str):
        return order, code
    return None


class ShipmentIndex:
    """(orderCode, shipmentCode) -> shipmentId, and when each shipment was published."""

    def __init__(self) -> None:
        self._by_codes: dict[tuple[str, str], str] = {}
        self._of: dict[str, tuple[tuple[str, str] | None, float]] = {}

    def __len__(self) -> int:
        return len(self._of)

    def add(self, shipment_id: str, raw: bytes | None, at: float) -> None:
        """A shipment stored (or replaced); `at`: its publication time (epoch seconds)."""
        self.drop(shipment_id)
        codes = _codes(raw)
        self._of[shipment_id] = (codes, at)
        if codes is not None:
            self._by_codes[codes] = shipment_id

    def drop(self, shipment_id: str) -> None:
        codes = self._of.pop(shipment_id, (None, 0.0))[0]
        if codes is not None and self._by_codes.get(codes) == shipment_id:
            del self._by_codes[codes]

    def find(self, order_code: str, shipment_code: str) -> str | None:
        return self._by_codes.get((order_code, shipment_code))

    def older_than(self, cutoff: float) -> list[str]:
        return [sid for sid, (_, at) in self._of.items() if at < cutoff]


def watch_shipments(table: StateTable, index: ShipmentIndex) -> None:
    """Keep `index` in step with the changelog records Faust applies to `table`."""
    faust_table = table.table
    apply = faust_table.apply_changelog_batch

    def apply_and_index(batch: Iterable[Any]) -> None:
        events = list(batch)
        apply(events)
        for event in events:
            key = event.key
            shipment_id = key.decode("utf-8") if isinstance(key, bytes) else str(key)
            if event.value is None:
                index.drop(shipment_id)
            else:
                at = event.message.timestamp or time.time()
                index.add(shipment_id, faust_table.data.get(shipment_id), float(at))

    faust_table.apply_changelog_batch = apply_and_index


def _partition(table: StateTable, key: str) -> int:
    found = table.partition_of(key)
    return default_partition(key, table.partitions) if found is None else found


async def tombstone(table: StateTable, keys: Iterable[str]) -> int:
    """Delete `keys` here and, through their changelog, on every worker."""
    acks = []
    for key in keys:
        if key not in table.table.data:
            continue
        partition = _partition(table, key)
        table.table.data.pop(key, None)
        acks.append(
            await table.app.producer.send(
                table.changelog,
                key.encode("utf-8"),
                None,
                partition=partition,
                timestamp=None,
                headers=None,
            )
        )
    await asyncio.gather(*acks)
    return len(acks)


def result_stored_at(value: Any, default: float) -> float:
    """When a callback result was stored: its 4th element (3rd for results that only
    carry the ATP window's `at`); `default` for a result with no time at all."""
    if isinstance(value, list):
        for position in (3, 2):
            found = value[position] if len(value) > position else None
            if isinstance(found, int | float) and found > 0:
                return float(found)
    return default


async def prune(
    *,
    shipments: StateTable,
    index: ShipmentIndex,
    results: StateTable,
    shipment_retention_s: float,
    result_retention_s: float,
    now: float,
    started: float,
) -> tuple[int, int]:
    """Tombstone shipments and callback results past their retention; (shipments, results)."""
    old_shipments = index.older_than(now - shipment_retention_s)
    dropped_shipments = await tombstone(shipments, old_shipments)
    for shipment_id in old_shipments:
        index.drop(shipment_id)
    cutoff = now - result_retention_s
    expired: list[str] = []
    for n, (key, value) in enumerate(list(results.table.data.items()), 1):
        if result_stored_at(value, started) < cutoff:
            expired.append(key)
        if n % PRUNE_YIELD_EVERY == 0:
            await asyncio.sleep(0)
    dropped_results = await tombstone(results, expired)
    if dropped_shipments or dropped_results:
        log.info(
            "retention: dropped %d shipments and %d callback results",
            dropped_shipments,
            dropped_results,
        )
    return dropped_shipments, dropped_results
