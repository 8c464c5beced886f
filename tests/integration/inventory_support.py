"""Stock and order events for the inventory integration tests, and a reader of outputs."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
_last = T0


def event_time() -> datetime:
    """The clock, strictly increasing: an event at its key's snapshot's very microsecond
    would be in that snapshot (DESIGN.md "Reservations and snapshots")."""
    global _last
    _last = max(datetime.now(UTC), _last + timedelta(microseconds=1))
    return _last


def stock(
    event_id: str,
    key: str,
    quantity: int,
    *,
    kind: str = "DELTA",
    at: datetime | None = None,
    order_code: str | None = None,
    basis: str | None = None,
) -> tuple[bytes, bytes]:
    location, _, sku = key.partition(":")
    body: dict[str, Any] = {
        "eventId": event_id,
        "type": kind,
        "locationCode": location,
        "channelSkuCode": sku,
        "quantity": quantity,
        "occurredAt": (at or event_time()).isoformat(),
    }
    if order_code:
        body["orderCode"] = order_code
    if basis:
        body["basis"] = basis
    return key.encode(), orjson.dumps(body)


def order_created(
    event_id: str, order_code: str, location: str, lines: Iterable[tuple[str, int]]
) -> tuple[bytes, bytes]:
    payload = {
        "orderCode": order_code,
        "locationCode": location,
        "orderTime": T0.isoformat(),
        "orderType": "SO",
        "orderItems": [
            {"channelSkuCode": sku, "orderItemCode": f"{order_code}-{i}", "quantity": qty}
            for i, (sku, qty) in enumerate(lines)
        ],
    }
    event = {
        "eventId": event_id,
        "type": "ORDER_CREATED",
        "occurredAt": datetime.now(UTC).isoformat(),
        "payload": payload,
    }
    return order_code.encode(), orjson.dumps(event)


def customer_cancelled(
    event_id: str, order_code: str, location: str, lines: Iterable[tuple[str, int]]
) -> tuple[bytes, bytes]:
    payload = {
        "orderCode": order_code,
        "locationCode": location,
        "orderItems": [
            {"channelSkuCode": sku, "orderItemCode": f"{order_code}-{i}", "cancelledQuantity": q}
            for i, (sku, q) in enumerate(lines)
        ],
    }
    event = {
        "eventId": event_id,
        "type": "CUSTOMER_CANCELLED",
        "occurredAt": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
        "payload": payload,
    }
    return order_code.encode(), orjson.dumps(event)


async def read_all(
    bootstrap: str,
    topic: str,
    *,
    until: Any = None,
    quiet_s: float = 2.0,
    timeout: float = 60.0,
    **security: Any,
) -> list[Any]:
    """Every record of `topic` from the start; stops when `until(records)` holds and no
    record arrived for `quiet_s`, or at the timeout. `security`: aiokafka's arguments."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        **security,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        last_arrival = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = [r for recs in batch.values() for r in recs]
            if got:
                records.extend(got)
                last_arrival = time.monotonic()
            elif (until is None or until(records)) and time.monotonic() - last_arrival >= quiet_s:
                break
        return records
    finally:
        await consumer.stop()


def latest_by_key(records: list[Any]) -> dict[str, dict[str, Any]]:
    """What a compacting consumer keeps: the highest version of each key."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        value = orjson.loads(record.value)
        key = record.key.decode()
        if key not in out or value["version"] > out[key]["version"]:
            out[key] = value
    return out


def versions_increase(records: list[Any]) -> bool:
    """Within each partition's log, versions of a key strictly increase."""
    seen: dict[str, int] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        key = record.key.decode()
        version = orjson.loads(record.value)["version"]
        if key in seen and version <= seen[key]:
            return False
        seen[key] = version
    return True
