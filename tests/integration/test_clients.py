"""Client helpers on the real broker, and the README's examples run against a real worker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from invsync.clients import InvalidStockEvent, InventoryView, StockEventPublisher
from models.events import InventoryUpdate, StockEvent, decode_stock_event
from tests.integration.support import WorkerProcess, isolated_env, produce
from tests.unit.test_clients import event, java_partition, update

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


async def create_topic(bootstrap: str, partitions: int, *, compacted: bool = False) -> str:
    name = f"clients-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {"cleanup.policy": "compact"} if compacted else {}
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()
    return name


async def consume_all(bootstrap: str, topic: str, want: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < want:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def producer_ids(bootstrap: str, topic: str, partition: int) -> list[int]:
    """The producer id of every record batch the broker stores (-1: not idempotent)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        client.add_topic(topic)
        await client.force_metadata_update()
        node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        request = FetchRequest(
            max_wait_time=100,
            min_bytes=1,
            max_bytes=1 << 20,
            isolation_level=0,
            topics=[(topic, [(partition, 0, 1 << 20)])],
        )
        response: Any = await client.send(node, request)
        raw = response.topics[0][1][0][-1]
        records = MemoryRecords(bytes(raw))
        ids: list[int] = []
        while (batch := records.next_batch()) is not None:
            ids.append(batch.producer_id)  # type: ignore[union-attr]
        return ids
    finally:
        await client.close()


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.1)


# --- the publisher ------------------------------------------------------------------


async def test_publisher_keys_by_inventory_key_with_kafkas_partitioner(
    kafka_bootstrap: str,
) -> None:
    topic = await create_topic(kafka_bootstrap, 4)
    events = [
        event(eventId=f"e{i}", locationCode=f"WH{i % 3}", channelSkuCode=f"SKU-{i}", quantity=i)
        for i in range(24)
    ]
    async with StockEventPublisher(kafka_bootstrap, topic=topic) as publisher:
        sent = await publisher.publish_many(events)
        one = await publisher.publish(event(eventId="last", locationCode="A:B", quantity=1))
    assert len({s.partition for s in sent}) > 1  # the keys spread over partitions
    records = await consume_all(kafka_bootstrap, topic, len(events) + 1)
    by_offset = {(r.partition, r.offset): r for r in records}
    for published, original in zip([*sent, one], [*events, None], strict=True):
        record = by_offset[(published.partition, published.offset)]
        assert record.key == published.key.encode()
        assert record.partition == java_partition(record.key, 4)
        decoded = decode_stock_event(record.key, record.value)  # what the worker does
        if original is not None:
            assert decoded == StockEvent.model_validate(original)
    assert one.key == "A:B:SKU-42"


async def test_publisher_is_idempotent_on_the_broker(kafka_bootstrap: str) -> None:
    topic = await create_topic(kafka_bootstrap, 1)
    async with StockEventPublisher(kafka_bootstrap, topic=topic) as publisher:
        await publisher.publish_many([event(eventId=f"e{i}") for i in range(3)])
    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)  # the control
    await plain.start()
    try:
        await plain.send_and_wait(topic, b"{}", key=b"x")
    finally:
        await plain.stop()
    ids = await producer_ids(kafka_bootstrap, topic, 0)
    assert len(ids) >= 2
    assert all(pid >= 0 for pid in ids[:-1]), ids  # batches carry a producer id and sequence
    assert ids[-1] == -1, ids


async def test_an_invalid_event_sends_nothing(kafka_bootstrap: str) -> None:
    topic = await create_topic(kafka_bootstrap, 1)
    async with StockEventPublisher(kafka_bootstrap, topic=topic) as publisher:
        with pytest.raises(InvalidStockEvent, match="SNAPSHOT"):
            await publisher.publish_many([event(), event(type="SNAPSHOT", quantity=-4)])
        await publisher.publish(event(eventId="after"))
    records = await consume_all(kafka_bootstrap, topic, 1)
    assert [r.offset for r in records] == [0]
    assert b'"after"' in records[0].value


# --- the inventory view -------------------------------------------------------------


@pytest.fixture
async def inventory_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    yield await create_topic(kafka_bootstrap, 2, compacted=True)


