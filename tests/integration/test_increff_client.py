"""IncreffClient against the real MockIncreff HTTP server on 127.0.0.1 (no Kafka needed)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.errors import ConnectorError, IncreffError, TransportError
from connectors.increff import IncreffClient
from connectors.retry import NO_RETRY, Backoff
from invsync.mocks import Applied, MockIncreff
from models import increff as m
from tests.fixtures import INCREFF_SAMPLES

pytestmark = pytest.mark.integration

USER, PASSWORD, DOMAIN = "user-7f3a9c2b", "pw-S3cr3t-91b2e0", "domain-44dd1e7a"
SECRETS = (USER, PASSWORD, DOMAIN)
ATTEMPTS = 4
FAST = Backoff(base=0.01, factor=2, max_delay=0.05, max_attempts=ATTEMPTS)

SAMPLES = INCREFF_SAMPLES


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Metrics:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []

    def __call__(self, endpoint: str, status: int | None, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append((endpoint, status))


@pytest.fixture
async def increff() -> AsyncIterator[MockIncreff]:
    async with MockIncreff(username=USER, password=PASSWORD, domain=DOMAIN) as mock:
        yield mock


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(
    increff: MockIncreff, sleeps: Sleeps, metrics: Metrics
) -> AsyncIterator[IncreffClient]:
    async with IncreffClient(
        increff.base_url,
        USER,
        SecretStr(PASSWORD),
        DOMAIN,
        timeout=5.0,
        backoff=FAST,
        on_request=metrics,
        sleep=sleeps,
    ) as c:
        yield c


def _order(code: str = "ORD-1", **changes: Any) -> m.OutwardOrder:
    body = {
        "orderCode": code,
        "locationCode": "WH-1",
        "orderTime": "2024-02-13T09:45:00Z",
        "orderItems": [
            {"channelSkuCode": "SKU-1", "orderItemCode": "I-1", "quantity": 2},
            {"channelSkuCode": "SKU-2", "orderItemCode": "I-2", "quantity": 1},
        ],
        **changes,
    }
    return m.OutwardOrder.model_validate(body)


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())["request"]
    return data


def _cancel(quantity: int = 1) -> m.CustomerCancellation:
    return m.CustomerCancellation(
        locationCode="WH-1",
        orderItems=[
            m.CancelledItem(channelSkuCode="SKU-1", orderItemCode="I-1", cancelledQuantity=quantity)
        ],
    )


async def test_create_order_sends_path_body_and_auth_headers(
    client: IncreffClient, increff: MockIncreff, metrics: Metrics
) -> None:
    order = m.OutwardOrder.model_validate(_sample("create-outward-order.json"))
    await client.create_order(order)
    [req] = increff.requests
    assert (req.method, req.path, req.status) == ("POST", "/orders/outward", 200)
    assert req.body == order.to_wire()
    assert req.body["orderItems"][0]["giftOptions"]["giftMessage"] == "Happy Birthday!"
    header_names = json.loads((SAMPLES / "authentication.json").read_text())["inboundHeaders"]
    sent = {k.lower(): v for k, v in req.headers.items()}
    assert {k.lower() for k in header_names} <= set(sent)
    assert sent["authusername"] == USER
    assert sent["authpassword"] == PASSWORD
    assert sent["authdomainname"] == DOMAIN
    assert sent["content-type"] == "application/json"
    assert increff.applied == [Applied("create_order", order.orderCode)]
    assert metrics.calls == [("create_order", 200)]


async def test_repeated_create_is_idempotent(client: IncreffClient, increff: MockIncreff) -> None:
    await client.create_order(_order())
    await client.create_order(_order())
    assert len(increff.requests) == 2
    assert increff.count("create_order", "ORD-1") == 1


async def test_every_endpoint_path_and_body(increff: MockIncreff) -> None:
    increff.cancel_return_items_path = "/return/items/cancel"
    increff.set_inventory("SKU-1", "WH-1", 5)
    await increff.stop()
    await increff.start(port=increff.port or 0)  # routes are built at start
    async with IncreffClient(
        increff.base_url,
        USER,
        SecretStr(PASSWORD),
        DOMAIN,
        backoff=NO_RETRY,
        cancel_return_items_path="/return/items/cancel",
    ) as client:
        await client.create_orders_bulk([_order("B-1"), _order("B-2")])
        await client.cancel_order("B-1", _cancel(1))
        props = m.UpdateOrderProperties.model_validate(_sample("update-order-properties.json"))
        await client.update_order_properties("B-2", props)
        found = await client.search_inventory(["SKU-1", "SKU-404"])
        create_ret = m.CreateReturnOrder.model_validate(_sample("create-return-order.json"))
        await client.create_return(create_ret)
        update_ret = m.UpdateReturnOrder.model_validate(_sample("update-return-order.json"))
        await client.update_return(update_ret)
        add = m.AddReturnItems.model_validate(_sample("add-items-to-return-order.json"))
        await client.add_return_items(add)
        cancel_items = m.CancelReturnItems(
            returnOrderCode="100078",
            locationCode="Wid234",
            orderItems=[m.ReturnItemRef(itemCode="I10098", channelSkuCode="10007345")],
        )
        await client.cancel_return_items(cancel_items)

    seen = [(r.method, r.path, r.status) for r in increff.requests]
    assert seen == [
        ("POST", "/orders/outward/list", 200),
        ("PUT", "/orders/B-1/cancel", 200),
        ("PUT", "/orders/B-2", 200),
        ("POST", "/inventories/search-sku", 200),
        ("POST", "/return/return-orders", 200),
        ("POST", "/return/update-return-order", 200),
        ("PUT", "/return/update-return-order/item", 200),
        ("PUT", "/return/items/cancel", 200),
    ]
    bodies = [r.body for r in increff.requests]
    assert [o["orderCode"] for o in bodies[0]["outwardOrderClientFormList"]] == ["B-1", "B-2"]
    assert bodies[1] == _cancel(1).to_wire() and "orderCode" not in bodies[1]
    assert bodies[2] == _sample("update-order-properties.json")
    assert bodies[3] == {"channelSkuCodes": ["SKU-1", "SKU-404"]}
    assert bodies[4] == create_ret.to_wire()
    assert bodies[5] == _sample("update-return-order.json")
    assert bodies[6] == _sample("add-items-to-return-order.json")
    assert bodies[7] == cancel_items.to_wire()
    assert found.failureList == ["SKU-404"]
    assert found.successList[0].inventories[0].quantity == 5
    assert {a.operation for a in increff.applied} == {
        "create_order",
        "cancel_order",
        "update_order_properties",
        "create_return",
        "update_return",
        "add_return_items",
        "cancel_return_items",
    }


async def test_search_accepts_the_misspelled_success_list() -> None:
    async with MockIncreff(
        username=USER, password=PASSWORD, domain=DOMAIN, success_key="sucessList"
    ) as mock:
        mock.set_inventory("S", "L", 3)
        async with IncreffClient(mock.base_url, USER, SecretStr(PASSWORD), DOMAIN) as client:
            found = await client.search_inventory(["S"])
        assert mock.requests[0].status == 200
    assert found.successList[0].totalQuantity == 3


async def test_order_code_is_one_path_segment(client: IncreffClient, increff: MockIncreff) -> None:
    await client.cancel_order("ORD 7/A?x", _cancel())
    assert increff.requests[0].status == 200
    assert "ORD 7/A?x" in increff.cancellations


async def test_500_then_success_is_retried_and_applied_once(
    client: IncreffClient, increff: MockIncreff, sleeps: Sleeps, metrics: Metrics
) -> None:
    increff.fail_next(2, status=500)
    await client.create_order(_order())
    assert [r.status for r in increff.requests] == [500, 500, 200]
    assert increff.count("create_order", "ORD-1") == 1
    assert len(sleeps.waits) == 2 and all(0 <= w <= 0.05 for w in sleeps.waits)
    assert metrics.calls == [("create_order", 500), ("create_order", 500), ("create_order", 200)]


async def test_failure_after_apply_is_retried_and_applied_once(
    client: IncreffClient, increff: MockIncreff
) -> None:
    increff.fail_next(1, status=504, after_apply=True)
    await client.cancel_order("ORD-1", _cancel(2))
    assert [r.status for r in increff.requests] == [504, 200]
    assert increff.count("cancel_order", "ORD-1") == 1
    assert increff.cancellations["ORD-1"] == {"I-1": 2}


async def test_429_retry_after_is_honoured(
    client: IncreffClient, increff: MockIncreff, sleeps: Sleeps
) -> None:
    increff.fail_next(1, status=429, retry_after=3)
    await client.create_order(_order())
    assert sleeps.waits == [3.0]
    assert increff.count("create_order", "ORD-1") == 1


async def test_retry_after_really_waits(increff: MockIncreff) -> None:
    increff.fail_next(1, status=503, retry_after="0.3")
    async with IncreffClient(increff.base_url, USER, SecretStr(PASSWORD), DOMAIN) as client:
        started = time.monotonic()
        await client.create_order(_order())
    assert time.monotonic() - started >= 0.3
    assert [r.status for r in increff.requests] == [503, 200]


async def test_400_is_final_and_carries_increffs_error(
    client: IncreffClient, increff: MockIncreff, sleeps: Sleeps
) -> None:
    increff.reject("ORD-9", code="BAD_DATA", message="Input validation failed", description="[x]")
    with pytest.raises(IncreffError) as info:
        await client.create_order(_order("ORD-9"))
    err = info.value
    assert (err.status, err.code, err.message, err.description) == (
        400,
        "BAD_DATA",
        "Input validation failed",
        "[x]",
    )
    assert err.retriable is False and err.retry_after is None
    assert err.endpoint == "create_order"
    assert len(increff.requests) == 1 and sleeps.waits == []
    assert increff.orders == {}


async def test_error_body_with_an_odd_field(client: IncreffClient, increff: MockIncreff) -> None:
    increff.fail_next(1, status=400, body={"code": "BAD_DATA", "message": "m", "description": [7]})
    with pytest.raises(IncreffError) as info:
        await client.create_order(_order())
    # an odd field does not hide the others
    assert (info.value.status, info.value.code, info.value.message) == (400, "BAD_DATA", "m")
    assert info.value.description is None and info.value.retriable is False


async def test_non_json_error_body_is_tolerated(
    client: IncreffClient, increff: MockIncreff
) -> None:
    increff.fail_next(4, status=502, body="<html><h1>502 Bad Gateway</h1></html>")
    with pytest.raises(IncreffError) as info:
        await client.create_order(_order())
    assert info.value.status == 502 and info.value.retriable is True
    assert "502 Bad Gateway" in info.value.message
    assert info.value.code is None
    assert len(increff.requests) == ATTEMPTS


async def test_down_503_retried_then_surfaced(
    client: IncreffClient, increff: MockIncreff, sleeps: Sleeps
) -> None:
    increff.set_down(True)
    with pytest.raises(IncreffError) as info:
        await client.create_order(_order())
    assert info.value.status == 503 and info.value.retriable is True
    assert len(increff.requests) == 4 and len(sleeps.waits) == 3
    increff.set_down(False)
    await client.create_order(_order())
    assert increff.count("create_order", "ORD-1") == 1


async def test_network_error_is_retried_then_transport_error(
    client: IncreffClient, increff: MockIncreff, sleeps: Sleeps, metrics: Metrics
) -> None:
    await client.create_order(_order("ORD-0"))  # a pooled keep-alive connection exists
    await increff.stop()
    with pytest.raises(TransportError) as info:
        await client.create_order(_order())
    assert info.value.retriable is True and info.value.status is None
    assert isinstance(info.value.__cause__, httpx.TransportError)
    assert len(sleeps.waits) == 3
    assert metrics.calls[1:] == [("create_order", None)] * 4


async def test_timeout_maps_to_transport_error() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    async with IncreffClient(
        "http://increff.invalid",
        USER,
        SecretStr(PASSWORD),
        DOMAIN,
        transport=httpx.MockTransport(slow),
        backoff=NO_RETRY,
    ) as client:
        with pytest.raises(TransportError, match="timed out") as info:
            await client.create_order(_order())
    assert info.value.retriable is True


async def test_wrong_credentials_get_401_not_retried(increff: MockIncreff) -> None:
    async with IncreffClient(
        increff.base_url, USER, SecretStr("wrong-pass-5e5e"), DOMAIN, backoff=FAST
    ) as client:
        with pytest.raises(IncreffError) as info:
            await client.create_order(_order())
    assert info.value.status == 401 and info.value.retriable is False
    assert "wrong-pass-5e5e" not in str(info.value) + repr(info.value)
    assert len(increff.requests) == 1


async def test_domain_header_is_optional() -> None:
    async with MockIncreff(username=USER, password=PASSWORD, domain=None) as mock:
        async with IncreffClient(mock.base_url, USER, SecretStr(PASSWORD)) as client:
            await client.create_order(_order())
        assert "authDomainName" not in mock.requests[0].headers


async def test_credentials_never_in_errors_or_logs(
    client: IncreffClient, increff: MockIncreff, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"bad user {USER} with password {PASSWORD} in domain {DOMAIN}"
    errors: list[ConnectorError] = []

    increff.fail_next(4, status=500, body={"code": f"E-{PASSWORD}", "message": echo})
    with pytest.raises(IncreffError) as first:
        await client.create_order(_order())
    errors.append(first.value)

    increff.reject("ORD-2", message=echo, description=echo)
    with pytest.raises(IncreffError) as second:
        await client.create_order(_order("ORD-2"))
    errors.append(second.value)

    increff.fail_next(1, status=400, body=echo)  # plain text echo
    with pytest.raises(IncreffError) as third:
        await client.create_order(_order("ORD-3"))
    errors.append(third.value)

    await increff.stop()
    with pytest.raises(TransportError) as fourth:
        await client.create_order(_order("ORD-4"))
    errors.append(fourth.value)

    for err in errors:
        logging.getLogger("test").exception("surfaced", exc_info=err)
    text = caplog.text + "".join(str(e) + repr(e) for e in errors) + repr(client)
    assert "***" in str(second.value)
    assert "retrying" in caplog.text
    for secret in SECRETS:
        assert secret not in text


async def test_close_is_idempotent_and_final(increff: MockIncreff) -> None:
    client = IncreffClient(increff.base_url, USER, SecretStr(PASSWORD), DOMAIN)
    await client.aclose()
    await client.aclose()
    assert client.closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.create_order(_order())
    async with client:
        pass


async def test_unreadable_success_body_is_an_error(
    client: IncreffClient, increff: MockIncreff
) -> None:
    increff.fail_next(1, status=200, body="not json")
    with pytest.raises(IncreffError, match="unreadable") as info:
        await client.search_inventory(["S"])
    assert info.value.retriable is False


async def test_mock_answers_an_invalid_body_with_bad_data(increff: MockIncreff) -> None:
    async with httpx.AsyncClient(base_url=increff.base_url) as raw:
        headers = {"authUsername": USER, "authPassword": PASSWORD, "authDomainName": DOMAIN}
        bad = {"orderCode": "O", "locationCode": "L", "orderItems": [{"channelSkuCode": "S"}]}
        response = await raw.post("/orders/outward", json=bad, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "BAD_DATA" and "orderItemCode" in body["description"]
    assert increff.orders == {}


async def test_order_code_mismatch_is_refused(client: IncreffClient) -> None:
    body = _cancel().model_copy(update={"orderCode": "OTHER"})
    with pytest.raises(ValueError, match="differ"):
        await client.cancel_order("ORD-1", body)
