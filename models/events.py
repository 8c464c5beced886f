"""Wire models of the inventory topics (DESIGN.md "Topics").

Topics carry bytes: values are decoded with ``model_validate_json`` and encoded with
orjson. Every ``decode_*`` helper raises :class:`DecodeError` carrying one short
reason, so an agent needs a single ``except`` to dead-letter bad input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from models.deadletter import DeadLetter as DeadLetter  # re-exported: it lived here
from models.errors import DecodeError as DecodeError  # re-exported for the decoders' callers
from models.errors import DecodeReason

EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=255)]
# eventId (128) + ":" + line index + ":" + command type.
CommandId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _not_a_timestamp_number(value: object) -> object:
    """Pydantic would read a number (or a string of digits) as Unix seconds; the contract
    says ISO-8601 with an offset, and a producer sending epoch millis would land in 55000 AD."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO-8601 date-time with an offset, not a number")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_not_a_timestamp_number)]
"""`occurredAt` of the input topics: an ISO-8601 date-time with an offset."""

StockEventType = Literal["DELTA", "SNAPSHOT"]
OrderEventType = Literal[
    "ORDER_CREATED",
    "CUSTOMER_CANCELLED",
    "ORDER_PROPERTIES_UPDATED",
    "RETURN_CREATED",
    "RETURN_UPDATED",
    "RETURN_ITEMS_ADDED",
    "RETURN_ITEMS_CANCELLED",
]
CommandType = Literal["RESERVE", "CANCEL", "RELEASE", "ACCEPT"]

_MAX_REASON = 500

