"""The dashboards' PromQL against a real Prometheus scraping a real worker under load.

Every `expr` of `dashboards/grafana/*.json` must parse and return data once the worker
has handled stock events, orders (with an Increff retry and a rejection), callbacks and
marketplace pushes. A panel whose query returns nothing is a panel that shows nothing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from invsync.mocks.increff import MockIncreff
from invsync.mocks.marketplace import MockMarketplace
from tests.integration.inventory_support import event_time
from tests.integration.prometheus import (
    PrometheusServer,
    check_queries,
    dashboard_queries,
    prometheus_binary,
)
from tests.integration.support import WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration

LOCATION = "WH1"
SKUS = [f"SKU-{i}" for i in range(12)]
CALLBACK_HEADERS = {"authUsername": "increff", "authPassword": "callback-secret"}
DATA_DEADLINE_S = 45.0


@pytest.fixture(scope="session")
def prometheus() -> str:
    return prometheus_binary()


def now() -> str:
    return event_time().isoformat()  # strictly increasing: a delta is never in its snapshot


def stock(event_id: str, kind: str, sku: str, quantity: int, **extra: Any) -> tuple[bytes, bytes]:
    body = {
        "eventId": event_id,
        "type": kind,
        "locationCode": LOCATION,
        "channelSkuCode": sku,
        "quantity": quantity,
        "occurredAt": now(),
        **extra,
    }
    return f"{LOCATION}:{sku}".encode(), orjson.dumps(body)


def stock_load(round_: int) -> list[tuple[bytes | None, bytes]]:
    records: list[tuple[bytes | None, bytes]] = []
    for sku in SKUS:
        records.append(stock(f"r{round_}-{sku}-snap", "SNAPSHOT", sku, 20))
        for n in range(3):
            records.append(stock(f"r{round_}-{sku}-d{n}", "DELTA", sku, -2))
        records.append(stock(f"r{round_}-{sku}-d0", "DELTA", sku, -2))  # a repeat: dropped
    records.append(stock(f"r{round_}-out", "SNAPSHOT", SKUS[0], 0))  # a stock-out
    records.append((f"{LOCATION}:{SKUS[1]}".encode(), b"{not json"))  # dead letter
    records.append(stock(f"r{round_}-release", "DELTA", SKUS[1], -1, orderCode="O-1"))
    return records


def order(
    event_id: str, kind: str, order_code: str, payload: dict[str, Any]
) -> tuple[bytes, bytes]:
    body = {"eventId": event_id, "type": kind, "occurredAt": now(), "payload": payload}
    return order_code.encode(), orjson.dumps(body)


def order_load() -> list[tuple[bytes | None, bytes]]:
    records: list[tuple[bytes | None, bytes]] = []
    for n in range(1, 5):
        code, sku = f"O-{n}", SKUS[n]
        line = {"channelSkuCode": sku, "orderItemCode": f"{code}-1", "quantity": 1}
        payload = {"orderCode": code, "locationCode": LOCATION, "orderItems": [line]}
        records.append(order(f"oc-{code}", "ORDER_CREATED", code, payload))
    records.append(records[0])  # a replayed order event: no second reservation
    cancel = {
        "orderCode": "O-3",
        "locationCode": LOCATION,
        "orderItems": [
            {"channelSkuCode": SKUS[3], "orderItemCode": "O-3-1", "cancelledQuantity": 1}
        ],
    }
    records.append(order("cc-O-3", "CUSTOMER_CANCELLED", "O-3", cancel))
    return records


_LAST_REQUEST: list[str] = []


async def _note_request(request: httpx.Request) -> None:
    """Remember the last request, so a time-out names what hung."""
    _LAST_REQUEST.append(f"{request.method} {request.url}")


async def call_back(client: httpx.AsyncClient, base: str) -> None:
    """Increff's callbacks: accepted, unauthorised and invalid ones."""
    ack = {"orders": [{"locationCode": LOCATION, "orderCode": "O-1"}]}
    atp = {"locationCode": LOCATION, "inventories": [{"channelSkuCode": SKUS[7], "quantity": 4}]}
    await client.put(f"{base}/increff/orders/acknowledge", json=ack, headers=CALLBACK_HEADERS)
    await client.put(f"{base}/increff/inventory", json=atp, headers=CALLBACK_HEADERS)
    await client.put(f"{base}/increff/inventory", json=atp)  # no auth headers: 401
    await client.put(f"{base}/increff/orders/acknowledge", json={}, headers=CALLBACK_HEADERS)


