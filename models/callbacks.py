"""Increff callbacks, the pure part: read a body, decide what it changes, build the answer.

Each `plan_*` turns one callback into a `Plan`: its idempotency key, the answer, and the
order updates and reservation commands to send the first time that key is seen
(DESIGN.md "Orders and callbacks"). No I/O here: `callbacks.CallbackHandler` runs plans.
Event and command ids derive from the idempotency key, so a crash between publishing
and remembering re-publishes the same ids, which consumers deduplicate.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from models.errors import InvsyncError
from models.events import InventoryCommand, command_id, validation_reason
from models.increff import (
    ClientResult,
    CreateManifest,
    GetInvoiceQuery,
    GetInvoiceResponse,
    GetShippingLabelQuery,
    GetShippingLabelResponse,
    Handover,
    ManifestItemRef,
    ManifestResponse,
    OrderAcknowledgement,
    OrderAcknowledgementResponse,
    PackOrder,
    ReturnOrderAcknowledgement,
    SellerCancellation,
)

log = logging.getLogger(__name__)

MAX_QUANTITY = 2**53 - 1
"""Larger integers do not survive JSON consumers (nor orjson); refused, never truncated."""
MAX_MESSAGE = 255
MAX_VALUES = 100_000
"""Commas a body may hold (a bound on its JSON values; an 18,000-order acknowledgement
has about 36,000). Validating, and above all reporting, half a million bad values
holds the interpreter for seconds, so such a body is refused before it is parsed."""
MAX_DETAILED_ERRORS = 50
"""Beyond this many errors only their count is reported (listing them costs seconds)."""

M = TypeVar("M", bound=BaseModel)


class CallbackError(InvsyncError):
    """A callback answered with an error: `status` and a short message safe to show Increff."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message[:MAX_MESSAGE])
        if status is not None:
            self.status = status


class BadRequest(CallbackError):
    status = 400


class NotFound(CallbackError):
    status = 404


@dataclass(frozen=True)
class Update:
    """One `marketplace.order-updates` message (keyed by `order_code`)."""

    order_code: str
    type: str
    payload: dict[str, Any]
    event_id: str


@dataclass(frozen=True)
class Plan:
    """What one callback does the first time its `key` is seen, and what it answers."""

    key: str
    status: int
    body: bytes
    updates: tuple[Update, ...] = ()
    commands: tuple[InventoryCommand, ...] = ()


def error_body(message: str) -> bytes:
    return orjson.dumps({"hasError": True, "errorMessage": message[:MAX_MESSAGE]})


SUCCESS_BODY = orjson.dumps(ClientResult(hasError=False).to_wire(exclude_none=False))
"""`{"hasError": false, "errorMessage": null}`: the documented handover answer, reused for
pack (no pack response was published) and seller cancellation."""


