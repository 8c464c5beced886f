"""Order events → reservation commands for the inventory state.

`marketplace.orders` is keyed by orderCode; reservations live with the stock of each
(location, SKU), so every line becomes a command keyed by its inventory key on the
internal commands topic, which is co-partitioned with the stock events. Command ids
derive from the order event's eventId and line, so a replayed order event can never
reserve twice (DESIGN.md "Effectively-once").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from models.events import (
    CommandType,
    InventoryCommand,
    OrderEvent,
    cancel_lines,
    command_id,
    inventory_key,
    order_created_lines,
)


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
    """The inventory effect of an order event (raises `DecodeError` on a bad payload)."""
    if event.type == "ORDER_CREATED":
        lines = order_created_lines(event.payload)
        return _commands(
            event.eventId,
            "RESERVE",
            lines.orderCode,
            lines.locationCode,
            lines.quantities_by_sku().items(),
            event.occurredAt,
        )
    if event.type == "CUSTOMER_CANCELLED":
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
