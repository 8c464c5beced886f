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
