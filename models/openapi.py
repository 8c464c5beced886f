"""The OpenAPI 3.1 document of the worker's HTTP endpoints, generated from the wire models.

`docs/openapi.json` is `openapi_document()` (`make docs` writes it, a test checks it);
the worker serves the same document at `GET /openapi.json`, naming the auth headers it
is configured with. Pure: no I/O, imports only `models`. The path table is DESIGN.md's
("Orders and callbacks"), limited to the paths the worker serves today.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from models.atp import MAX_ATP_ITEMS, MAX_CONSOLIDATED_ITEMS
from models.increff import (
    ClientResult,
    ConsolidatedAtpInventory,
    ConsolidatedAtpResponse,
    CreateManifest,
    GetInvoiceQuery,
    GetInvoiceResponse,
    GetShippingLabelQuery,
    GetShippingLabelResponse,
    Handover,
    LocationAtpInventory,
    ManifestResponse,
    OrderAcknowledgement,
    OrderAcknowledgementResponse,
    PackOrder,
    ReturnOrderAcknowledgement,
    SearchInventoryResponse,
    SellerCancellation,
    SkuListResponse,
)
from models.lookup import MAX_LOOKUP_SKUS, LookupRequest, PeerLookupAnswer, PeerLookupRequest
from models.messages import CallbackErrorBody
from models.schemas import drop_property_titles

OPENAPI_VERSION = "3.1.0"
EXAMPLE_AUTH_HEADERS = ("authUsername", "authPassword")
"""Names shown in the committed document; a worker's own document names its
`INVSYNC_CALLBACK_HEADERS` (names only, never values)."""

Refs = dict[tuple[Any, JsonSchemaMode], dict[str, Any]]
"""(model, mode) → `{"$ref": ...}` into components.schemas."""

SUCCESS_EXAMPLE = {"hasError": False, "errorMessage": None}
CALLBACK_TAG = "Increff callbacks"
LOOKUP_TAG = "Inventory lookup"
INTERNAL_TAG = "Between workers"
OPERATIONS_TAG = "Operations"


@dataclass(frozen=True)
class Callback:
    """One Client URL the worker serves: its body or query model and its answer."""

    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    """None: 200 with an empty body."""
    success_example: dict[str, Any] | None = None
    not_found: bool = False
    max_items: int | None = None
    """The body's `inventories` hold at most this many items."""
    tag: str = CALLBACK_TAG
    unavailable: bool = False
    """May answer 503 (not restored, rebalancing, a worker unreachable)."""


CALLBACKS: tuple[Callback, ...] = (
    Callback(
        "PUT",
        "/increff/orders/acknowledge",
        "acknowledgeOrders",
        "Order acknowledgement",
        "Publishes ORDER_ACKNOWLEDGED once per orderCode; answers every order.",
        request=OrderAcknowledgement,
        response=OrderAcknowledgementResponse,
    ),
    Callback(
        "POST",
        "/increff/orders/pack",
        "packOrder",
        "Pack order",
        "Publishes ORDER_PACKED once per shipmentId; a repeat gets the same answer.",
        request=PackOrder,
        response=ClientResult,
        success_example=SUCCESS_EXAMPLE,
    ),
    Callback(
        "GET",
        "/increff/orders/invoice",
        "getInvoice",
        "Get invoice",
        "Answered from marketplace.shipments (the shipment's `invoice`); 404 while the "
        "shipment or its invoice is unknown. Publishes INVOICE_REQUESTED once per "
        "orderCode and shipmentCode.",
        query=GetInvoiceQuery,
        response=GetInvoiceResponse,
        not_found=True,
    ),
    Callback(
        "GET",
        "/increff/orders/shipping-label",
        "getShippingLabel",
        "Get shipping label",
        "Answered from marketplace.shipments (by shipmentId, else orderCode and "
        "shipmentCode); 404 while the shipment or its label is unknown. Publishes "
        "SHIPPING_LABEL_REQUESTED once per shipment.",
        query=GetShippingLabelQuery,
        response=GetShippingLabelResponse,
        not_found=True,
    ),
    Callback(
        "POST",
        "/increff/manifests",
        "createManifest",
        "Create manifest",
        "manifestCode is Increff's manifestId when given, else derived from the items. "
        "Publishes nothing.",
        request=CreateManifest,
        response=ManifestResponse,
    ),
    Callback(
        "POST",
        "/increff/orders/handover",
        "handover",
        "Handover",
        "Publishes ORDER_HANDED_OVER once per order and shipment; repeats succeed.",
        request=Handover,
        response=ClientResult,
        success_example=SUCCESS_EXAMPLE,
    ),
    Callback(
        "PUT",
        "/increff/orders/seller-cancel",
        "sellerCancel",
        "Seller cancellation",
        "Publishes SELLER_CANCELLED and ends the cancelled quantity of the order's "
        "reservations (cancelledQuantity is absolute); a repeat of the same totals "
        "publishes nothing.",
        request=SellerCancellation,
        response=ClientResult,
        success_example=SUCCESS_EXAMPLE,
    ),
    Callback(
        "PUT",
        "/increff/inventory",
        "pushInventory",
        "Location-wise ATP inventory",
        f"Absolute saleable quantities, at most {MAX_ATP_ITEMS} SKUs a call. Each valid "
        "item becomes a SNAPSHOT on warehouse.stock-events (reason INCREFF_ATP); an item "
        "that fails validation is listed in failureList and the others still apply.",
        request=LocationAtpInventory,
        response=SkuListResponse,
        max_items=MAX_ATP_ITEMS,
    ),
    Callback(
        "PUT",
        "/increff/inventory/consolidated",
        "pushConsolidatedInventory",
        "Consolidated ATP inventory",
        "Each item is one SKU at one location (its locationCode, else the body's): its "
        "quantity, the location's absolute saleable quantity, becomes a SNAPSHOT on "
        "warehouse.stock-events (basis AVAILABLE, reason INCREFF_ATP) as in the "
        "location-wise push. consolidatedQuantity, consolidatedMinExpiry, listingId and "
        "consolidationType are informational (echoed, not applied). An item without a "
        "location or a quantity, or that fails validation, is listed in failureList and "
        "the others still apply; a body in which no item has both is a 400.",
        request=ConsolidatedAtpInventory,
        response=ConsolidatedAtpResponse,
        max_items=MAX_CONSOLIDATED_ITEMS,
    ),
    Callback(
        "PUT",
        "/increff/returns/acknowledge",
        "acknowledgeReturn",
        "Return order acknowledgement",
        "Publishes RETURN_ACKNOWLEDGED once per returnOrderCode (keyed by forwardOrderCode "
        "when given). 200 with an empty body.",
        request=ReturnOrderAcknowledgement,
    ),
)

