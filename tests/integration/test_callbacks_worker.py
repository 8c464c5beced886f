"""Increff's callbacks against a real worker (its web server), the real broker and a
real local HTTP server standing in for Increff."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from invsync.mocks.increff import MockIncreff
from tests.fixtures import INCREFF_SAMPLES
from tests.integration.inventory_support import latest_by_key, order_created, read_all, stock
from tests.integration.support import WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration

TOKEN = {"x-increff-token": "cb-secret-token"}


def sample(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((INCREFF_SAMPLES / f"{name}.json").read_text())["request"]
    return body


@pytest.fixture
async def increff() -> AsyncIterator[MockIncreff]:
    mock = MockIncreff()
    await mock.start()
    yield mock
    await mock.stop()


@pytest.fixture
def worker(kafka_bootstrap: str, tmp_path: Path, increff: MockIncreff) -> Any:
    env = isolated_env(
        kafka_bootstrap,
        tmp_path / "data",
        INVSYNC_DEBOUNCE_MS="0",
        INVSYNC_CALLBACK_HEADERS=json.dumps(TOKEN),
        INVSYNC_CALLBACK_MAX_BYTES="20000",
        INVSYNC_INCREFF_BASE_URL=increff.base_url,
        INVSYNC_INCREFF_USERNAME="invsync-user",
        INVSYNC_INCREFF_PASSWORD="invsync-pass",
        INVSYNC_INCREFF_DOMAIN="invsync-domain",
    )
    proc = WorkerProcess(env, tmp_path / "worker.log")
    proc.start(ready=True)
    yield proc
    proc.stop()


async def _updates(bootstrap: str, env: dict[str, str], want: int) -> list[dict[str, Any]]:
    recs = await read_all(
        bootstrap,
        env["INVSYNC_TOPIC_ORDER_UPDATES"],
        until=lambda r: len(r) >= want,
        quiet_s=1.0,
        timeout=30.0,
    )
    return [orjson.loads(r.value) for r in recs]


ROUTES = [
    ("PUT", "/increff/orders/acknowledge", "order-acknowledgement"),
    ("POST", "/increff/orders/pack", "pack-order"),
    ("POST", "/increff/manifests", "create-manifest"),
    ("POST", "/increff/orders/handover", "handover-notification"),
    ("PUT", "/increff/orders/seller-cancel", "seller-cancellation"),
    ("PUT", "/increff/inventory", "location-wise-atp-inventory"),
    ("PUT", "/increff/inventory/consolidated", "consolidated-atp-inventory"),
    ("PUT", "/increff/returns/acknowledge", "return-order-acknowledgement"),
]


async def test_every_callback_checks_auth_body_and_size(worker: WorkerProcess) -> None:
    async with httpx.AsyncClient(base_url=worker.web, timeout=10) as http:
        for method, path, name in ROUTES:
            body = sample(name)
            no_auth = await http.request(method, path, json=body)
            assert no_auth.status_code == 401, (path, no_auth.text)
            assert no_auth.json()["hasError"] is True
            assert "cb-secret" not in no_auth.text
            wrong = await http.request(method, path, json=body, headers={"x-increff-token": "no"})
            assert wrong.status_code == 401, path
            bad = await http.request(method, path, content=b"{not json", headers=TOKEN)
            assert bad.status_code == 400, (path, bad.text)
            assert bad.json()["hasError"] is True
            assert bad.json()["errorMessage"]
            huge = await http.request(method, path, content=b"x" * 30_000, headers=TOKEN)
            assert huge.status_code == 413, (path, huge.status_code)
        for path in ("/increff/orders/invoice", "/increff/orders/shipping-label"):
            assert (await http.get(path)).status_code == 401


async def test_repeats_answer_the_same_and_publish_once(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    async with httpx.AsyncClient(base_url=worker.web, timeout=10) as http:
        answers: dict[str, list[tuple[int, bytes]]] = {}
        for method, path, name in ROUTES:
            if path.startswith("/increff/inventory"):
                continue  # snapshots, not order updates
            for _ in range(2):
                r = await http.request(method, path, json=sample(name), headers=TOKEN)
                assert r.status_code == 200, (path, r.text)
                answers.setdefault(path, []).append((r.status_code, r.content))
        for path, pair in answers.items():
            assert pair[0] == pair[1], path
    # ack: 2 orders; pack: 1; handover: 2 orders; seller cancel: 1; return ack: 1.
    updates = await _updates(kafka_bootstrap, worker.env, 7)
    types = sorted(u["type"] for u in updates)
    assert types == sorted(
        ["ORDER_ACKNOWLEDGED"] * 2
        + ["ORDER_PACKED", "SELLER_CANCELLED", "RETURN_ACKNOWLEDGED"]
        + ["ORDER_HANDED_OVER"] * 2
    ), types
    assert len({u["eventId"] for u in updates}) == len(updates)


async def test_order_journey_pack_label_handover(
    worker: WorkerProcess, kafka_bootstrap: str, increff: MockIncreff
) -> None:
    env = worker.env
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_STOCK_EVENTS"],
        [stock("s1", "WH1:A", 10, kind="SNAPSHOT")],
    )
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_ORDERS"],
        [order_created("o1", "J-1", "WH1", [("A", 2)])],
    )
    inv = await read_all(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_INVENTORY"],
        until=lambda r: latest_by_key(r).get("WH1:A", {}).get("quantity") == 8,
        quiet_s=0.5,
    )
    assert latest_by_key(inv)["WH1:A"]["quantity"] == 8
    await increff.wait_until(lambda: increff.count("create_order", "J-1") == 1, within=15)

    shipment = {
        "shipmentId": "5001",
        "orderCode": "J-1",
        "shipmentCode": "SH-1",
        "awbNumber": "AWB-77",
        "transporter": "Delhivery",
        "shippingLabelUrl": "https://labels.example/AWB-77.pdf",
        "boxLabelDetails": [],
    }
    await produce(
        kafka_bootstrap, env["INVSYNC_TOPIC_SHIPMENTS"], [(b"5001", orjson.dumps(shipment))]
    )
    pack = sample("pack-order") | {"orderCode": "J-1", "locationCode": "WH1", "shipmentId": 5001}
    handover = {
        "locationCode": "WH1",
        "handoverItems": [
            {
                "orderCode": "J-1",
                "shipmentCode": "SH-1",
                "gatePassCode": "G1",
                "packBoxDetailsList": [{"boxId": 1, "awbNumber": "AWB-77"}],
            }
        ],
    }
    query = {
        "orderCode": "J-1",
        "shipmentId": "5001",
        "shipmentCode": "SH-1",
        "locationCode": "WH1",
    }
    async with httpx.AsyncClient(base_url=worker.web, timeout=10) as http:
        r = await http.post("/increff/orders/pack", json=pack, headers=TOKEN)
        assert r.status_code == 200, r.text
        label = None
        for _ in range(50):  # the shipment reaches every worker through its global table
            label = await http.get("/increff/orders/shipping-label", params=query, headers=TOKEN)
            if label.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert label is not None and label.status_code == 200, label.text if label else None
        assert label.json()["awbNumber"] == "AWB-77"
        assert label.json()["transporter"] == "Delhivery"
        missing = await http.get(
            "/increff/orders/shipping-label",
            params={**query, "shipmentId": "999", "shipmentCode": "NOPE"},
            headers=TOKEN,
        )
        assert missing.status_code == 404
        assert missing.json()["hasError"] is True
        r = await http.post("/increff/orders/handover", json=handover, headers=TOKEN)
        assert r.status_code == 200, r.text
    updates = await _updates(kafka_bootstrap, env, 3)
    mine = [u["type"] for u in updates if u["payload"].get("orderCode") == "J-1"]
    assert "ORDER_PACKED" in mine
    assert "SHIPPING_LABEL_REQUESTED" in mine
    assert "ORDER_HANDED_OVER" in mine


async def test_seller_cancel_releases_and_inventory_push_becomes_snapshots(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    env = worker.env
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_STOCK_EVENTS"],
        [stock("s1", "WH3:K", 6, kind="SNAPSHOT")],
    )
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_ORDERS"],
        [order_created("o1", "SC-1", "WH3", [("K", 4)])],
    )
    topic = env["INVSYNC_TOPIC_INVENTORY"]

    async def quantity_becomes(key: str, want: int) -> dict[str, Any]:
        recs = await read_all(
            kafka_bootstrap,
            topic,
            until=lambda r: latest_by_key(r).get(key, {}).get("quantity") == want,
            quiet_s=0.5,
        )
        return latest_by_key(recs).get(key, {})

    assert (await quantity_becomes("WH3:K", 2))["reserved"] == 4
    cancel = {
        "orderCode": "SC-1",
        "locationCode": "WH3",
        "orderItems": [{"channelSkuCode": "K", "orderItemCode": "SC-1-0", "cancelledQuantity": 4}],
    }
    atp = {"locationCode": "WH4", "inventories": [{"channelSkuCode": "Z", "quantity": 40}]}
    async with httpx.AsyncClient(base_url=worker.web, timeout=10) as http:
        r = await http.put("/increff/orders/seller-cancel", json=cancel, headers=TOKEN)
        assert r.status_code == 200, r.text
        r = await http.put("/increff/inventory", json=atp, headers=TOKEN)
        assert r.status_code == 200, r.text
        assert r.json()["successList"] == ["Z"]
        assert r.json()["failureList"] == []
    released = await quantity_becomes("WH3:K", 6)
    assert released["reserved"] == 0
    pushed = await quantity_becomes("WH4:Z", 40)
    assert pushed["onHand"] == 40
