"""Order events: which Increff call each type makes, and its inventory effect.

One table, `ROUTES`, says everything per `marketplace.orders` event type (DESIGN.md
"Topics"): the Increff body model, the call, the field naming the order (which must
equal the Kafka key), the reservation commands on arrival, and whether Increff's
verdict settles them (ACCEPT on success, RELEASE on rejection). `plan_order` turns one
event into an `OrderPlan` or raises `DecodeError` with the dead-letter reason.

Reservation commands are keyed by inventory key on the internal commands topic, which
is co-partitioned with the stock events. Command ids derive from the order event's
eventId and line, so a replayed order event can never reserve twice (DESIGN.md
"Effectively-once").
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

import orjson
from pydantic import ValidationError

from models.events import (
    CommandType,
    DecodeError,
    InventoryCommand,
    OrderEvent,
    OrderEventType,
    cancel_lines,
    command_id,
    inventory_key,
    order_created_lines,
    validation_reason,
)
from models.increff import (
    AddReturnItems,
    CancelReturnItems,
    CreateReturnOrder,
    CustomerCancellation,
    IncreffModel,
    OutwardOrder,
    UpdateOrderProperties,
    UpdateReturnOrder,
)


class IncreffOrders(Protocol):
    """The Increff calls the router makes (`connectors.increff.IncreffClient` has them)."""

    async def create_order(self, order: OutwardOrder) -> None: ...
    async def cancel_order(self, order_code: str, body: CustomerCancellation) -> None: ...
    async def update_order_properties(
        self, order_code: str, body: UpdateOrderProperties
    ) -> None: ...
    async def create_return(self, body: CreateReturnOrder) -> None: ...
    async def update_return(self, body: UpdateReturnOrder) -> None: ...
    async def add_return_items(self, body: AddReturnItems) -> None: ...
    async def cancel_return_items(self, body: CancelReturnItems) -> None: ...


B = TypeVar("B", bound=IncreffModel)
Effect = Literal["RESERVE", "CANCEL"]


@dataclass(frozen=True, slots=True)
class OrderRoute(Generic[B]):
    body: type[B]
    endpoint: str
    """The client method's name: metric label and log word."""
    call: Callable[[IncreffOrders, str, B], Awaitable[None]]
    code_field: Literal["orderCode", "returnOrderCode"]
    effect: Effect | None
    """Reservation commands sent on arrival."""
    settles: bool
    """Increff's verdict settles the reservation: ACCEPT on success, RELEASE on rejection."""


ROUTES: Mapping[OrderEventType, OrderRoute[Any]] = {
    "ORDER_CREATED": OrderRoute(
        OutwardOrder,
        "create_order",
        lambda api, code, body: api.create_order(body),
        "orderCode",
        "RESERVE",
        settles=True,
    ),
    "CUSTOMER_CANCELLED": OrderRoute(
        CustomerCancellation,
        "cancel_order",
        lambda api, code, body: api.cancel_order(code, body),
        "orderCode",
        "CANCEL",
        settles=False,
    ),
    "ORDER_PROPERTIES_UPDATED": OrderRoute(
        UpdateOrderProperties,
        "update_order_properties",
        lambda api, code, body: api.update_order_properties(code, body),
        "orderCode",
        None,
        settles=False,
    ),
    "RETURN_CREATED": OrderRoute(
        CreateReturnOrder,
        "create_return",
        lambda api, code, body: api.create_return(body),
        "returnOrderCode",
        None,
        settles=False,
    ),
    "RETURN_UPDATED": OrderRoute(
        UpdateReturnOrder,
        "update_return",
        lambda api, code, body: api.update_return(body),
        "returnOrderCode",
        None,
        settles=False,
    ),
    "RETURN_ITEMS_ADDED": OrderRoute(
        AddReturnItems,
        "add_return_items",
        lambda api, code, body: api.add_return_items(body),
        "returnOrderCode",
        None,
        settles=False,
    ),
    "RETURN_ITEMS_CANCELLED": OrderRoute(
        CancelReturnItems,
        "cancel_return_items",
        lambda api, code, body: api.cancel_return_items(body),
        "returnOrderCode",
        None,
        settles=False,
    ),
}


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """What one valid order event does: its route, order code, Increff body, commands."""

    event: OrderEvent
    route: OrderRoute[Any]
    code: str
    body: IncreffModel
    commands: list[InventoryCommand]
    """Reservation commands on arrival (before Increff answers: closes the oversell window)."""
    ordered: dict[str, int] | None
    """ORDER_CREATED: quantity per orderItemCode, remembered to bound later cancellations."""

    def settle(self, command: Literal["ACCEPT", "RELEASE"], at: datetime) -> list[InventoryCommand]:
        """ACCEPT (Increff took the order) or RELEASE (rejected) per SKU of a create."""
        if not self.route.settles or not isinstance(self.body, OutwardOrder):
            return []
        return settle_commands(
            f"{command.lower()}:{self.event.eventId}",
            command,
            self.code,
            self.body.locationCode,
            [item.channelSkuCode for item in self.body.orderItems],
            at,
        )


