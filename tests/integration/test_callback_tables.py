"""The callbacks' global tables (issue 10, item 11): shipments found by (orderCode,
shipmentCode) through an index that survives a restart (rebuilt from the changelog),
forgotten when the marketplace tombstones them or their retention passes; remembered
callback answers dropped after theirs. A real worker and the real broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.inventory_support import read_all
from tests.integration.support import CALLBACK_HEADERS, WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration

RETENTION_S = 45.0  # room for a slow restart on a loaded machine


def _shipment(shipment_id: str, order: str, code: str) -> tuple[bytes, bytes]:
    body = {
        "shipmentId": shipment_id,
        "orderCode": order,
        "shipmentCode": code,
        "awbNumber": f"AWB-{shipment_id}",
        "transporter": "Delhivery",
        "shippingLabelUrl": f"https://labels.example/{shipment_id}.pdf",
        "boxLabelDetails": [],
    }
    return shipment_id.encode(), orjson.dumps(body)


async def _label(web: str, order: str, code: str) -> int:
    """The label callback by codes only (no shipmentId): the index's path."""
    async with httpx.AsyncClient(base_url=web, timeout=5.0) as http:
        r = await http.get(
            "/increff/orders/shipping-label",
            params={"orderCode": order, "shipmentCode": code},
            headers=CALLBACK_HEADERS,
        )
        return r.status_code


async def _invoice_found(web: str, order: str, code: str) -> bool:
    """True when the invoice callback found the shipment (it has no invoice: 404
    "invoice not available", as opposed to "unknown shipment")."""
    async with httpx.AsyncClient(base_url=web, timeout=5.0) as http:
        r = await http.get(
            "/increff/orders/invoice",
            params={"orderCode": order, "shipmentCode": code},
            headers=CALLBACK_HEADERS,
        )
        return "invoice not available" in r.text


async def _until(web: str, order: str, code: str, status: int, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await _label(web, order, code) == status:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"label of {order}/{code} not {status} within {within}s")


async def test_indexed_lookup_survives_restart_and_tables_are_bounded(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = isolated_env(
        kafka_bootstrap,
        tmp_path / "data",
        INVSYNC_SHIPMENT_RETENTION_S=str(RETENTION_S),
        INVSYNC_CALLBACK_RESULT_RETENTION_S=str(RETENTION_S),
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start(ready=True)
    topic = env["INVSYNC_TOPIC_SHIPMENTS"]
    try:
        published = time.monotonic()
        await produce(
            kafka_bootstrap,
            topic,
            [_shipment("9001", "O-1", "SH-1"), _shipment("9002", "O-2", "SH-2")]
            + [_shipment(str(9100 + i), f"O-{i}", "SH") for i in range(200)],
        )
        await _until(worker.web, "O-1", "SH-1", 200, 20.0)
        assert await _invoice_found(worker.web, "O-1", "SH-1")
        assert await _label(worker.web, "O-1", "SH-2") == 404  # codes of two shipments
        # Every shipment stored before the stop, so the restart below finds them all
        # in the changelog (not in the topic still to be consumed).
        shipments_log = f"{env['INVSYNC_APP_ID']}-shipments-changelog"
        stored = await read_all(
            kafka_bootstrap,
            shipments_log,
            until=lambda recs: len({r.key for r in recs if r.value is not None}) >= 202,
            quiet_s=0.2,
            timeout=20.0,
        )
        assert len({r.key for r in stored if r.value is not None}) == 202

        worker.stop()
        worker.start(ready=True)  # the index is rebuilt from the changelog
        await _until(worker.web, "O-2", "SH-2", 200, 20.0)
        assert await _label(worker.web, "O-1", "SH-1") == 200
        for i in range(0, 200, 7):
            assert await _label(worker.web, f"O-{i}", "SH") == 200, f"O-{i} lost"
        assert time.monotonic() - published < RETENTION_S, "restart too slow for the test"

        await produce(kafka_bootstrap, topic, [(b"9002", None)])  # type: ignore[list-item]
        await _until(worker.web, "O-2", "SH-2", 404, 10.0)  # tombstoned: forgotten

        # Retention: the shipment and the remembered answers go once it has passed.
        waited = await _until(worker.web, "O-1", "SH-1", 404, RETENTION_S + 20.0)
        assert time.monotonic() - published >= RETENTION_S - 1.0, waited
        assert not await _invoice_found(worker.web, "O-1", "SH-1")
        changelog = f"{env['INVSYNC_APP_ID']}-callback-results-changelog"
        key = b"invoice:O-1:SH-1"
        records = await read_all(
            kafka_bootstrap,
            changelog,
            until=lambda recs: any(r.key == key and r.value is None for r in recs),
            quiet_s=0.5,
            timeout=RETENTION_S,
        )
        stored = [r for r in records if r.key == key and r.value is not None]
        assert stored, "the invoice answer was not remembered"
        assert any(r.key == key and r.value is None for r in records), "never dropped"
        records = await read_all(kafka_bootstrap, shipments_log, quiet_s=1.0, timeout=10.0)
        assert b"9001" in {r.key for r in records if r.value is None}
    finally:
        worker.stop()