MAX_QUANTITY = 1_000_000_000
"""The contract's bound on one event's quantity (DESIGN.md "Topics")."""
Quantity = Annotated[StrictInt, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
BoundedCount = Annotated[StrictInt, Field(ge=0, le=MAX_QUANTITY)]
PositiveCount = Annotated[StrictInt, Field(gt=0, le=MAX_QUANTITY)]


class WireModel(BaseModel):
    """Frozen, and tolerant of fields added by newer producers."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def inventory_key(location_code: str, channel_sku_code: str) -> str:
    """The Kafka key of a (location, SKU): stock events, commands and outputs share it."""
    return f"{location_code}:{channel_sku_code}"


def parse_inventory_key(key: str, location_code: str | None = None) -> tuple[str, str]:
    """(locationCode, channelSkuCode) of an inventory key.

    A location code may itself contain ``:``, so the key alone is ambiguous: pass the
    location the key's events named (the inventory state keeps it) and the split is
    exact. Without it the key is split at its first ``:``.
    """
    if location_code is not None and key.startswith(location_code + ":"):
        return location_code, key[len(location_code) + 1 :]
    location, sep, sku = key.partition(":")
    if not sep:
        raise DecodeError(f"inventory key {_short(key)!r} has no ':'", reason="key_mismatch")
    return location, sku


def _reason_of(exc: ValidationError) -> DecodeReason:
    kinds = {err["type"] for err in exc.errors(include_url=False, include_input=False)}
    if "json_invalid" in kinds or "json_type" in kinds:
        return "invalid_json"
    if kinds & {"less_than_equal", "greater_than_equal"}:
        return "out_of_range"
    return "schema"


def invalid(exc: ValidationError, prefix: str = "") -> DecodeError:
    """The `DecodeError` of a failed validation: one short line and its reason."""
    return DecodeError(prefix + validation_reason(exc), reason=_reason_of(exc))


def validation_reason(exc: ValidationError, limit: int = 3) -> str:
    """One short line for a dead letter, e.g. ``quantity: Input should be a valid integer``.

    Input values are left out on purpose: they may be large or carry secrets.
    """
    parts: list[str] = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = ".".join(str(part) for part in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)[:_MAX_REASON]


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def decode_key(key: bytes | None, expected: str = "'locationCode:channelSkuCode'") -> str:
    """The Kafka key as text; a missing or non-UTF-8 key is a `key_mismatch` dead letter."""
    if key is None:
        raise DecodeError(f"missing key: expected {expected}", reason="key_mismatch")
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("key is not valid UTF-8", reason="key_mismatch") from exc


def _key_mismatch(key: str, named: str) -> DecodeError:
    return DecodeError(
        f"key {_short(key)!r} does not match locationCode:channelSkuCode {_short(named)!r}",
        reason="key_mismatch",
    )


# --- warehouse.stock-events -------------------------------------------------------


class StockEvent(WireModel):
    """A change of on-hand (DELTA) or an absolute on-hand (SNAPSHOT) at one key."""

    # The published JSON Schema states the validator below too.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"type": {"const": "SNAPSHOT"}}, "required": ["type"]},
            "then": {"properties": {"quantity": {"minimum": 0}}},
            "else": {"properties": {"basis": {"type": "null"}}},
        }
    )

    eventId: EventId
    type: StockEventType
    locationCode: Code
    channelSkuCode: Code
    quantity: Quantity
    occurredAt: Instant
    basis: Literal["ON_HAND", "AVAILABLE"] | None = None
    reason: str | None = None
    orderCode: Code | None = None

    @model_validator(mode="after")
    def _snapshot_not_negative(self) -> StockEvent:
        if self.type == "SNAPSHOT" and self.quantity < 0:
            raise ValueError("quantity: SNAPSHOT quantity must be >= 0")
        if self.basis is not None and self.type != "SNAPSHOT":
            raise ValueError("basis: only a SNAPSHOT has a basis")
        return self

    @property
    def key(self) -> str:
        return inventory_key(self.locationCode, self.channelSkuCode)


def decode_stock_event(key: bytes | None, value: bytes) -> StockEvent:
    """Validate a stock event and check that the Kafka key names the same (location, SKU).

    A mismatched key would put the event on another key's partition, where its
    state does not live, so it is refused rather than re-routed.
    """
    try:
        event = StockEvent.model_validate_json(value)
    except ValidationError as exc:
        raise invalid(exc) from exc
    text = decode_key(key)
    if text != event.key:
        raise _key_mismatch(text, event.key)
    return event


# --- marketplace.orders -----------------------------------------------------------


class OrderEvent(WireModel):
    """Envelope of ``marketplace.orders``; the payload is an Increff request body."""

    eventId: EventId
    type: OrderEventType
    occurredAt: Instant
    payload: dict[str, Any]


def decode_order_event(value: bytes) -> OrderEvent:
    try:
        return OrderEvent.model_validate_json(value)
    except ValidationError as exc:
        raise invalid(exc) from exc


class OrderLine(WireModel):
    channelSkuCode: Code
    orderItemCode: Code
    quantity: PositiveCount


class OrderCreatedLines(WireModel):
    """The inventory-relevant part of Increff's create-outward-order body."""

    orderCode: Code
    locationCode: Code
    orderItems: Annotated[list[OrderLine], Field(min_length=1)]

    def quantities_by_sku(self) -> dict[str, int]:
        """Quantity per SKU: a reservation is per (order, key), so lines of one SKU add up."""
        out: dict[str, int] = {}
        for line in self.orderItems:
            out[line.channelSkuCode] = out.get(line.channelSkuCode, 0) + line.quantity
        return out


def order_created_lines(payload: Mapping[str, Any]) -> OrderCreatedLines:
    try:
        return OrderCreatedLines.model_validate(payload)
    except ValidationError as exc:
        raise invalid(exc) from exc


class CancelLine(WireModel):
    channelSkuCode: Code
    orderItemCode: Code
    # Absolute: the total cancelled so far, so a replay is harmless.
    cancelledQuantity: BoundedCount


class CustomerCancelLines(WireModel):
    """The inventory-relevant part of Increff's customer-cancel body (plus orderCode)."""

    orderCode: Code
    locationCode: Code
    orderItems: Annotated[list[CancelLine], Field(min_length=1)]

    def cancelled_by_sku(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.orderItems:
            out[line.channelSkuCode] = out.get(line.channelSkuCode, 0) + line.cancelledQuantity
        return out


def cancel_lines(order_code: str | None, payload: Mapping[str, Any]) -> CustomerCancelLines:
    """Read a cancel body; Increff puts orderCode in the URL, DESIGN puts it in the payload.

    ``order_code`` fills a missing ``payload["orderCode"]``; when both are given they
    must agree, since a mismatch means the event is about two orders at once.
    """
    data = dict(payload)
    if order_code is not None:
        inner = data.setdefault("orderCode", order_code)
        if inner != order_code:
            raise DecodeError(
                f"orderCode {_short(str(inner))!r} in payload differs from {_short(order_code)!r}",
                reason="key_mismatch",
            )
    try:
        return CustomerCancelLines.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from exc


# --- internal inventory commands --------------------------------------------------


def command_id(event_id: str, line_index: int, command_type: CommandType) -> str:
    """Deterministic id, so a replayed order event can never reserve (or cancel) twice."""
    return f"{event_id}:{line_index}:{command_type}"


class InventoryCommand(WireModel):
    """Reserve/cancel/release/accept an order's reservation at one key.

    Sent by the order router keyed by the inventory key, so it is co-partitioned with
    stock events and applied by the same agent to the same state.
    """

    # The published JSON Schema states the validator below too.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": "RESERVE"}}, "required": ["type"]},
                    "then": {
                        "properties": {"quantity": {"type": "integer"}},
                        "required": ["quantity"],
                    },
                },
                {
                    "if": {"properties": {"type": {"const": "CANCEL"}}, "required": ["type"]},
                    "then": {
                        "properties": {"cancelledQuantity": {"type": "integer"}},
                        "required": ["cancelledQuantity"],
                    },
                },
            ]
        }
    )

    commandId: CommandId
    type: CommandType
    orderCode: Code
    locationCode: Code
    channelSkuCode: Code
    occurredAt: Instant
    quantity: PositiveCount | None = None
    cancelledQuantity: BoundedCount | None = None

    @model_validator(mode="after")
    def _fields_for_type(self) -> InventoryCommand:
        if self.type == "RESERVE" and self.quantity is None:
            raise ValueError("quantity: required for RESERVE")
        if self.type == "CANCEL" and self.cancelledQuantity is None:
            raise ValueError("cancelledQuantity: required for CANCEL")
        return self

    @property
    def key(self) -> str:
        return inventory_key(self.locationCode, self.channelSkuCode)

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))


def decode_command(key: bytes | None, value: bytes) -> InventoryCommand:
    try:
        cmd = InventoryCommand.model_validate_json(value)
    except ValidationError as exc:
        raise invalid(exc) from exc
    text = decode_key(key)
    if text != cmd.key:
        raise _key_mismatch(text, cmd.key)
    return cmd


# --- outputs ----------------------------------------------------------------------


class InventoryUpdate(WireModel):
    """Absolute, versioned ATP of one key (``marketplace.inventory``)."""

    locationCode: Code
    channelSkuCode: Code
    quantity: NonNegativeInt
    onHand: StrictInt
    reserved: NonNegativeInt
    version: NonNegativeInt
    asOf: AwareDatetime
    publishedAt: AwareDatetime

    @property
    def key(self) -> str:
        return inventory_key(self.locationCode, self.channelSkuCode)

    def encode(self) -> bytes:
        # The fields are flat (no nested models): ``__dict__`` is what ``model_dump()``
        # returns, in field order, at a quarter of the cost (one per publication).
        return orjson.dumps(self.__dict__)


def decode_inventory_update(value: bytes) -> InventoryUpdate:
    try:
        return InventoryUpdate.model_validate_json(value)
    except ValidationError as exc:
        raise invalid(exc) from exc
