"""A real worker's log with INVSYNC_LOG_FORMAT=json: every line one JSON object.

Faust's, aiokafka's and our own lines all go through the same handler; an order that
Increff rejects is logged with its order code as a field.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from invsync.mocks.increff import MockIncreff
from tests.integration.support import WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration


def order_created(code: str) -> tuple[bytes, bytes]:
    line = {"channelSkuCode": "SKU-1", "orderItemCode": f"{code}-1", "quantity": 1}
    body = {
        "eventId": f"oc-{code}",
        "type": "ORDER_CREATED",
        "occurredAt": datetime.now(UTC).isoformat(),
        "payload": {"orderCode": code, "locationCode": "WH1", "orderItems": [line]},
    }
    return code.encode(), orjson.dumps(body)


def parsed(path: Path) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"line {n} is not JSON: {line[:200]!r}") from exc
    return out


async def test_json_log_lines_from_a_real_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    async with MockIncreff() as increff:
        increff.fail_next(1, status=400, body={"code": "BAD_DATA", "message": "unknown SKU"})
        env = isolated_env(
            kafka_bootstrap,
            tmp_path / "data",
            INVSYNC_LOG_FORMAT="json",
            INVSYNC_INCREFF_BASE_URL=increff.base_url,
            INVSYNC_INCREFF_USERNAME="invsync-user",
            INVSYNC_INCREFF_PASSWORD="invsync-pass",
            INVSYNC_INCREFF_DOMAIN="invsync-domain",
        )
        worker = WorkerProcess(env, log_path)
        worker.start(ready=True)
        try:
            await produce(kafka_bootstrap, env["INVSYNC_TOPIC_ORDERS"], [order_created("O-77")])
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline and b'"order_code": "O-77"' not in log_path.read_bytes()
            ):
                await asyncio.sleep(0.2)  # the mock Increff answers on this loop
        finally:
            code = worker.stop()

    records = parsed(log_path)
    assert code == 0, worker.log_tail()
    assert len(records) >= 3
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        datetime.fromisoformat(record["time"])
    loggers = {r["logger"] for r in records}
    assert any(name.startswith("faust.") for name in loggers), loggers
    assert any(name.startswith("aiokafka.") for name in loggers), loggers
    assert any("Worker]: Ready" in r["message"] for r in records)
    rejected = [r for r in records if r.get("order_code") == "O-77"]
    assert rejected, f"no line with the order code:\n{worker.log_tail(20)}"
    assert rejected[0]["logger"] == "streams.router" and rejected[0]["level"] == "WARNING"
    assert not any("invsync-pass" in r["message"] for r in records)
    assert not any(r["logger"] == "httpx" for r in records), "per-request lines at INFO"
