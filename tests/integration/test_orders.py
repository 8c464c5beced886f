"""Orders to Increff and inventory to the marketplace: a real worker, real local HTTP
servers standing in for Increff and the marketplace, and the real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from invsync.mocks.increff import MockIncreff
from invsync.mocks.marketplace import MockMarketplace
from tests.fixtures import INCREFF_SAMPLES
from tests.integration.inventory_support import (
    customer_cancelled,
    latest_by_key,
    order_created,
    read_all,
    stock,
)
from tests.integration.support import WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration


@pytest.fixture
async def increff() -> AsyncIterator[MockIncreff]:
    mock = MockIncreff(username="mp-user", password="mp-secret-pass", domain="mp-domain")
    await mock.start()
    yield mock
    await mock.stop()


@pytest.fixture
async def marketplace() -> AsyncIterator[MockMarketplace]:
    mock = MockMarketplace(auth_headers={"x-api-key": "mk-secret"})
    await mock.start()
    yield mock
    await mock.stop()


@pytest.fixture
def increff_worker(
    kafka_bootstrap: str, tmp_path: Path, increff: MockIncreff
) -> Iterator[WorkerProcess]:
    """A worker talking to the mock Increff, stopped after the test."""
    env = isolated_env(kafka_bootstrap, tmp_path / "data", **_increff_env(increff))
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    yield worker
    worker.stop()


def _increff_env(mock: MockIncreff) -> dict[str, str]:
    return {
        "INVSYNC_INCREFF_BASE_URL": mock.base_url,
        "INVSYNC_INCREFF_USERNAME": "mp-user",
        "INVSYNC_INCREFF_PASSWORD": "mp-secret-pass",
        "INVSYNC_INCREFF_DOMAIN": "mp-domain",
        "INVSYNC_DEBOUNCE_MS": "0",
    }


async def _quantity(bootstrap: str, topic: str, key: str, want: int) -> dict[str, Any]:
    out = await read_all(
        bootstrap,
        topic,
        until=lambda recs: latest_by_key(recs).get(key, {}).get("quantity") == want,
        quiet_s=0.5,
        timeout=30.0,
    )
    return latest_by_key(out).get(key, {})


async def _eventually(predicate: Any, within: float = 30.0) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


async def test_order_journey_reserves_creates_and_settles(
    kafka_bootstrap: str, increff: MockIncreff, increff_worker: WorkerProcess
) -> None:
    worker = increff_worker
    env = worker.env
    inv = env["INVSYNC_TOPIC_INVENTORY"]
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_STOCK_EVENTS"],
        [stock("s1", "WH1:A", 10, kind="SNAPSHOT")],
    )
    assert (await _quantity(kafka_bootstrap, inv, "WH1:A", 10))["quantity"] == 10
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_ORDERS"],
        [order_created("o1", "ORD-1", "WH1", [("A", 3)])],
    )
    after_order = await _quantity(kafka_bootstrap, inv, "WH1:A", 7)
    assert after_order["quantity"] == 7, worker.log_tail()
    assert after_order["reserved"] == 3
    assert await _eventually(lambda: increff.count("create_order", "ORD-1") == 1)
    created = [r for r in increff.requests if r.path == "/orders/outward"]
    assert created[0].method == "POST"
    assert created[0].body["orderCode"] == "ORD-1"
    assert created[0].body["orderItems"][0]["channelSkuCode"] == "A"
    assert created[0].headers["authUsername"] == "mp-user"
    assert created[0].headers["authDomainName"] == "mp-domain"

    # Increff's ATP now counts the order (7 left, plus 1 received): a later AVAILABLE
    # snapshot absorbs the reservation, else the quantity would be 8 - 3 = 5.
    later = datetime.now(UTC) + timedelta(seconds=5)
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_STOCK_EVENTS"],
        [stock("s2", "WH1:A", 8, kind="SNAPSHOT", at=later, basis="AVAILABLE")],
    )
    settled = await read_all(
        kafka_bootstrap,
        inv,
        until=lambda recs: latest_by_key(recs).get("WH1:A", {}).get("reserved") == 0,
        quiet_s=0.5,
        timeout=30.0,
    )
    final = latest_by_key(settled)["WH1:A"]
    assert (final["quantity"], final["onHand"], final["reserved"]) == (8, 8, 0)
    assert "mp-secret-pass" not in worker.log_tail(400)


async def test_increff_500_then_success_is_applied_once(
    kafka_bootstrap: str, increff: MockIncreff, increff_worker: WorkerProcess
) -> None:
    worker = increff_worker
    env = worker.env
    increff.fail_next(3, status=500)
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_ORDERS"],
        [order_created("o1", "ORD-5", "WH1", [("B", 1)])],
    )
    assert await _eventually(lambda: increff.count("create_order", "ORD-5") == 1)
    await asyncio.sleep(1.0)
    attempts = [r for r in increff.requests if r.path == "/orders/outward"]
    assert len(attempts) >= 4
    assert increff.count("create_order", "ORD-5") == 1


async def test_increff_400_rejects_and_releases_the_reservation(
    kafka_bootstrap: str, increff: MockIncreff, increff_worker: WorkerProcess
) -> None:
    worker = increff_worker
    env = worker.env
    inv = env["INVSYNC_TOPIC_INVENTORY"]
    increff.reject("ORD-BAD", status=400, code="BAD_DATA", message="Input validation failed")
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_STOCK_EVENTS"],
        [stock("s1", "WH1:C", 5, kind="SNAPSHOT")],
    )
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_ORDERS"],
        [order_created("o1", "ORD-BAD", "WH1", [("C", 2)])],
    )
    updates = await read_all(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_ORDER_UPDATES"],
        until=lambda recs: len(recs) >= 1,
        quiet_s=0.5,
    )
    bodies = [orjson.loads(r.value) for r in updates]
    assert [b["type"] for b in bodies] == ["INCREFF_REJECTED"], worker.log_tail()
    assert bodies[0]["payload"]["code"] == "BAD_DATA"
    assert bodies[0]["payload"]["message"] == "Input validation failed"
    assert updates[0].key == b"ORD-BAD"
    released = await _quantity(kafka_bootstrap, inv, "WH1:C", 5)
    assert (released["quantity"], released["reserved"]) == (5, 0)
    assert increff.count("create_order", "ORD-BAD") == 0


async def test_customer_cancellation_reaches_increff_and_releases(
    kafka_bootstrap: str, increff: MockIncreff, increff_worker: WorkerProcess
) -> None:
    worker = increff_worker
    env = worker.env
    inv = env["INVSYNC_TOPIC_INVENTORY"]
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_STOCK_EVENTS"],
        [stock("s1", "WH2:D", 9, kind="SNAPSHOT")],
    )
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_ORDERS"],
        [
            order_created("o1", "ORD-7", "WH2", [("D", 4)]),
            customer_cancelled("c1", "ORD-7", "WH2", [("D", 4)]),
        ],
    )
    assert await _eventually(lambda: increff.count("cancel_order", "ORD-7") == 1)
    cancel = next(r for r in increff.requests if r.path == "/orders/ORD-7/cancel")
    assert cancel.method == "PUT"
    assert cancel.body["orderItems"][0]["cancelledQuantity"] == 4
    final = await _quantity(kafka_bootstrap, inv, "WH2:D", 9)
    assert (final["quantity"], final["reserved"]) == (9, 0)


async def test_push_survives_an_outage_and_converges_without_stale_values(
    kafka_bootstrap: str, tmp_path: Path, marketplace: MockMarketplace
) -> None:
    env = isolated_env(
        kafka_bootstrap,
        tmp_path / "data",
        INVSYNC_DEBOUNCE_MS="0",
        INVSYNC_MARKETPLACE_INVENTORY_URL=f"{marketplace.base_url}/inventory",
        INVSYNC_MARKETPLACE_HEADERS='{"x-api-key": "mk-secret"}',
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    topic = env["INVSYNC_TOPIC_STOCK_EVENTS"]
    keys = [f"WH1:P{i}" for i in range(250)]  # > 200 SKUs at one location
    try:
        await produce(
            kafka_bootstrap, topic, [stock(f"a-{k}", k, 5, kind="SNAPSHOT") for k in keys]
        )
        assert await _eventually(
            lambda: all(marketplace.quantity("WH1", k.split(":")[1]) == 5 for k in keys)
        ), worker.log_tail()
        marketplace.set_down(True)
        outage_start = len(marketplace.received)
        for round_ in range(5):
            await produce(
                kafka_bootstrap,
                topic,
                [stock(f"r{round_}-{k}", k, 10 + round_, kind="SNAPSHOT") for k in keys],
            )
            await asyncio.sleep(0.3)
        # Wait until the worker has published the final quantities (so they are what
        # waits for the marketplace), then bring the marketplace back.
        await read_all(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_INVENTORY"],
            until=lambda recs: all(
                latest_by_key(recs).get(k, {}).get("quantity") == 14 for k in keys
            ),
            quiet_s=0.5,
            timeout=60.0,
        )
        marketplace.set_down(False)
        assert await _eventually(
            lambda: all(marketplace.quantity("WH1", k.split(":")[1]) == 14 for k in keys),
            within=60.0,
        ), worker.log_tail()
        after = [r for r in marketplace.received[outage_start:] if r.accepted]
        per_sku: dict[str, list[int]] = {}
        for r in after:
            per_sku.setdefault(r.channel_sku_code, []).append(r.quantity)
        stale = {sku: qs for sku, qs in per_sku.items() if qs != [14]}
        assert not stale, f"stale values pushed after the outage: {dict(list(stale.items())[:5])}"
        assert all(len(r.body["inventories"]) <= 200 for r in marketplace.requests if r.body)
    finally:
        worker.stop()


async def test_return_events_reach_increffs_returns_apis(
    kafka_bootstrap: str, increff: MockIncreff, increff_worker: WorkerProcess
) -> None:
    def event(event_id: str, kind: str, sample: str) -> tuple[bytes, bytes]:
        payload = json.loads((INCREFF_SAMPLES / f"{sample}.json").read_text())["request"]
        body = {
            "eventId": event_id,
            "type": kind,
            "occurredAt": datetime.now(UTC).isoformat(),
            "payload": payload,
        }
        return payload["returnOrderCode"].encode(), orjson.dumps(body)

    worker = increff_worker
    env = worker.env
    await produce(
        kafka_bootstrap,
        env["INVSYNC_TOPIC_ORDERS"],
        [
            event("r1", "RETURN_CREATED", "create-return-order"),
            event("r1", "RETURN_CREATED", "create-return-order"),  # replayed
            event("r2", "RETURN_UPDATED", "update-return-order"),
        ],
    )
    assert await _eventually(lambda: increff.count("update_return", "retO1") == 1)
    assert increff.count("create_return", "100078") == 1  # idempotent by returnOrderCode
    created = [r for r in increff.requests if r.path == "/return/return-orders"]
    assert created[0].body["forwardOrderCode"] == "108"
    assert created[0].headers["authPassword"] == "mp-secret-pass"
