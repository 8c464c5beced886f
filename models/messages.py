"""Wire models of topic messages that the code builds as plain dicts or reads loosely.

The worker decodes `marketplace.shipments` with `decode_shipment` and writes
`marketplace.order-updates` as dicts; these models say what those messages hold, so the
published JSON Schemas (`models.schemas`), the worker and the client helpers have one
definition (DESIGN.md "Topics").
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)

from models.events import (
    Code,
    DecodeError,
    OrderCreatedLines,
    OrderEventType,
    decode_key,
    invalid,
)
from models.increff import (
    AddReturnItems,
    BoxLabel,
    CancelReturnItems,
    CreateReturnOrder,
    CustomerCancellation,
    GetInvoiceQuery,
    GetInvoiceResponse,
    GetShippingLabelQuery,
    HandoverItem,
    Id,
    IncreffModel,
    OutwardOrder,
    PackOrder,
    ReturnOrderAcknowledgement,
    SellerCancellation,
    Str255,
    Text,
    UpdateOrderProperties,
    UpdateReturnOrder,
)

OrderUpdateType = Literal[
    "ORDER_ACKNOWLEDGED",
    "ORDER_PACKED",
    "SHIPPING_LABEL_REQUESTED",
    "INVOICE_REQUESTED",
    "ORDER_HANDED_OVER",
    "SELLER_CANCELLED",
    "RETURN_ACKNOWLEDGED",
    "INCREFF_REJECTED",
]


# --- marketplace.shipments ------------------------------------------------------------


class Shipment(IncreffModel):
    """One shipment, keyed by `shipmentId`; answers Increff's label and invoice requests.

    The worker indexes a record that matches this model and whose Kafka key is its
    `shipmentId`; anything else is dead-lettered (a key naming another shipment would let
    compaction keep the wrong record). The invoice is served once `invoice` is there.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": ["shippingLabelUrl"]}, {"required": ["shippingLabel"]}]
        }
    )

    shipmentId: Id
    orderCode: Code
    shipmentCode: Str255 | None = None
    awbNumber: Code
    transporter: Code
    shippingLabelUrl: Text | None = None
    shippingLabel: Text | None = Field(default=None, description="base64 document")
    boxLabelDetails: list[BoxLabel] | None = None
    invoice: GetInvoiceResponse | None = None

    @model_validator(mode="after")
    def _label(self) -> Shipment:
        if not (self.shippingLabelUrl or self.shippingLabel):
            raise ValueError("one of shippingLabelUrl and shippingLabel is required")
        return self


def decode_shipment(key: bytes | None, value: bytes) -> Shipment:
    """Validate a `marketplace.shipments` record and check that its key is its `shipmentId`."""
    try:
        shipment = Shipment.model_validate_json(value)
    except ValidationError as exc:
        raise invalid(exc) from exc
    text = decode_key(key, "the shipmentId")
    if text != str(shipment.shipmentId):
        shown = str(shipment.shipmentId)[:100]
        raise DecodeError(
            f"key {text[:100]!r} does not match shipmentId {shown!r}", reason="key_mismatch"
        )
    return shipment


# --- marketplace.order-updates ------------------------------------------------------


class OrderUpdate(BaseModel):
    """`{eventId, type, occurredAt, payload}`, keyed by orderCode.

    `eventId` derives from the request that caused the update, so a re-published update
    (a worker crashed between publishing and remembering) repeats the same id.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    eventId: str = Field(min_length=1)
    type: OrderUpdateType
    occurredAt: AwareDatetime
    payload: dict[str, Any]

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


class OrderAcknowledged(IncreffModel):
    locationCode: Code
    orderCode: Code
    consolidationType: Str255 | None = None


class ShippingLabelRequested(GetShippingLabelQuery):
    """Increff's query, and whether the answer carried a label (`available`)."""

    available: bool


class InvoiceRequested(GetInvoiceQuery):
    """Increff's query, and whether the answer carried an invoice (`available`)."""

    available: bool
    shipmentId: Id | None = None


class OrderHandedOver(HandoverItem):
    """One handed-over shipment of a handover call (one update per order and shipment)."""

    locationCode: Str255 | None = None


class IncreffRejected(BaseModel):
    """A marketplace order event that Increff refused for good, with Increff's error."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    orderCode: Code
    requestType: OrderEventType
    sourceEventId: str = Field(description="eventId of the marketplace.orders event")
    status: StrictInt | None = Field(description="HTTP status of Increff's answer")
    code: str | None = Field(description="Increff's error code, e.g. BAD_DATA")
    message: str
    description: str | None


ORDER_UPDATE_PAYLOADS: dict[str, type[BaseModel]] = {
    "ORDER_ACKNOWLEDGED": OrderAcknowledged,
    "ORDER_PACKED": PackOrder,
    "SHIPPING_LABEL_REQUESTED": ShippingLabelRequested,
    "INVOICE_REQUESTED": InvoiceRequested,
    "ORDER_HANDED_OVER": OrderHandedOver,
    "SELLER_CANCELLED": SellerCancellation,
    "RETURN_ACKNOWLEDGED": ReturnOrderAcknowledgement,
    "INCREFF_REJECTED": IncreffRejected,
}
"""The payload of each order-update type (Increff's callback body where it is one)."""


# --- marketplace.orders ---------------------------------------------------------------

ORDER_EVENT_PAYLOADS: dict[str, tuple[type[BaseModel], ...]] = {
    "ORDER_CREATED": (OutwardOrder, OrderCreatedLines),
    "CUSTOMER_CANCELLED": (CustomerCancellation,),
    "ORDER_PROPERTIES_UPDATED": (UpdateOrderProperties,),
    "RETURN_CREATED": (CreateReturnOrder,),
    "RETURN_UPDATED": (UpdateReturnOrder,),
    "RETURN_ITEMS_ADDED": (AddReturnItems,),
    "RETURN_ITEMS_CANCELLED": (CancelReturnItems,),
}
"""What the payload of each order-event type must satisfy: the Increff body the order
router sends, and for a create also the lines it reserves."""


# --- callback answers -----------------------------------------------------------------


class CallbackErrorBody(BaseModel):
    """Every error a callback answers: a message safe to show warehouse users."""

    model_config = ConfigDict(frozen=True)

    hasError: Literal[True]
    errorMessage: str = Field(max_length=255)
