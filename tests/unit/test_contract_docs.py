"""The committed contract (`docs/schemas/`, `docs/openapi.json`) is what the models generate,
is valid, describes the paths the worker registers, and accepts what the code really
sends and answers (and refuses what the code refuses)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from openapi_spec_validator import validate as validate_openapi
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from connectors.errors import IncreffError
from invsync import contractdocs
from models.atp import plan_inventory
from models.consolidation import Held, SkuState, build_consolidated
from models.events import DeadLetter, InventoryUpdate, OrderEvent, StockEvent
from models.messages import ORDER_EVENT_PAYLOADS, Shipment
from models.openapi import CALLBACKS, openapi_document
from models.orders import ROUTES, plan_order, reservation_commands
from models.schemas import TOPICS, topic_schemas
from streams import callbacks as cb
from streams.app import create_app
from streams.callbacks import CallbackHandler, CallbackRequest
from streams.metrics import Metrics
from streams.router import OrderRouter, update_message
from streams.settings import Settings
from tests.unit.test_callbacks import HEADERS, FakePorts, sample

DOCS = Path(__file__).resolve().parents[2] / "docs"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SHIPMENT = {
    "shipmentId": 987654321,
    "orderCode": "ORD123456",
    "shipmentCode": "SHIP123456",
    "awbNumber": "AWB1",
    "transporter": "FedEx",
    "shippingLabelUrl": "https://example.com/label.pdf",
    "invoice": {"invoiceCode": "INV1", "invoiceUrl": "https://example.com/inv.pdf"},
}


def committed(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DOCS / "schemas" / name).read_text())
    return data


def errors(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return [e.message for e in validator.iter_errors(instance)]


def valid(name: str, instance: Any) -> None:
    problems = errors(committed(name), instance)
    assert not problems, f"{name}: {problems}"


# --- the committed files are the generated ones --------------------------------------


def test_committed_documents_are_what_the_models_generate() -> None:
    assert contractdocs.differences() == []


def test_a_stale_or_missing_document_is_reported(tmp_path: Path) -> None:
    contractdocs.write(tmp_path)
    assert contractdocs.differences(tmp_path) == []
    (tmp_path / "schemas" / "marketplace.inventory.json").write_text("{}\n")
    (tmp_path / "openapi.json").unlink()
    (tmp_path / "schemas" / "old-topic.json").write_text("{}\n")
    assert contractdocs.differences(tmp_path) == [
        "schemas/marketplace.inventory.json: differs from what the models generate",
        "openapi.json: missing",
        "schemas/old-topic.json: no topic generates it",
    ]
    assert contractdocs.main(["--check", "--docs", str(tmp_path)]) == 1
    assert contractdocs.main(["--docs", str(tmp_path)]) == 0
    assert contractdocs.differences(tmp_path) == []


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    schemas = topic_schemas()
    assert set(schemas) == {t.file for t in TOPICS}
    assert len(schemas) == 9
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_openapi_document_is_valid_openapi_3_1() -> None:
    document = json.loads((DOCS / "openapi.json").read_text())
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)
    validate_openapi(openapi_document([]))


def test_documented_paths_are_the_paths_the_worker_registers(tmp_path: Path) -> None:
    runtime = create_app(Settings(data_dir=tmp_path, callback_auth="none"))
    aio = runtime.app.web.web_app  # the callback paths are plain aiohttp routes
    served = set(runtime.app.web.views) | {r.canonical for r in aio.router.resources()}
    documented = set(openapi_document()["paths"])
    assert documented == served
    assert {f"{c.method} {c.path}" for c in CALLBACKS} == set(cb.ROUTES)


def test_auth_scheme_names_the_configured_headers_only() -> None:
    document = openapi_document(["x-increff-token", "authDomain"])
    schemes = document["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {"x-increff-token", "authDomain"}
    assert all(s["type"] == "apiKey" and s["in"] == "header" for s in schemes.values())
    assert document["security"] == [{name: [] for name in schemes}]
    assert document["paths"]["/health"]["get"]["security"] == []
    open_doc = openapi_document([])
    assert open_doc["security"] == []
    assert "401" not in open_doc["paths"]["/increff/orders/pack"]["post"]["responses"]


# --- the schemas accept what the code sends, refuse what it refuses -------------------


def test_stock_event_schema_matches_the_model() -> None:
    events, _ = plan_inventory(orjson.dumps(sample("location-wise-atp-inventory.json")), NOW)
    assert events
    for event in events:
        valid("warehouse.stock-events.json", event.model_dump(mode="json"))
    delta = {
        "eventId": "e1",
        "type": "DELTA",
        "locationCode": "WH1",
        "channelSkuCode": "SKU1",
        "quantity": -3,
        "occurredAt": "2024-05-01T12:00:00+05:30",
        "orderCode": "ORD1",
    }
    valid("warehouse.stock-events.json", delta)
    schema = committed("warehouse.stock-events.json")
    assert errors(schema, {**delta, "type": "SNAPSHOT"})  # negative absolute figure
    assert errors(schema, {**delta, "occurredAt": "2024-05-01T12:00:00"})  # no offset
    assert errors(schema, {**delta, "quantity": 1.5})
    assert errors(schema, {**delta, "quantity": -1_000_000_001})
    assert errors(schema, {**delta, "basis": "ON_HAND"})  # only a SNAPSHOT has a basis
    snapshot = {**delta, "type": "SNAPSHOT", "quantity": 4, "basis": "AVAILABLE"}
    valid("warehouse.stock-events.json", snapshot)
    StockEvent.model_validate(snapshot)
    with pytest.raises(ValueError, match="basis"):
        StockEvent.model_validate({**delta, "basis": "ON_HAND"})
    assert schema["x-kafka"]["key"].startswith("locationCode:channelSkuCode")


def test_order_event_schema_checks_the_payload_of_each_type() -> None:
    created = {
        "eventId": "o1",
        "type": "ORDER_CREATED",
        "occurredAt": "2024-05-01T12:00:00Z",
        "payload": sample("create-outward-order.json"),
    }
    valid("marketplace.orders.json", created)
    event = OrderEvent.model_validate(created)
    commands = reservation_commands(event, None)
    assert commands
    for command in commands:
        valid("inventory-commands.json", orjson.loads(command.encode()))
    schema = committed("marketplace.orders.json")
    no_lines = {**created, "payload": {**created["payload"], "orderItems": []}}
    assert errors(schema, no_lines)  # the router reserves nothing: dead-lettered
    cancel = {"eventId": "o2", "type": "CUSTOMER_CANCELLED", "occurredAt": "2024-05-01T12:00:00Z"}
    valid("marketplace.orders.json", {**cancel, "payload": sample("customer-cancellation.json")})
    assert errors(schema, {**cancel, "payload": {"orderItems": []}})
    assert errors(schema, {**cancel, "type": "ORDER_SHIPPED", "payload": {}})


def test_order_event_payload_table_is_the_routers() -> None:
    bodies = {t: models[0] for t, models in ORDER_EVENT_PAYLOADS.items()}
    assert bodies == {t: route.body for t, route in ROUTES.items()}


def test_command_schema_requires_the_quantity_of_its_type() -> None:
    schema = committed("inventory-commands.json")
    base = {
        "commandId": "e:0:RESERVE",
        "orderCode": "O1",
        "locationCode": "WH1",
        "channelSkuCode": "SKU1",
        "occurredAt": "2024-05-01T12:00:00Z",
    }
    assert errors(schema, {**base, "type": "RESERVE"})
    assert not errors(schema, {**base, "type": "RESERVE", "quantity": 2})
    assert errors(schema, {**base, "type": "CANCEL"})
    assert not errors(schema, {**base, "type": "RELEASE"})


def test_inventory_update_and_dead_letter_schemas_accept_what_the_worker_writes() -> None:
    update = InventoryUpdate(
        locationCode="WH1",
        channelSkuCode="SKU1",
        quantity=4,
        onHand=6,
        reserved=2,
        version=1_714_564_800_000_123,
        asOf=NOW,
        publishedAt=NOW,
    )
    valid("marketplace.inventory.json", orjson.loads(update.encode()))
    assert errors(committed("marketplace.inventory.json"), {**update.model_dump(), "version": -1})
    valid("inventory-by-sku.json", orjson.loads(update.encode()))
    state = SkuState({"WH1": Held(4, 7, NOW.timestamp()), "W:H": Held(0, 9, NOW.timestamp())})
    consolidated = build_consolidated("SKU1", state, NOW)
    valid("marketplace.inventory-consolidated.json", orjson.loads(consolidated.encode()))
    wrong = {**orjson.loads(consolidated.encode()), "locations": {"WH1": -1}}
    assert errors(committed("marketplace.inventory-consolidated.json"), wrong)
    letter = DeadLetter.from_raw(
        source_topic="warehouse.stock-events",
        partition=1,
        offset=7,
        key=None,
        value=b"\xff not json",
        error="invalid JSON",
        failed_at=NOW,
    )
    valid("invsync.dead-letters.json", orjson.loads(letter.encode()))


def test_shipment_schema_matches_what_the_label_callback_needs() -> None:
    valid("marketplace.shipments.json", SHIPMENT)
    Shipment.model_validate(SHIPMENT)
    no_label = {k: v for k, v in SHIPMENT.items() if k != "shippingLabelUrl"}
    assert errors(committed("marketplace.shipments.json"), no_label)
    with pytest.raises(ValueError, match="shippingLabel"):
        Shipment.model_validate(no_label)


async def _handler_outputs() -> tuple[FakePorts, dict[str, tuple[int, bytes]]]:
    """Every callback route on Increff's sample, through the handler the worker runs."""
    ports = FakePorts(shipments=[SHIPMENT])
    handler = CallbackHandler(
        ports,
        required_headers=[{k: SecretStr(v) for k, v in HEADERS.items()}],
        max_bytes=64 * 1024,
        metrics=Metrics(CollectorRegistry()),
        clock=lambda: NOW,
    )
    bodies = {
        cb.ACKNOWLEDGE: "order-acknowledgement.json",
        cb.PACK: "pack-order.json",
        cb.MANIFESTS: "create-manifest.json",
        cb.HANDOVER: "handover-notification.json",
        cb.SELLER_CANCEL: "seller-cancellation.json",
        cb.INVENTORY: "location-wise-atp-inventory.json",
        cb.CONSOLIDATED_INVENTORY: "consolidated-atp-inventory.json",
        cb.RETURNS_ACKNOWLEDGE: "return-order-acknowledgement.json",
    }
    queries = {
        cb.SHIPPING_LABEL: {"orderCode": "ORD123456", "shipmentId": "987654321"},
        cb.INVOICE: {"orderCode": "ORD123456", "shipmentCode": "SHIP123456"},
    }
    answers: dict[str, tuple[int, bytes]] = {}
    for route in cb.ROUTES:
        method, _, path = route.partition(" ")
        body = orjson.dumps(sample(bodies[route])) if route in bodies else b""
        request = CallbackRequest(method, path, HEADERS, queries.get(route, {}), body)
        response = await handler.handle(route, request)
        answers[route] = (response.status, response.body)
    bad = CallbackRequest("POST", "/increff/orders/pack", HEADERS, {}, b"{")
    response = await handler.handle(cb.PACK, bad)
    answers["bad"] = (response.status, response.body)
    return ports, answers