def digest(*parts: object) -> str:
    """Stable hex digest of JSON-able parts (stdlib json: any size of integer).

    Parts that are all strings take orjson, which writes the same bytes ten times faster
    (an acknowledgement digests one key per order)."""
    if all(isinstance(p, str) for p in parts):
        return hashlib.sha256(orjson.dumps(list(parts))).hexdigest()
    text = json.dumps(parts, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_body(model: type[M], body: bytes) -> M:
    if body.count(b",") >= MAX_VALUES:
        raise BadRequest(f"body holds more than {MAX_VALUES} values")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        count = exc.error_count()
        if count > MAX_DETAILED_ERRORS:
            raise BadRequest(f"{count} invalid values in the body") from exc
        raise BadRequest(validation_reason(exc)) from exc


def parse_query(model: type[M], query: Mapping[str, str]) -> M:
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise BadRequest(validation_reason(exc)) from exc


def _update(order_code: str, update_type: str, payload: dict[str, Any], *id_parts: str) -> Update:
    try:
        orjson.dumps(payload)  # refuse now what the publisher could not encode later
    except orjson.JSONEncodeError as exc:
        raise BadRequest("a number in the body is out of range") from exc
    event_id = f"{update_type}:{digest(*id_parts)[:32]}"
    return Update(order_code, update_type, payload, event_id)


def _quantity(value: int) -> int:
    if value > MAX_QUANTITY:
        raise BadRequest(f"quantity larger than {MAX_QUANTITY}")
    return value


# --- order updates ------------------------------------------------------------------


def plan_acknowledgements(body: bytes) -> tuple[list[Plan], bytes]:
    """One plan per distinct order (`ack:{orderCode}`) and the answer listing every order."""
    ack = parse_body(OrderAcknowledgement, body)
    plans: dict[str, Plan] = {}
    for ref in ack.orders:
        key = f"ack:{ref.orderCode}"
        if key in plans:
            continue
        wire = ref.to_wire()
        payload = {**wire, "consolidationType": ack.consolidationType}
        answer = orjson.dumps({"successOrders": [wire]})
        update = _update(ref.orderCode, "ORDER_ACKNOWLEDGED", payload, key)
        plans[key] = Plan(key, 200, answer, updates=(update,))
    response = OrderAcknowledgementResponse(successOrders=ack.orders)
    return list(plans.values()), orjson.dumps(response.to_wire())


def plan_pack(body: bytes) -> Plan:
    pack = parse_body(PackOrder, body)
    key = f"pack:{pack.shipmentId}"
    update = _update(pack.orderCode, "ORDER_PACKED", pack.to_wire(), key)
    return Plan(key, 200, SUCCESS_BODY, updates=(update,))


def plan_manifest(body: bytes) -> Plan:
    """Answers `{manifestCode, manifestItems}`; the code is Increff's manifestId.

    DESIGN has no order-update type for manifests, so nothing is published.
    """
    manifest = parse_body(CreateManifest, body)
    refs = [
        ManifestItemRef(orderCode=item.orderCode, shipmentCode=item.shipmentCode)
        for item in manifest.manifestItems
    ]
    if manifest.manifestId is not None:
        code = str(manifest.manifestId)
    else:
        pairs = sorted((r.orderCode, r.shipmentCode or "") for r in refs)
        code = "M" + digest(manifest.locationCode, manifest.transporter, pairs)[:24]
    answer = ManifestResponse(manifestCode=code, manifestItems=refs)
    return Plan(f"manifest:{code}", 200, orjson.dumps(answer.to_wire()))


def plan_handover(body: bytes) -> Plan:
    """`handover:{locationCode}:{digest of the sorted orderCode/shipmentCode pairs}`."""
    handover = parse_body(Handover, body)
    location = handover.locationCode or ""
    items = {(i.orderCode, i.shipmentCode or ""): i for i in handover.handoverItems}
    key = f"handover:{location}:{digest(sorted(items))[:32]}"
    updates = tuple(
        _update(
            order,
            "ORDER_HANDED_OVER",
            {"locationCode": handover.locationCode, **item.to_wire()},
            key,
            order,
            shipment,
        )
        for (order, shipment), item in items.items()
    )
    return Plan(key, 200, SUCCESS_BODY, updates=updates)


def plan_seller_cancel(body: bytes, now: datetime) -> Plan:
    """SELLER_CANCELLED plus one absolute CANCEL command per SKU.

    The key carries a digest of the lines' absolute `cancelledQuantity`, so a repeat is
    answered from memory while a new total is a new change.
    """
    cancel = parse_body(SellerCancellation, body)
    lines = sorted(
        (i.channelSkuCode, i.orderItemCode or "", _quantity(i.cancelledQuantity))
        for i in cancel.orderItems
    )
    lines_digest = digest(lines)[:16]
    key = f"seller-cancel:{cancel.orderCode}:{lines_digest}"
    # Command ids are at most 200 characters; an orderCode near 255 is hashed instead.
    base = (
        key if len(key) <= 160 else f"seller-cancel:{digest(cancel.orderCode)[:32]}:{lines_digest}"
    )
    per_sku: dict[str, int] = {}
    for sku, _, quantity in lines:
        per_sku[sku] = _quantity(per_sku.get(sku, 0) + quantity)
    commands = tuple(
        InventoryCommand(
            commandId=command_id(base, index, "CANCEL"),
            type="CANCEL",
            orderCode=cancel.orderCode,
            locationCode=cancel.locationCode,
            channelSkuCode=sku,
            occurredAt=now,
            cancelledQuantity=quantity,
        )
        for index, (sku, quantity) in enumerate(sorted(per_sku.items()))
    )
    update = _update(cancel.orderCode, "SELLER_CANCELLED", cancel.to_wire(), key)
    return Plan(key, 200, SUCCESS_BODY, updates=(update,), commands=commands)


def plan_return_ack(body: bytes) -> Plan:
    """Keyed by the forward order (order updates are keyed by orderCode) when Increff names it."""
    ack = parse_body(ReturnOrderAcknowledgement, body)
    key = f"return-ack:{ack.returnOrderCode}"
    order_code = ack.forwardOrderCode or ack.returnOrderCode
    update = _update(order_code, "RETURN_ACKNOWLEDGED", ack.to_wire(), key)
    return Plan(key, 200, b"", updates=(update,))


# --- shipping label and invoice -----------------------------------------------------


def _owned(shipment: Mapping[str, Any] | None, order_code: str) -> Mapping[str, Any] | None:
    """The shipment, unless it belongs to another order than the one Increff asked about."""
    if shipment is None:
        return None
    owner = shipment.get("orderCode")
    if owner is not None and owner != order_code:
        log.warning("shipment lookup returned a shipment of another order")
        return None
    return shipment


def plan_label(query: GetShippingLabelQuery, shipment: Mapping[str, Any] | None) -> Plan:
    """Published once per shipment (`label:{shipmentId or orderCode:shipmentCode}`), even
    before the label exists, so the marketplace knows Increff is waiting; answered every time."""
    if query.shipmentId is not None:
        key = f"label:{query.shipmentId}"
    else:
        key = f"label:{query.orderCode}:{query.shipmentCode or ''}"
    status, body = 404, error_body("unknown shipment")
    found = _owned(shipment, query.orderCode)
    if found is not None:
        try:
            label = GetShippingLabelResponse.model_validate(found)
            status, body = 200, orjson.dumps(label.to_wire())
        except ValidationError as exc:
            log.warning("shipment has no usable shipping label: %s", validation_reason(exc))
            body = error_body("shipping label not available")
    payload = {**query.to_wire(), "available": status == 200}
    if found is not None and found.get("shipmentId") is not None:
        payload.setdefault("shipmentId", found["shipmentId"])
    update = _update(query.orderCode, "SHIPPING_LABEL_REQUESTED", payload, key)
    return Plan(key, status, body, updates=(update,))


def plan_invoice(query: GetInvoiceQuery, shipment: Mapping[str, Any] | None) -> Plan:
    """Like `plan_label`, keyed `invoice:{orderCode}:{shipmentCode}`."""
    key = f"invoice:{query.orderCode}:{query.shipmentCode}"
    status, body = 404, error_body("unknown shipment")
    found = _owned(shipment, query.orderCode)
    if found is not None:
        body = error_body("invoice not available")
        if found.get("invoice") is not None:
            try:
                invoice = GetInvoiceResponse.model_validate(found["invoice"])
                status, body = 200, orjson.dumps(invoice.to_wire())
            except ValidationError as exc:
                log.warning("shipment has no usable invoice: %s", validation_reason(exc))
    payload = {**query.to_wire(), "available": status == 200}
    if found is not None and found.get("shipmentId") is not None:
        payload.setdefault("shipmentId", found["shipmentId"])
    update = _update(query.orderCode, "INVOICE_REQUESTED", payload, key)
    return Plan(key, status, body, updates=(update,))