async def test_view_reads_from_the_start_and_ignores_a_lower_version_that_arrives_later(
    kafka_bootstrap: str, inventory_topic: str
) -> None:
    await produce(
        kafka_bootstrap,
        inventory_topic,
        [
            (b"WH1:SKU-42", update(10, 5)),
            (b"WH1:SKU-42", update(7, 99)),  # a rebalance's late, older update
            (b"WH1:SKU-43", update(1, 3, sku="SKU-43")),
        ],
    )
    changes: list[tuple[str, int | None, int]] = []

    def on_change(new: InventoryUpdate, old: InventoryUpdate | None) -> None:
        changes.append((new.key, None if old is None else old.quantity, new.quantity))

    async with InventoryView(kafka_bootstrap, topic=inventory_topic, on_change=on_change) as view:
        async with asyncio.timeout(30):
            await view.wait_caught_up()
        assert view.get("WH1", "SKU-42") is not None
        assert view["WH1:SKU-42"].quantity == 5
        assert view["WH1:SKU-43"].quantity == 3
        assert view.stale == 1
        assert sorted(changes) == [("WH1:SKU-42", None, 5), ("WH1:SKU-43", None, 3)]

        # Live: a newer update is taken and called back; an older one after it is not.
        await produce(
            kafka_bootstrap,
            inventory_topic,
            [
                (b"WH1:SKU-42", update(11, 0)),
                (b"WH1:SKU-42", update(9, 42)),
                (b"WH1:SKU-42", b"not an update"),
                (b"WH1:SKU-43", update(2, 4, sku="SKU-43")),
            ],
        )
        await eventually(lambda: view["WH1:SKU-43"].quantity == 4 and view.invalid == 1)
        assert view["WH1:SKU-42"].quantity == 0
        assert view["WH1:SKU-42"].version == 11
        assert view.stale == 2
        assert sorted(changes[2:]) == [("WH1:SKU-42", 5, 0), ("WH1:SKU-43", 3, 4)]


async def test_view_of_an_empty_topic_is_caught_up_and_a_missing_topic_is_named(
    kafka_bootstrap: str, inventory_topic: str
) -> None:
    async with InventoryView(kafka_bootstrap, topic=inventory_topic) as view:
        async with asyncio.timeout(30):
            await view.wait_caught_up()
        assert len(view) == 0
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(LookupError, match=missing):
        await InventoryView(kafka_bootstrap, topic=missing).start()


async def test_a_failing_callback_stops_the_view_loudly(
    kafka_bootstrap: str, inventory_topic: str
) -> None:
    await produce(kafka_bootstrap, inventory_topic, [(b"WH1:SKU-42", update(1, 1))])

    def on_change(new: InventoryUpdate, old: InventoryUpdate | None) -> None:
        raise RuntimeError("marketplace API down")

    view = InventoryView(kafka_bootstrap, topic=inventory_topic, on_change=on_change)
    await view.start()
    try:
        with pytest.raises(RuntimeError, match="marketplace API down"):
            async with asyncio.timeout(30):
                await view.wait_caught_up()
    finally:
        with pytest.raises(RuntimeError, match="marketplace API down"):
            await view.stop()


# --- the README's examples ----------------------------------------------------------


def run_example(name: str, env: dict[str, str], timeout: float = 90.0) -> str:
    """Run a docs/examples script as a user would; its whole process group ends with it."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=ROOT,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = out.decode()
    assert proc.returncode == 0, text
    return text


@pytest.fixture
def worker(kafka_bootstrap: str, tmp_path: Path) -> Any:
    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="0")
    proc = WorkerProcess(env, tmp_path / "worker.log")
    proc.start(ready=True)
    yield proc
    proc.stop()


async def test_readme_examples_run_against_a_worker(
    kafka_bootstrap: str, worker: WorkerProcess
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "INVSYNC_TOPIC_STOCK_EVENTS": worker.env["INVSYNC_TOPIC_STOCK_EVENTS"],
        "INVSYNC_TOPIC_INVENTORY": worker.env["INVSYNC_TOPIC_INVENTORY"],
    }
    published = await asyncio.to_thread(run_example, "publish_stock_events.py", env)
    lines = re.findall(r"^(\S+) -> partition (\d+), offset (\d+)$", published, re.MULTILINE)
    assert [key for key, _, _ in lines] == ["WH1:SKU-42", "WH1:SKU-42", "WH2:SKU-42"], published
    partitions = int(worker.env["INVSYNC_TOPIC_PARTITIONS"])
    for key, partition, _ in lines:
        assert int(partition) == java_partition(key.encode(), partitions)

    # The worker turns them into ATP: 10 counted - 2 picked at WH1, 5 received at WH2.
    async with InventoryView(kafka_bootstrap, topic=env["INVSYNC_TOPIC_INVENTORY"]) as view:
        await eventually(
            lambda: (
                (a := view.get("WH1", "SKU-42")) is not None
                and a.quantity == 8
                and (b := view.get("WH2", "SKU-42")) is not None
                and b.quantity == 5
            ),
            timeout=60,
        )
    watched = await asyncio.to_thread(run_example, "watch_inventory.py", env)
    final = dict(re.findall(r"^(\S+): \S+ -> (\d+)$", watched, re.MULTILINE))
    assert final == {"WH1:SKU-42": "8", "WH2:SKU-42": "5"}, watched
    assert "caught up: 2 keys" in watched, watched
    print(f"--- publish_stock_events.py\n{published}--- watch_inventory.py\n{watched}")