async def test_every_dashboard_query_returns_data_from_a_loaded_worker(
    kafka_bootstrap: str, prometheus: str, tmp_path: Path
) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20, "the dashboards lost their queries"

    async with MockIncreff() as increff, MockMarketplace() as marketplace:
        marketplace.fail_skus([SKUS[5]])  # its pushes come back in failureList
        env = isolated_env(
            kafka_bootstrap,
            tmp_path / "data",
            INVSYNC_DEBOUNCE_MS="50",
            INVSYNC_MAX_DELAY_MS="200",
            INVSYNC_INCREFF_BASE_URL=increff.base_url,
            INVSYNC_INCREFF_USERNAME="invsync-user",
            INVSYNC_INCREFF_PASSWORD="invsync-pass",
            INVSYNC_INCREFF_DOMAIN="invsync-domain",
            INVSYNC_MARKETPLACE_INVENTORY_URL=f"{marketplace.base_url}{marketplace.path}",
            INVSYNC_CALLBACK_HEADERS=orjson.dumps(CALLBACK_HEADERS).decode(),
        )
        worker = WorkerProcess(env, tmp_path / "worker.log")
        worker.start(ready=True)
        host_port = worker.web.removeprefix("http://")
        prom = PrometheusServer(prometheus, tmp_path / "prometheus", [host_port])
        try:
            await prom.start()
            # One 5xx (retried) and one 4xx (rejected: INCREFF_REJECTED) from Increff.
            increff.fail_next(1, status=503, retry_after=0)
            increff.fail_next(1, status=400, body={"code": "BAD_DATA", "message": "test"})
            async with httpx.AsyncClient(
                timeout=15.0, event_hooks={"request": [_note_request]}
            ) as client:
                await produce(kafka_bootstrap, env["INVSYNC_TOPIC_ORDERS"], order_load())
                await produce(kafka_bootstrap, env["INVSYNC_TOPIC_STOCK_EVENTS"], stock_load(0))
                await call_back(client, worker.web)

                errors: list[str] = []
                empty: list[str] = [str(q) for q in queries]
                deadline = time.monotonic() + DATA_DEADLINE_S
                round_ = 1
                while time.monotonic() < deadline:
                    # Keep the load going so rates over the window stay above zero.
                    records = stock_load(round_)
                    await produce(kafka_bootstrap, env["INVSYNC_TOPIC_STOCK_EVENTS"], records)
                    round_ += 1
                    if await prom.scrapes(client) >= 4:
                        errors, empty = await check_queries(prom, client, queries)
                        if not errors and not empty:
                            break
                    await asyncio.sleep(2.0)
                targets = await prom.targets_up(client)
        except httpx.TimeoutException as exc:
            raise AssertionError(
                f"timed out: {_LAST_REQUEST[-1] if _LAST_REQUEST else '?'}\n"
                f"worker log:\n{worker.log_tail(30)}"
            ) from exc
        finally:
            prom.stop()
            worker.stop()

    scrape = "; ".join(f"{t['scrapeUrl']} {t['health']} {t.get('lastError', '')}" for t in targets)
    assert not errors, "PromQL that Prometheus rejects:\n" + "\n".join(errors)
    assert not empty, (
        f"{len(empty)} of {len(queries)} dashboard queries returned no data "
        f"(scrape: {scrape}):\n" + "\n".join(f"  {e}" for e in empty) + "\n"
        f"worker log:\n{worker.log_tail(20)}"
    )