LOOKUPS: tuple[Callback, ...] = (
    Callback(
        "POST",
        "/inventories/search-sku",
        "searchInventory",
        "Pre-order inventory lookup",
        "Increff's Search Inventory shape, answered from invsync's own state: the current "
        "ATP of every location of each SKU (reservations and safety stock counted, changes "
        "not yet published included), gathered from every worker of the group. A SKU "
        f"invsync holds nowhere is listed in failureList. At most {MAX_LOOKUP_SKUS} SKUs "
        "a call (each answered once). 503 (with Retry-After) while tables are restored, "
        "during a rebalance, or when another worker does not answer: never a partial list.",
        request=LookupRequest,
        response=SearchInventoryResponse,
        tag=LOOKUP_TAG,
        unavailable=True,
    ),
    Callback(
        "POST",
        "/internal/inventories/search-sku",
        "searchInventoryPart",
        "One worker's part of a lookup",
        "Called by the worker a lookup reached, on every other worker of the group (at "
        "the URL it advertises, INVSYNC_WEB_URL): the SKUs' (location, ATP) on the "
        "partitions this worker restored, in the given group generation (503 otherwise).",
        request=PeerLookupRequest,
        response=PeerLookupAnswer,
        tag=INTERNAL_TAG,
        unavailable=True,
    ),
)
"""The lookup (for the marketplace) and its part served to the other workers."""

_ERRORS = {
    "BadRequest": ("400", "Bad JSON, or a body or query that fails validation"),
    "Unauthorized": ("401", "A configured auth header is missing or wrong"),
    "NotFound": ("404", "Unknown shipment, or its document is not available yet"),
    "PayloadTooLarge": ("413", "Body larger than INVSYNC_CALLBACK_MAX_BYTES"),
    "InternalError": ("500", "Unexpected failure; Increff retries"),
    "Unavailable": ("503", "Not answerable whole now (see the description); retry"),
}


def package_version() -> str:
    try:
        return version("invsync")
    except PackageNotFoundError:  # pragma: no cover - always installed by make install
        return "0+unknown"


def _scheme_name(header: str) -> str:
    return "header-" + re.sub(r"[^A-Za-z0-9._-]", "_", header)


