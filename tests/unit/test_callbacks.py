"""Increff callbacks: every route on Increff's published samples, auth, size, bad bodies,
repeats, and the order updates, snapshots and commands they produce."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from models.atp import plan_inventory
from models.callbacks import digest, plan_acknowledgements
from models.events import InventoryCommand, StockEvent, command_id
from streams import callbacks as cb
from streams.callbacks import CallbackHandler, CallbackRequest, CallbackResponse
from streams.metrics import Metrics
from tests.fixtures import INCREFF_SAMPLES

SAMPLES_DIR = INCREFF_SAMPLES
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HEADERS = {"authUsername": "increff", "authPassword": "s3cret-Value"}
SUCCESS = {"hasError": False, "errorMessage": None}


def sample(name: str, section: str = "request") -> Any:
    return copy.deepcopy(json.loads((SAMPLES_DIR / name).read_text())[section])


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


class FakePorts:
    """In-memory ports recording every side effect."""

    def __init__(self, shipments: list[dict[str, Any]] | None = None) -> None:
        self.updates: list[dict[str, Any]] = []
        self.snapshots: list[StockEvent] = []
        self.commands: list[InventoryCommand] = []
        self.shipments = shipments or []
        self.lookups: list[dict[str, str | None]] = []
        self.store: dict[str, CallbackResponse] = {}
        self.fail_publish = 0
        self.publish_delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0

    async def publish_update(
        self, order_code: str, update_type: str, payload: dict[str, Any], *, event_id: str
    ) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.publish_delay:
                await asyncio.sleep(self.publish_delay)
        finally:
            self.in_flight -= 1
        if self.fail_publish:
            self.fail_publish -= 1
            raise RuntimeError("broker down")
        self.updates.append(
            {"orderCode": order_code, "type": update_type, "payload": payload, "eventId": event_id}
        )

    async def publish_snapshots(self, events: list[StockEvent]) -> None:
        self.snapshots.extend(events)

    async def send_commands(self, commands: list[InventoryCommand]) -> None:
        self.commands.extend(commands)

    async def find_shipment(
        self, *, shipment_id: str | None, order_code: str | None, shipment_code: str | None
    ) -> dict[str, Any] | None:
        self.lookups.append(
            {"shipment_id": shipment_id, "order_code": order_code, "shipment_code": shipment_code}
        )
        for s in self.shipments:
            if shipment_id is not None and str(s["shipmentId"]) == shipment_id:
                return s
            if shipment_id is None and s.get("shipmentCode") == shipment_code:
                return s
        return None

    async def recall(self, idem_key: str) -> CallbackResponse | None:
        return self.store.get(idem_key)

    async def remember(self, idem_key: str, response: CallbackResponse) -> None:
        self.store[idem_key] = response

    def types(self) -> list[str]:
        return [u["type"] for u in self.updates]


@pytest.fixture
def ports() -> FakePorts:
    return FakePorts()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def handler(ports: FakePorts, registry: CollectorRegistry) -> CallbackHandler:
    return CallbackHandler(
        ports,
        required_headers=[{k: SecretStr(v) for k, v in HEADERS.items()}],
        max_bytes=64 * 1024,
        metrics=Metrics(registry),
        clock=lambda: NOW,
    )


def request(
    route: str,
    body: bytes = b"",
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[str, CallbackRequest]:
    method, _, path = route.partition(" ")
    return route, CallbackRequest(
        method=method,
        path=path,
        headers=HEADERS if headers is None else headers,
        query=query or {},
        body=body,
    )


async def call(handler: CallbackHandler, route: str, body: Any = None, **kw: Any) -> Any:
    raw = body if isinstance(body, bytes) else (b"" if body is None else dumps(body))
    return await handler.handle(*request(route, raw, **kw))


def body_of(response: CallbackResponse) -> Any:
    return orjson.loads(response.body)


# --- every route on its sample ------------------------------------------------------


async def test_acknowledge_sample(handler: CallbackHandler, ports: FakePorts) -> None:
    response = await call(handler, cb.ACKNOWLEDGE, sample("order-acknowledgement.json"))
    assert response.status == 200
    assert body_of(response) == sample("order-acknowledgement.json", "response")
    assert ports.types() == ["ORDER_ACKNOWLEDGED", "ORDER_ACKNOWLEDGED"]
    assert [u["orderCode"] for u in ports.updates] == ["Order-1", "Order-2"]
    assert ports.updates[0]["payload"] == {
        "locationCode": "Wid234",
        "orderCode": "Order-1",
        "consolidationType": "STORE",
    }


async def test_acknowledge_publishes_only_orders_not_seen(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    await call(handler, cb.ACKNOWLEDGE, sample("order-acknowledgement.json"))
    again = {
        "orders": [
            {"locationCode": "Wid234", "orderCode": "Order-2"},
            {"locationCode": "Wid234", "orderCode": "Order-3"},
            {"locationCode": "Wid234", "orderCode": "Order-3"},
        ]
    }
    response = await call(handler, cb.ACKNOWLEDGE, again)
    assert response.status == 200
    assert body_of(response) == {"successOrders": again["orders"]}
    assert [u["orderCode"] for u in ports.updates] == ["Order-1", "Order-2", "Order-3"]


async def test_pack_sample_answers_success_and_publishes_packed(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    response = await call(handler, cb.PACK, sample("pack-order.json"))
    assert response.status == 200
    assert body_of(response) == SUCCESS
    [update] = ports.updates
    assert update["type"] == "ORDER_PACKED"
    assert update["orderCode"] == "H19304030001"
    assert update["payload"]["shipmentId"] == 120001
    assert update["payload"]["packboxDetailsList"][0]["boxId"] == 1000001020
    assert "pack:120001" in ports.store


async def test_pack_repeat_same_answer_nothing_published_twice(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    first = await call(handler, cb.PACK, sample("pack-order.json"))
    body = sample("pack-order.json")
    body["shipmentId"] = "120001"  # Increff's ids come as numbers or strings
    body["weight"] = 41
    second = await call(handler, cb.PACK, body)
    assert second == first
    assert len(ports.updates) == 1


async def test_event_ids_are_deterministic(ports: FakePorts) -> None:
    ids = []
    for _ in range(2):
        fresh = FakePorts()
        h = CallbackHandler(fresh, required_headers=[], max_bytes=10_000, clock=lambda: NOW)
        await call(h, cb.PACK, sample("pack-order.json"), headers={})
        ids.append(fresh.updates[0]["eventId"])
    assert ids[0] == ids[1]
    assert ids[0].startswith("ORDER_PACKED:")
    assert len(ids[0]) <= 128


async def test_manifest_sample(handler: CallbackHandler, ports: FakePorts) -> None:
    response = await call(handler, cb.MANIFESTS, sample("create-manifest.json"))
    assert response.status == 200
    assert body_of(response) == {
        "manifestCode": "87456",
        "manifestItems": [{"orderCode": "H19304030001", "shipmentCode": "eid123"}],
    }
    assert ports.updates == []  # DESIGN has no order-update type for manifests
    assert "manifest:87456" in ports.store
    assert await call(handler, cb.MANIFESTS, sample("create-manifest.json")) == response


async def test_manifest_without_id_gets_a_deterministic_code(handler: CallbackHandler) -> None:
    body = sample("create-manifest.json")
    del body["manifestId"]
    first = body_of(await call(handler, cb.MANIFESTS, body))
    second = body_of(await call(handler, cb.MANIFESTS, body))
    assert first == second
    assert first["manifestCode"].startswith("M")


async def test_handover_sample_one_update_per_order(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    response = await call(handler, cb.HANDOVER, sample("handover-notification.json"))
    assert response.status == 200
    assert body_of(response) == SUCCESS
    assert ports.types() == ["ORDER_HANDED_OVER", "ORDER_HANDED_OVER"]
    assert [u["orderCode"] for u in ports.updates] == ["order123", "order124"]
    first = ports.updates[0]["payload"]
    assert first["locationCode"] == "wd02"
    assert first["shipmentCode"] == "ship123"
    assert first["gatePassCode"] == "gate124H23"
    assert len({u["eventId"] for u in ports.updates}) == 2


async def test_handover_repeat_in_another_order_is_the_same(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = sample("handover-notification.json")
    first = await call(handler, cb.HANDOVER, body)
    body["handoverItems"].reverse()
    second = await call(handler, cb.HANDOVER, body)
    assert second == first
    assert len(ports.updates) == 2
    body["handoverItems"].pop()  # another set of shipments is another handover
    await call(handler, cb.HANDOVER, body)
    assert len(ports.updates) == 3


async def test_seller_cancel_sample_sends_absolute_cancel_commands(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    response = await call(handler, cb.SELLER_CANCEL, sample("seller-cancellation.json"))
    assert response.status == 200
    assert body_of(response) == SUCCESS
    [update] = ports.updates
    assert update["type"] == "SELLER_CANCELLED"
    assert update["orderCode"] == "H19304030001"
    assert update["payload"]["orderItems"][0]["cancelledQuantity"] == 5
    [key] = [k for k in ports.store if k.startswith("seller-cancel:")]
    assert key.startswith("seller-cancel:H19304030001:")
    assert [(c.type, c.channelSkuCode, c.cancelledQuantity) for c in ports.commands] == [
        ("CANCEL", "100000789702", 5),
        ("CANCEL", "100000789703", 4),
    ]
    first = ports.commands[0]
    assert first.commandId == command_id(key, 0, "CANCEL")
    assert first.orderCode == "H19304030001"
    assert first.locationCode == "l123"
    assert first.occurredAt == NOW
    assert first.key == "l123:100000789702"


async def test_seller_cancel_repeat_vs_new_total(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = sample("seller-cancellation.json")
    first = await call(handler, cb.SELLER_CANCEL, body)
    assert await call(handler, cb.SELLER_CANCEL, body) == first
    assert len(ports.updates) == 1
    assert len(ports.commands) == 2
    body["orderItems"][0]["cancelledQuantity"] = 6
    assert (await call(handler, cb.SELLER_CANCEL, body)).status == 200
    assert ports.types() == ["SELLER_CANCELLED", "SELLER_CANCELLED"]
    assert len(ports.commands) == 4
    assert ports.commands[2].cancelledQuantity == 6
    assert ports.commands[2].commandId != ports.commands[0].commandId


async def test_seller_cancel_lines_of_one_sku_add_up(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = sample("seller-cancellation.json")
    body["orderItems"][1]["channelSkuCode"] = "100000789702"
    await call(handler, cb.SELLER_CANCEL, body)
    assert [(c.channelSkuCode, c.cancelledQuantity) for c in ports.commands] == [
        ("100000789702", 9)
    ]


async def test_seller_cancel_long_order_code_keeps_command_ids_bounded(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = sample("seller-cancellation.json")
    body["orderCode"] = "O" * 255
    assert (await call(handler, cb.SELLER_CANCEL, body)).status == 200
    assert all(len(c.commandId) <= 200 for c in ports.commands)


async def test_return_ack_sample(handler: CallbackHandler, ports: FakePorts) -> None:
    response = await call(
        handler, cb.RETURNS_ACKNOWLEDGE, sample("return-order-acknowledgement.json")
    )
    assert response == CallbackResponse(200, b"")
    [update] = ports.updates
    assert update["type"] == "RETURN_ACKNOWLEDGED"
    assert update["orderCode"] == "forwardOrder1"
    assert update["payload"]["returnOrderCode"] == "H893RUOT123"
    assert update["payload"]["orderItems"][0]["qcStatus"] == "FAIL"
    again = await call(handler, cb.RETURNS_ACKNOWLEDGE, sample("return-order-acknowledgement.json"))
    assert again == response
    assert len(ports.updates) == 1


async def test_return_ack_without_forward_order_is_keyed_by_return(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = sample("return-order-acknowledgement.json")
    del body["forwardOrderCode"]
    await call(handler, cb.RETURNS_ACKNOWLEDGE, body)
    assert ports.updates[0]["orderCode"] == "H893RUOT123"


# --- inventory --------------------------------------------------------------------


async def test_inventory_sample_becomes_snapshots(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    response = await call(handler, cb.INVENTORY, sample("location-wise-atp-inventory.json"))
    assert response.status == 200
    assert body_of(response) == sample("location-wise-atp-inventory.json", "response")
    [event] = ports.snapshots
    assert (event.type, event.locationCode, event.channelSkuCode, event.quantity) == (
        "SNAPSHOT",
        "wd003",
        "302",
        40,
    )
    assert event.occurredAt == NOW
    assert event.reason == "INCREFF_ATP"
    assert event.basis == "AVAILABLE"  # Increff's ATP: net of the orders it accepted
    assert event.key == "wd003:302"
    assert len(event.eventId) <= 128
    assert ports.updates == []


async def test_inventory_retry_is_a_repeat_a_later_identical_push_applies(
    ports: FakePorts,
) -> None:
    now = [NOW]
    handler = CallbackHandler(
        ports, required_headers=[], max_bytes=10_000, atp_window_s=300, clock=lambda: now[0]
    )
    body = sample("location-wise-atp-inventory.json")
    body["inventories"].append({"channelSkuCode": "303", "quantity": 0})
    first = await call(handler, cb.INVENTORY, body, headers={})
    now[0] = NOW + timedelta(seconds=299)  # Increff retrying: same bytes, same answer
    retry = await call(handler, cb.INVENTORY, body, headers={})
    assert retry == first
    assert len(ports.snapshots) == 2  # the retry published nothing
    ids = [e.eventId for e in ports.snapshots]
    assert len(set(ids)) == 2
    assert ports.snapshots[1].quantity == 0  # zero is sent as zero
    now[0] = NOW + timedelta(seconds=300)  # the next periodic push, same figures
    await call(handler, cb.INVENTORY, body, headers={})
    assert len(ports.snapshots) == 4
    assert not {e.eventId for e in ports.snapshots[2:]} & set(ids)
    body["inventories"][0]["quantity"] = 39
    await call(handler, cb.INVENTORY, body, headers={})
    assert ports.snapshots[4].eventId not in ids


def test_inventory_ids_of_a_push_sent_twice_in_one_window_repeat() -> None:
    """A retry the handler could not recall (a crash before remembering, another
    worker) still carries the same ids within the window: the eventId ring drops it."""
    body = dumps(sample("location-wise-atp-inventory.json"))
    ids = [
        [e.eventId for e in plan_inventory(body, NOW + timedelta(seconds=s), 300)[0]]
        for s in (0, 10, 400)
    ]
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]


async def test_inventory_bad_items_go_to_failure_list(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = {
        "locationCode": "wd003",
        "inventories": [
            {"channelSkuCode": "ok", "quantity": 3},
            {"channelSkuCode": "neg", "quantity": -1},
            {"channelSkuCode": "str", "quantity": "7"},
            {"channelSkuCode": "huge", "quantity": 2**60},
            {"channelSkuCode": "over", "quantity": 1_000_000_001},  # past a SNAPSHOT's bound
            {"quantity": 1},
            "not-an-object",
        ],
    }
    response = await call(handler, cb.INVENTORY, body)
    assert response.status == 200
    assert body_of(response) == {
        "successList": ["ok"],
        "failureList": ["neg", "str", "huge", "over", "", ""],
    }
    assert [e.channelSkuCode for e in ports.snapshots] == ["ok"]


async def test_inventory_more_than_200_items_is_refused(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    items = [{"channelSkuCode": f"s{i}", "quantity": 1} for i in range(201)]
    response = await call(handler, cb.INVENTORY, {"locationCode": "wd003", "inventories": items})
    assert response.status == 400
    assert body_of(response)["hasError"] is True
    assert "200" in body_of(response)["errorMessage"]
    assert ports.snapshots == []
    ok = await call(handler, cb.INVENTORY, {"locationCode": "wd003", "inventories": items[:200]})
    assert ok.status == 200
    assert len(ports.snapshots) == 200


@pytest.mark.parametrize(
    "body",
    [{"inventories": []}, {"locationCode": "", "inventories": []}, {"locationCode": "x"}],
)
async def test_inventory_bad_envelope_is_400(handler: CallbackHandler, body: Any) -> None:
    assert (await call(handler, cb.INVENTORY, body)).status == 400


# --- shipping label and invoice -------------------------------------------------------


def shipment() -> dict[str, Any]:
    label = sample("get-shipping-label.json", "response")
    invoice = sample("get-invoice.json", "response_older_version_complete")
    del invoice["_source"]
    return {
        "shipmentId": "987654321",
        "orderCode": "ORD123456",
        "shipmentCode": "SHIP123456",
        **label,
        "invoice": invoice,
        "carrierInternal": "ignored",
    }


LABEL_QUERY = {
    k: str(v).lower() if isinstance(v, bool) else str(v)
    for k, v in sample("get-shipping-label.json").items()
}
INVOICE_QUERY = {"orderCode": "ORD123456", "shipmentCode": "SHIP123456"}


async def test_shipping_label_from_the_shipments_table(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    ports.shipments.append(shipment())
    response = await call(handler, cb.SHIPPING_LABEL, query=LABEL_QUERY)
    assert response.status == 200
    assert body_of(response) == sample("get-shipping-label.json", "response")
    assert ports.lookups == [
        {"shipment_id": "987654321", "order_code": "ORD123456", "shipment_code": "SHIP123456"}
    ]
    [update] = ports.updates
    assert update["type"] == "SHIPPING_LABEL_REQUESTED"
    assert update["orderCode"] == "ORD123456"
    assert update["payload"]["available"] is True
    assert await call(handler, cb.SHIPPING_LABEL, query=LABEL_QUERY) == response
    assert len(ports.updates) == 1  # published once, answered every time


async def test_shipping_label_unknown_shipment_is_404(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    response = await call(handler, cb.SHIPPING_LABEL, query=LABEL_QUERY)
    assert response.status == 404
    assert body_of(response) == {"hasError": True, "errorMessage": "unknown shipment"}
    assert ports.updates[0]["payload"]["available"] is False
    # The label shows up later: answered now, not published again.
    ports.shipments.append(shipment())
    assert (await call(handler, cb.SHIPPING_LABEL, query=LABEL_QUERY)).status == 200
    assert len(ports.updates) == 1


async def test_shipping_label_of_another_order_or_without_label_is_404(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    other = shipment()
    other["orderCode"] = "SOMEONE-ELSE"
    ports.shipments.append(other)
    assert (await call(handler, cb.SHIPPING_LABEL, query=LABEL_QUERY)).status == 404
    incomplete = shipment()
    del incomplete["shippingLabelUrl"], incomplete["shippingLabel"]
    ports.shipments[:] = [incomplete]
    response = await call(handler, cb.SHIPPING_LABEL, query=LABEL_QUERY)
    assert response.status == 404
    assert body_of(response)["errorMessage"] == "shipping label not available"


async def test_shipping_label_needs_order_code(handler: CallbackHandler) -> None:
    query = {k: v for k, v in LABEL_QUERY.items() if k != "orderCode"}
    assert (await call(handler, cb.SHIPPING_LABEL, query=query)).status == 400


async def test_invoice_from_the_shipments_table(handler: CallbackHandler, ports: FakePorts) -> None:
    ports.shipments.append(shipment())
    response = await call(handler, cb.INVOICE, query=INVOICE_QUERY)
    assert response.status == 200
    expected = sample("get-invoice.json", "response_older_version_complete")
    del expected["_source"]
    assert body_of(response) == expected
    assert ports.lookups[0] == {
        "shipment_id": None,
        "order_code": "ORD123456",
        "shipment_code": "SHIP123456",
    }
    [update] = ports.updates
    assert update["type"] == "INVOICE_REQUESTED"
    assert update["payload"]["shipmentId"] == "987654321"
    assert await call(handler, cb.INVOICE, query=INVOICE_QUERY) == response
    assert len(ports.updates) == 1


async def test_invoice_unknown_or_missing_is_404(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    assert (await call(handler, cb.INVOICE, query=INVOICE_QUERY)).status == 404
    no_invoice = shipment()
    del no_invoice["invoice"]
    ports.shipments.append(no_invoice)
    response = await call(handler, cb.INVOICE, query=INVOICE_QUERY)
    assert response.status == 404
    assert body_of(response)["errorMessage"] == "invoice not available"
    no_invoice["invoice"] = {"invoiceCode": "INV1"}  # neither invoiceUrl nor invoice
    assert (await call(handler, cb.INVOICE, query=INVOICE_QUERY)).status == 404
    assert (await call(handler, cb.INVOICE, query={"orderCode": "x"})).status == 400


# --- auth, size, bad input, failures ---------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authUsername": "increff"},
        {"authUsername": "increff", "authPassword": "wrong"},
        {"authUsername": "increff", "authPassword": "s3cret-value"},
        {"authUsername": "increff", "authPassword": "s3cret-Value "},
        {"authUsername": "increff", "authPassword": "sécret"},
    ],
)
@pytest.mark.parametrize("route", cb.ROUTES)
async def test_bad_auth_is_401(
    handler: CallbackHandler, ports: FakePorts, route: str, headers: dict[str, str]
) -> None:
    response = await call(handler, route, b"{}", headers=headers)
    assert response.status == 401
    assert body_of(response) == {"hasError": True, "errorMessage": "unauthorized"}
    assert b"s3cret" not in response.body
    assert not (ports.updates or ports.snapshots or ports.commands)


async def test_header_names_are_case_insensitive(handler: CallbackHandler) -> None:
    headers = {"AUTHUSERNAME": "increff", "authpassword": "s3cret-Value", "x-other": "1"}
    response = await call(handler, cb.PACK, sample("pack-order.json"), headers=headers)
    assert response.status == 200


async def test_oversize_body_is_413(ports: FakePorts) -> None:
    handler = CallbackHandler(ports, required_headers=[], max_bytes=100)
    body = dumps(sample("pack-order.json"))
    response = await handler.handle(*request(cb.PACK, body, headers={}))
    assert response.status == 413
    assert body_of(response)["hasError"] is True
    assert ports.updates == []


async def test_oversize_is_checked_after_auth(ports: FakePorts) -> None:
    handler = CallbackHandler(ports, required_headers=[{"k": SecretStr("v")}], max_bytes=1)
    assert (await handler.handle(*request(cb.PACK, b"{}", headers={}))).status == 401


@pytest.mark.parametrize("route", [r for r in cb.ROUTES if not r.startswith("GET")])
@pytest.mark.parametrize("body", [b"", b"{not json", b"[]", b'"x"', b'{"orderCode": 1}'])
async def test_bad_body_is_400(
    handler: CallbackHandler, ports: FakePorts, route: str, body: bytes
) -> None:
    response = await call(handler, route, body)
    assert response.status == 400
    payload = body_of(response)
    assert payload["hasError"] is True
    assert isinstance(payload["errorMessage"], str)
    assert 0 < len(payload["errorMessage"]) <= 255
    assert ports.updates == []
    assert ports.store == {}


async def test_schema_error_names_the_field_not_the_value(handler: CallbackHandler) -> None:
    body = sample("pack-order.json")
    body["orderCode"] = "secret-looking-value" * 20
    response = await call(handler, cb.PACK, body)
    assert response.status == 400
    message = body_of(response)["errorMessage"]
    assert "orderCode" in message
    assert "secret-looking-value" not in message


async def test_unknown_route_is_404(handler: CallbackHandler) -> None:
    response = await call(handler, "POST /increff/unknown", b"{}")
    assert response.status == 404
    assert body_of(response) == {"hasError": True, "errorMessage": "unknown route"}


async def test_wrong_method_is_405(handler: CallbackHandler) -> None:
    _, req = request(cb.PACK, dumps(sample("pack-order.json")))
    response = await handler.handle(cb.PACK, CallbackRequest("GET", req.path, HEADERS, {}, b""))
    assert response.status == 405


async def test_failure_is_500_then_retry_publishes_same_event(
    handler: CallbackHandler, ports: FakePorts, caplog: pytest.LogCaptureFixture
) -> None:
    ports.fail_publish = 1
    response = await call(handler, cb.PACK, sample("pack-order.json"))
    assert response.status == 500
    assert body_of(response) == {"hasError": True, "errorMessage": "internal error"}
    assert ports.store == {}  # nothing remembered: Increff's retry does the work again
    assert "Increff callback" in caplog.text
    assert "s3cret" not in caplog.text
    retry = await call(handler, cb.PACK, sample("pack-order.json"))
    assert retry.status == 200
    assert len(ports.updates) == 1


async def test_concurrent_repeats_publish_once(handler: CallbackHandler, ports: FakePorts) -> None:
    ports.publish_delay = 0.01
    responses = await asyncio.gather(
        *(call(handler, cb.PACK, sample("pack-order.json")) for _ in range(5))
    )
    assert {r.status for r in responses} == {200}
    assert len(ports.updates) == 1
    assert handler._locks._held == {}


async def test_no_headers_configured_accepts_any(ports: FakePorts) -> None:
    handler = CallbackHandler(ports, required_headers=[], max_bytes=10_000)
    response = await handler.handle(*request(cb.PACK, dumps(sample("pack-order.json")), headers={}))
    assert response.status == 200


async def test_huge_number_in_payload_is_400_not_500(handler: CallbackHandler) -> None:
    body = sample("seller-cancellation.json")
    body["orderItems"][0]["cancelledQuantity"] = 2**70
    assert (await call(handler, cb.SELLER_CANCEL, body)).status == 400
    pack = sample("pack-order.json")
    pack["shipmentItems"][0]["quantity"] = 2**70
    assert (await call(handler, cb.PACK, pack)).status == 400


# --- metrics ----------------------------------------------------------------------------


async def test_metrics_by_path_and_status(
    handler: CallbackHandler, registry: CollectorRegistry
) -> None:
    await call(handler, cb.PACK, sample("pack-order.json"))
    await call(handler, cb.PACK, b"{}")
    await call(handler, "GET /nope")

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    path = "/increff/orders/pack"
    assert value("invsync_callbacks_total", path=path, status="200") == 1
    assert value("invsync_callbacks_total", path=path, status="400") == 1
    assert value("invsync_callbacks_total", path="unknown", status="404") == 1
    assert value("invsync_callback_duration_seconds_count", path=path) == 2


def test_digest_is_stable_for_any_integer() -> None:
    assert digest("a", 2**70) == digest("a", 2**70)
    assert digest("a", 1) != digest("a", "1")


# --- strict types, header sets, the head before the body, large bodies ------------------


@pytest.mark.parametrize("bad", [True, False, 1.0, None, [], {}])
async def test_shipment_id_is_never_coerced(handler: CallbackHandler, bad: Any) -> None:
    body = sample("pack-order.json") | {"shipmentId": bad}
    response = await call(handler, cb.PACK, body)
    assert response.status == 400, bad
    assert "shipmentId" in body_of(response)["errorMessage"]


async def test_bool_for_a_number_or_a_number_for_a_bool_is_400(handler: CallbackHandler) -> None:
    pack = sample("pack-order.json") | {"weight": True}
    assert (await call(handler, cb.PACK, pack)).status == 400
    cancel = sample("seller-cancellation.json")
    cancel["orderItems"][0]["cancelledQuantity"] = True
    assert (await call(handler, cb.SELLER_CANCEL, cancel)).status == 400
    assert (
        await call(handler, cb.PACK, sample("pack-order.json") | {"shipmentId": "77"})
    ).status == 200


async def test_any_one_accepted_header_set_passes(ports: FakePorts) -> None:
    old = {"authUsername": SecretStr("increff"), "authPassword": SecretStr("old-pass")}
    new = {"authUsername": SecretStr("increff"), "authPassword": SecretStr("new-pass")}
    handler = CallbackHandler(ports, required_headers=[old, new], max_bytes=10_000)
    body = dumps(sample("pack-order.json"))
    for password, status in (("old-pass", 200), ("new-pass", 200), ("other", 401)):
        headers = {"authUsername": "increff", "authPassword": password}
        assert (await handler.handle(*request(cb.PACK, body, headers=headers))).status == status
    mixed = {"authUsername": "increff"}  # a set is all of its headers
    assert (await handler.handle(*request(cb.PACK, body, headers=mixed))).status == 401


async def test_non_utf8_header_bytes_are_401_not_500(handler: CallbackHandler) -> None:
    # aiohttp hands header bytes that are not UTF-8 over surrogate-escaped.
    headers = {
        "authUsername": "increff",
        "authPassword": b"s3cret-\xff".decode("utf-8", "surrogateescape"),
    }
    response = await call(handler, cb.PACK, sample("pack-order.json"), headers=headers)
    assert response.status == 401


async def test_admit_judges_the_head_alone(
    handler: CallbackHandler, registry: CollectorRegistry
) -> None:
    _, head = request(cb.PACK)
    assert handler.admit(cb.PACK, head) is None
    _, no_auth = request(cb.PACK, headers={})
    refused = handler.admit(cb.PACK, no_auth)
    assert refused is not None and refused.status == 401
    wrong = handler.admit(cb.PACK, CallbackRequest("OPTIONS", head.path, HEADERS, {}, b""))
    assert wrong is not None and wrong.status == 405
    unknown = handler.admit("POST /nope", head)
    assert unknown is not None and unknown.status == 404
    assert handler.refuse(cb.PACK, 413, "too large").status == 413
    count = registry.get_sample_value(
        "invsync_callbacks_total", {"path": "/increff/orders/pack", "status": "413"}
    )
    assert count == 1


async def test_a_large_acknowledgement_is_published_concurrently(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    ports.publish_delay = 0.01  # one at a time this would take 180 s
    orders = [{"locationCode": "WH1", "orderCode": f"O-{i}"} for i in range(18_000)]
    body = dumps({"orders": orders, "consolidationType": "NONE"})
    assert len(body) < 1_048_576
    handler._max_bytes = 1_048_576
    response = await call(handler, cb.ACKNOWLEDGE, body)
    assert response.status == 200
    assert len(body_of(response)["successOrders"]) == 18_000
    assert len(ports.updates) == 18_000
    assert ports.max_in_flight == cb.PUBLISH_CONCURRENCY
    again = await call(handler, cb.ACKNOWLEDGE, body)
    assert again.status == 200
    assert len(ports.updates) == 18_000  # every order remembered


async def test_a_failed_publish_in_a_batch_is_500_and_the_retry_sends_only_the_rest(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    orders = [{"locationCode": "WH1", "orderCode": f"O-{i}"} for i in range(20)]
    ports.fail_publish = 1
    body = {"orders": orders}
    assert (await call(handler, cb.ACKNOWLEDGE, body)).status == 500
    assert len(ports.updates) == 19
    assert (await call(handler, cb.ACKNOWLEDGE, body)).status == 200
    assert len(ports.updates) == 20
    assert len({u["eventId"] for u in ports.updates}) == 20


async def test_large_bodies_are_parsed_off_the_event_loop(
    handler: CallbackHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    real = plan_acknowledgements

    def recording(body: bytes) -> Any:
        threads.append(threading.get_ident())
        return real(body)

    monkeypatch.setattr(cb, "plan_acknowledgements", recording)
    handler._max_bytes = 2_000_000
    small = {"orders": [{"locationCode": "WH1", "orderCode": "A"}]}
    await call(handler, cb.ACKNOWLEDGE, small)
    huge = b"[" + b"0," * 499_999 + b"0]"  # 500,000 elements: refused, but parsed aside
    response = await call(handler, cb.ACKNOWLEDGE, huge)
    assert response.status == 400
    assert threads[0] == threading.get_ident()
    assert threads[1] != threading.get_ident()