def _finite(value: object) -> bool:
    """No Infinity or NaN anywhere: pydantic parses those tokens, free-form attributes keep them."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def plan_order(
    event: OrderEvent, key: str | None, ordered: Mapping[str, int] | None = None
) -> OrderPlan:
    """Validate an order event against its route; `DecodeError` says why it never can apply.

    `key` is the Kafka key: it must name the same order as the payload (the order's
    state and ordering live on the key's partition). `ordered` is what the order's
    create asked for (per orderItemCode), when known: a cancellation beyond it is refused.
    """
    route = ROUTES[event.type]
    if not key:
        raise DecodeError(f"missing key: expected the {route.code_field}")
    inner = event.payload.get(route.code_field)
    if inner is None and route.code_field == "orderCode" and not route.settles:
        inner = key  # Increff puts the orderCode of a cancel / update in the URL
    if inner != key:
        shown = _short(str(inner)) if inner is not None else "none"
        raise DecodeError(f"key {_short(key)!r} does not match {route.code_field} {shown!r}")
    try:
        body = route.body.model_validate(event.payload)
    except ValidationError as exc:
        raise DecodeError(f"payload: {validation_reason(exc)}") from exc
    try:
        commands = reservation_commands(event, key)
    except ValidationError as exc:  # e.g. lines of one SKU adding up beyond the bound
        raise DecodeError(f"payload: {validation_reason(exc)}") from exc
    wire = body.to_wire()
    try:
        orjson.dumps(wire)
    except TypeError as exc:  # e.g. an integer beyond 64 bits in custom attributes
        raise DecodeError(f"payload: cannot be sent to Increff ({exc})") from None
    if not _finite(wire):  # orjson would send null in its place
        raise DecodeError("payload: a number is Infinity or NaN, which JSON cannot carry")
    remembered: dict[str, int] | None = None
    if isinstance(body, OutwardOrder):
        remembered = {item.orderItemCode: item.quantity for item in body.orderItems}
    if isinstance(body, CustomerCancellation) and ordered:
        for item in body.orderItems:
            limit = ordered.get(item.orderItemCode)
            if limit is not None and item.cancelledQuantity > limit:
                raise DecodeError(
                    f"cancelledQuantity {item.cancelledQuantity} of orderItemCode "
                    f"{_short(item.orderItemCode)!r} exceeds the ordered {limit}"
                )
    return OrderPlan(event, route, key, body, commands, remembered)


Verdict = Literal["final", "retry", "credentials"]


def increff_verdict(status: int | None, code: str | None, retriable: bool) -> Verdict:
    """What an Increff failure means for the order (DESIGN.md "Orders and callbacks").

    `BAD_DATA` is a verdict on the payload whatever its status; 401/403 are our
    credentials (an outage to fix, counted apart); no answer at all, 5xx and 429 may
    pass; any other 4xx is final.
    """
    if code == "BAD_DATA":
        return "final"
    if status in (401, 403):
        return "credentials"
    if status is None or retriable:
        return "retry"
    return "final"


def _commands(
    event_id: str,
    command: CommandType,
    order_code: str,
    location_code: str,
    per_sku: Iterable[tuple[str, int | None]],
    occurred_at: datetime,
) -> list[InventoryCommand]:
    out: list[InventoryCommand] = []
    for index, (sku, amount) in enumerate(per_sku):
        out.append(
            InventoryCommand(
                commandId=command_id(event_id, index, command),
                type=command,
                orderCode=order_code,
                locationCode=location_code,
                channelSkuCode=sku,
                occurredAt=occurred_at,
                quantity=amount if command == "RESERVE" else None,
                cancelledQuantity=amount if command == "CANCEL" else None,
            )
        )
    return out


def reservation_commands(event: OrderEvent, order_code: str | None) -> list[InventoryCommand]:
    """The inventory effect of an order event on arrival (raises `DecodeError`)."""
    effect = ROUTES[event.type].effect
    if effect == "RESERVE":
        lines = order_created_lines(event.payload)
        return _commands(
            event.eventId,
            "RESERVE",
            lines.orderCode,
            lines.locationCode,
            lines.quantities_by_sku().items(),
            event.occurredAt,
        )
    if effect == "CANCEL":
        cancel = cancel_lines(order_code, event.payload)
        return _commands(
            event.eventId,
            "CANCEL",
            cancel.orderCode,
            cancel.locationCode,
            cancel.cancelled_by_sku().items(),
            event.occurredAt,
        )
    return []


def settle_commands(
    event_id: str,
    command: CommandType,
    order_code: str,
    location_code: str,
    skus: Iterable[str],
    occurred_at: datetime,
) -> list[InventoryCommand]:
    """ACCEPT (Increff took the order) or RELEASE (rejected / seller-cancelled) per SKU."""
    return _commands(
        event_id,
        command,
        order_code,
        location_code,
        ((sku, None) for sku in skus),
        occurred_at,
    )


def command_key(cmd: InventoryCommand) -> bytes:
    return inventory_key(cmd.locationCode, cmd.channelSkuCode).encode("utf-8")