def _components(
    mode_models: list[tuple[type[BaseModel], JsonSchemaMode]],
) -> tuple[Refs, dict[str, Any]]:
    keys, defs = models_json_schema(mode_models, ref_template="#/components/schemas/{model}")
    refs: Refs = dict(keys)
    schemas: dict[str, Any] = drop_property_titles(dict(defs.get("$defs", {})))
    return refs, schemas


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = drop_property_titles(model.model_json_schema(mode="validation"))
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def _operation(
    cb: Callback,
    refs: Refs,
    *,
    auth: bool,
) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Accepted (or answered)"}
    if cb.response is not None:
        ok["content"] = _json(refs[(cb.response, "serialization")], cb.success_example)
    responses: dict[str, Any] = {"200": ok}
    names = ["BadRequest", "Unauthorized"] if auth else ["BadRequest"]
    if cb.not_found:
        names.append("NotFound")
    if cb.request is not None:
        names.append("PayloadTooLarge")
    names.append("InternalError")
    if cb.unavailable:
        names.append("Unavailable")
    for name in names:
        responses[_ERRORS[name][0]] = {"$ref": f"#/components/responses/{name}"}
    op: dict[str, Any] = {
        "operationId": cb.operation_id,
        "summary": cb.summary,
        "description": cb.description,
        "tags": [cb.tag],
    }
    if cb.query is not None:
        op["parameters"] = _query_parameters(cb.query)
    if cb.request is not None:
        body = dict(refs[(cb.request, "validation")])
        if cb.max_items is not None:
            body["properties"] = {"inventories": {"maxItems": cb.max_items}}
        op["requestBody"] = {"required": True, "content": _json(body)}
    op["responses"] = responses
    return op


def _service_paths() -> dict[str, Any]:
    """The worker's own endpoints: no auth."""
    plain = {"security": [], "tags": [OPERATIONS_TAG]}
    health = {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}
    ready = {"type": "object", "properties": {"status": {"const": "ready"}}, "required": ["status"]}
    not_ready = {
        "type": "object",
        "properties": {"status": {"const": "not ready"}, "reason": {"type": "string"}},
        "required": ["status", "reason"],
    }
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: the process and its event loop answer",
                **plain,
                "responses": {"200": {"description": "Alive", "content": _json(health)}},
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: broker reachable, partitions assigned, tables recovered",
                **plain,
                "responses": {
                    "200": {"description": "Ready", "content": _json(ready)},
                    "503": {"description": "Not ready, and why", "content": _json(not_ready)},
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (prefix invsync_)",
                **plain,
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                **plain,
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}
                },
            }
        },
    }


def openapi_document(
    auth_headers: Sequence[str] = EXAMPLE_AUTH_HEADERS, *, api_version: str | None = None
) -> dict[str, Any]:
    """The document; `auth_headers` are the header names every callback must carry."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(CallbackErrorBody, "serialization")]
    for cb in (*CALLBACKS, *LOOKUPS):
        if cb.request is not None:
            wanted.append((cb.request, "validation"))
        if cb.response is not None:
            wanted.append((cb.response, "serialization"))
    refs, schemas = _components(wanted)
    error_ref = refs[(CallbackErrorBody, "serialization")]
    responses = {
        name: {
            "description": text,
            "content": _json(error_ref, {"hasError": True, "errorMessage": "..."}),
        }
        for name, (_, text) in _ERRORS.items()
    }
    headers = sorted(set(auth_headers))
    paths: dict[str, Any] = {}
    for cb in (*CALLBACKS, *LOOKUPS):
        paths.setdefault(cb.path, {})[cb.method.lower()] = _operation(cb, refs, auth=bool(headers))
    paths.update(_service_paths())
    schemes = {
        _scheme_name(h): {
            "type": "apiKey",
            "in": "header",
            "name": h,
            "description": "Configured in Increff for the Client URLs (and given to the "
            "marketplace for the lookup) and in the worker's "
            "INVSYNC_CALLBACK_HEADERS; every configured header must be sent.",
        }
        for h in headers
    }
    components: dict[str, Any] = {"schemas": schemas, "responses": responses}
    if schemes:
        components["securitySchemes"] = schemes
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "invsync worker",
            "version": api_version or package_version(),
            "summary": "Increff Client URLs and the pre-order inventory lookup served by "
            "every invsync worker, and its operational endpoints.",
            "description": 'Errors are `{"hasError": true, "errorMessage": ...}`; the '
            "message never carries header values or input. A wrong method gets 405. "
            "Repeats are answered from memory and publish nothing. Topic contract: "
            "docs/integrating.md.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": CALLBACK_TAG, "description": "Client URLs configured in Increff"},
            {"name": LOOKUP_TAG, "description": "For the marketplace, before it confirms an order"},
            {"name": INTERNAL_TAG, "description": "Called by other invsync workers only"},
            {"name": OPERATIONS_TAG, "description": "Health, metrics and this document"},
        ],
        "security": [{name: [] for name in schemes}] if schemes else [],
        "paths": paths,
        "components": components,
    }
