"""End-to-end smoke test: a real worker process on the real broker."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.integration.inventory_support import read_all
from tests.integration.support import WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration


async def test_worker_publishes_inventory_for_a_stock_event(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="0")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    try:
        event = {
            "eventId": "e-1",
            "type": "SNAPSHOT",
            "locationCode": "WH1",
            "channelSkuCode": "SKU-1",
            "quantity": 7,
            "occurredAt": "2026-11-27T10:00:00+05:30",
        }
        await produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_STOCK_EVENTS"],
            [(b"WH1:SKU-1", orjson.dumps(event))],
        )
        out = await read_all(
            kafka_bootstrap, env["INVSYNC_TOPIC_INVENTORY"], until=lambda r: len(r) >= 1, quiet_s=0
        )
        assert out, f"no inventory update published; worker log:\n{worker.log_tail()}"
        assert out[0].key == b"WH1:SKU-1"
        update = orjson.loads(out[0].value)
        assert update["quantity"] == 7
        assert update["onHand"] == 7
        assert update["version"] > 0
    finally:
        code = worker.stop()
    assert code == 0, f"worker did not stop cleanly on SIGTERM:\n{worker.log_tail()}"


async def test_poison_input_is_dead_lettered_and_the_worker_keeps_consuming(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A quantity beyond the contract, an event on the wrong partition and a location
    code holding ':' — then a normal event must still be applied; /ready says ready."""
    import httpx
    from aiokafka import AIOKafkaProducer

    from streams.state import default_partition

    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="0")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start(ready=True)
    stock_topic = env["INVSYNC_TOPIC_STOCK_EVENTS"]

    def event(n: int, loc: str, sku: str, qty: int | str) -> bytes:
        return (
            f'{{"eventId":"p-{n}","type":"DELTA","locationCode":"{loc}",'
            f'"channelSkuCode":"{sku}","quantity":{qty},"occurredAt":"2026-11-27T10:00:00Z"}}'
        ).encode()

    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{worker.web}/ready")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "ready"}
        home = default_partition("WH1:SKU-2", 4)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            huge = "1000000000000000000000000000000"
            await producer.send_and_wait(
                stock_topic, event(1, "WH1", "SKU-1", huge), key=b"WH1:SKU-1"
            )
            await producer.send_and_wait(
                stock_topic, event(2, "WH1", "SKU-2", 3), key=b"WH1:SKU-2", partition=(home + 1) % 4
            )
            await producer.send_and_wait(stock_topic, event(3, "W:H", "A", 4), key=b"W:H:A")
            await producer.send_and_wait(stock_topic, event(4, "WH1", "SKU-1", 5), key=b"WH1:SKU-1")
        finally:
            await producer.stop()
        dead = await read_all(
            kafka_bootstrap, env["INVSYNC_TOPIC_DEAD_LETTERS"], until=lambda r: len(r) >= 2
        )
        errors = sorted(orjson.loads(r.value)["error"] for r in dead)
        assert len(errors) == 2, errors
        assert "partition" in errors[0] and "murmur2" in errors[0]
        assert "quantity" in errors[1]
        out = await read_all(
            kafka_bootstrap, env["INVSYNC_TOPIC_INVENTORY"], until=lambda r: len(r) >= 2
        )
        latest = {r.key: orjson.loads(r.value) for r in out}
        assert latest[b"WH1:SKU-1"]["quantity"] == 5, worker.log_tail()
        assert (latest[b"W:H:A"]["locationCode"], latest[b"W:H:A"]["channelSkuCode"]) == (
            "W:H",
            "A",
        )
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
    finally:
        code = worker.stop()
    assert code == 0, f"worker did not stop cleanly on SIGTERM:\n{worker.log_tail()}"