def _openapi_schema(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema whose `#/components/...` references resolve inside the document."""
    return {"components": document["components"], **schema}


async def test_callback_answers_and_samples_match_the_openapi_document() -> None:
    document = json.loads((DOCS / "openapi.json").read_text())
    ports, answers = await _handler_outputs()
    bodies = {
        "/increff/orders/acknowledge": "order-acknowledgement.json",
        "/increff/orders/pack": "pack-order.json",
        "/increff/manifests": "create-manifest.json",
        "/increff/orders/handover": "handover-notification.json",
        "/increff/orders/seller-cancel": "seller-cancellation.json",
        "/increff/inventory": "location-wise-atp-inventory.json",
        "/increff/inventory/consolidated": "consolidated-atp-inventory.json",
        "/increff/returns/acknowledge": "return-order-acknowledgement.json",
    }
    for callback in CALLBACKS:
        route = f"{callback.method} {callback.path}"
        op = document["paths"][callback.path][callback.method.lower()]
        status, body = answers[route]
        assert status == 200, (route, body)
        content = op["responses"]["200"].get("content")
        if content is None:
            assert body == b"", route
        else:
            schema = _openapi_schema(document, content["application/json"]["schema"])
            assert not errors(schema, orjson.loads(body)), route
        if callback.path in bodies:
            request_schema = op["requestBody"]["content"]["application/json"]["schema"]
            schema = _openapi_schema(document, request_schema)
            assert not errors(schema, sample(bodies[callback.path])), route
    status, body = answers["bad"]
    error_schema = document["components"]["responses"]["BadRequest"]["content"]
    schema = _openapi_schema(document, error_schema["application/json"]["schema"])
    assert status == 400
    assert not errors(schema, orjson.loads(body))
    too_many = {"locationCode": "L", "inventories": [{"channelSkuCode": "S", "quantity": 1}] * 201}
    inventory = document["paths"]["/increff/inventory"]["put"]["requestBody"]
    schema = _openapi_schema(document, inventory["content"]["application/json"]["schema"])
    assert errors(schema, too_many)
    # The updates those callbacks published match the order-updates schema.
    published = {u["type"] for u in ports.updates}
    assert published >= {
        "ORDER_ACKNOWLEDGED",
        "ORDER_PACKED",
        "SHIPPING_LABEL_REQUESTED",
        "INVOICE_REQUESTED",
        "ORDER_HANDED_OVER",
        "SELLER_CANCELLED",
        "RETURN_ACKNOWLEDGED",
    }
    for update in ports.updates:
        message = update_message(update["eventId"], update["type"], update["payload"])
        valid("marketplace.order-updates.json", orjson.loads(message))
    for event in ports.snapshots:
        valid("warehouse.stock-events.json", event.model_dump(mode="json"))
    for command in ports.commands:
        valid("inventory-commands.json", orjson.loads(command.encode()))


class _RefusingIncreff:
    async def create_order(self, body: Any) -> None:
        raise IncreffError(
            "Input validation failed",
            code="BAD_DATA",
            description="[channelSkuCode: may not be null]",
            status=400,
            endpoint="create_order",
        )


async def test_increff_rejected_update_matches_the_schema() -> None:
    published: list[bytes] = []

    async def publish(order_code: str, kind: str, event_id: str, payload: dict[str, Any]) -> None:
        published.append(update_message(event_id, kind, payload))

    async def send(commands: list[Any]) -> None:
        return None

    router = OrderRouter(
        increff=_RefusingIncreff(),  # type: ignore[arg-type]
        send_commands=send,
        publish_update=publish,
        metrics=Metrics(CollectorRegistry()),
    )
    payload = sample("create-outward-order.json")
    event = OrderEvent(eventId="o1", type="ORDER_CREATED", occurredAt=NOW, payload=payload)
    await router.attempt(plan_order(event, payload["orderCode"]))
    assert len(published) == 1
    message = orjson.loads(published[0])
    assert message["type"] == "INCREFF_REJECTED"
    valid("marketplace.order-updates.json", message)
    schema = committed("marketplace.order-updates.json")
    assert errors(schema, {**message, "payload": {"orderCode": payload["orderCode"]}})
