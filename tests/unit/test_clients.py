"""Client helpers without a broker: validation, keys, the partitioner's hash, the
highest-version rule (the broker tests are in tests/integration/test_clients.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from invsync.clients import InvalidStockEvent, InventoryView, StockEventPublisher
from models.events import InventoryUpdate, StockEvent, decode_stock_event

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# org.apache.kafka.common.utils.UtilsTest.testMurmur2: Java's signed 32-bit results.
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def java_partition(key: bytes, partitions: int) -> int:
    """Kafka's BuiltInPartitioner: toPositive(murmur2(key)) % numPartitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "eventId": "e1",
        "type": "DELTA",
        "locationCode": "WH1",
        "channelSkuCode": "SKU-42",
        "quantity": -2,
        "occurredAt": NOW,
        **overrides,
    }


def update(version: int, quantity: int, sku: str = "SKU-42") -> bytes:
    return InventoryUpdate(
        locationCode="WH1",
        channelSkuCode=sku,
        quantity=quantity,
        onHand=quantity,
        reserved=0,
        version=version,
        asOf=NOW,
        publishedAt=NOW,
    ).encode()


def test_the_hash_is_kafkas_murmur2() -> None:
    for data, java in KAFKA_MURMUR2.items():
        assert murmur2(data) & 0xFFFFFFFF == java & 0xFFFFFFFF, data
    partitioner = DefaultPartitioner()
    for key in (b"WH1:SKU-42", b"WH2:SKU-42", b"a:b:c"):
        assert partitioner(key, list(range(12)), []) == java_partition(key, 12)


def test_events_are_validated_with_the_workers_model() -> None:
    with pytest.raises(InvalidStockEvent, match="quantity"):
        StockEventPublisher.validate(event(type="SNAPSHOT", quantity=-1))
    with pytest.raises(InvalidStockEvent, match="occurredAt"):
        StockEventPublisher.validate(event(occurredAt="2024-05-01T12:00:00"))
    with pytest.raises(InvalidStockEvent, match="eventId"):
        StockEventPublisher.validate(event(eventId=""))


def test_key_and_value_are_what_the_worker_accepts() -> None:
    checked = StockEventPublisher.validate(event(orderCode="ORD-1"))
    key, value = StockEventPublisher.encode(checked)
    assert key == b"WH1:SKU-42"
    assert decode_stock_event(key, value) == checked
    assert "reason" not in orjson.loads(value)  # absent optionals are left out


def test_the_publisher_owns_idempotence_and_partitioning() -> None:
    with pytest.raises(ValueError, match="enable_idempotence"):
        StockEventPublisher("127.0.0.1:1", enable_idempotence=False)
    with pytest.raises(ValueError, match="partitioner"):
        StockEventPublisher("127.0.0.1:1", partitioner=lambda *a: 0)


async def test_the_view_keeps_the_highest_version_not_the_last() -> None:
    seen: list[tuple[int, int | None]] = []

    def on_change(new: InventoryUpdate, old: InventoryUpdate | None) -> None:
        seen.append((new.quantity, None if old is None else old.quantity))

    view = InventoryView("127.0.0.1:1", on_change=on_change)
    assert await view.apply(update(10, 5))
    assert not await view.apply(update(7, 99))  # older, though later on the topic
    assert not await view.apply(update(10, 6))  # same version: a replay
    assert await view.apply(update(11, 0))
    assert not await view.apply(b"{not json")
    assert not await view.apply(None)
    assert view.get("WH1", "SKU-42") == InventoryUpdate.model_validate_json(update(11, 0))
    assert seen == [(5, None), (0, 5)]
    assert (view.stale, view.invalid, len(view)) == (2, 2, 1)
    await view.consumer.stop()  # never started; closes cleanly


async def test_an_async_callback_is_awaited() -> None:
    seen: list[int] = []

    async def on_change(new: InventoryUpdate, old: InventoryUpdate | None) -> None:
        seen.append(new.version)

    view = InventoryView("127.0.0.1:1", on_change=on_change)
    await view.apply(update(3, 1))
    await view.apply(update(4, 1, sku="SKU-43"))
    assert seen == [3, 4]
    assert isinstance(view["WH1:SKU-43"], InventoryUpdate)
    await view.consumer.stop()


def test_published_events_are_stock_events() -> None:
    assert isinstance(StockEventPublisher.validate(StockEvent.model_validate(event())), StockEvent)


def test_readme_shows_the_examples_verbatim() -> None:
    """The README's client examples are the files tests/integration/test_clients.py runs."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    for example in ("publish_stock_events.py", "watch_inventory.py"):
        code = (root / "docs" / "examples" / example).read_text()
        assert f"```python\n{code}```" in readme, f"README's copy of {example} differs"
