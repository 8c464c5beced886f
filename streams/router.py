"""The order router: `marketplace.orders` → reservations and Increff's Standard APIs.

Per order (the topic is keyed by orderCode) events are handled one at a time, in order:
1. the Increff body is validated (a bad payload is dead-lettered, nothing reserved);
2. the reservation commands go to the inventory state at once (closing the oversell
   window before Increff even answers);
3. Increff is called. Success on create sends ACCEPT, so a later AVAILABLE SNAPSHOT
   (Increff's ATP push) absorbs the reservation. A final 4xx publishes
   `INCREFF_REJECTED` and releases the order's reservations. While Increff is
   unreachable (network, 5xx, 429, or our credentials refused) the event waits and is
   retried with bounded backoff: nothing is lost, and create/cancel are idempotent on
   Increff's side, so nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from connectors.errors import ConnectorError, IncreffError
from connectors.increff import IncreffClient
from models.events import (
    DecodeError,
    InventoryCommand,
    OrderEvent,
    validation_reason,
)
from models.increff import (
    CancelReturnItems,
    CreateReturnOrder,
    CustomerCancellation,
    IncreffModel,
    OutwardOrder,
    UpdateReturnOrder,
)
from models.orders import reservation_commands, settle_commands
from streams.metrics import Metrics

log = logging.getLogger(__name__)

SendCommands = Callable[[list[InventoryCommand]], Awaitable[None]]
PublishUpdate = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
"""(orderCode, update type, eventId, payload) → `marketplace.order-updates`."""

_BODIES: dict[str, type[IncreffModel]] = {
    "ORDER_CREATED": OutwardOrder,
    "CUSTOMER_CANCELLED": CustomerCancellation,
    "RETURN_CREATED": CreateReturnOrder,
    "RETURN_UPDATED": UpdateReturnOrder,
    "RETURN_ITEMS_CANCELLED": CancelReturnItems,
}

_ENDPOINTS = {
    "ORDER_CREATED": "create_order",
    "CUSTOMER_CANCELLED": "cancel_order",
    "RETURN_CREATED": "create_return",
    "RETURN_UPDATED": "update_return",
    "RETURN_ITEMS_CANCELLED": "cancel_return_items",
}

# Our credentials refused: an outage to fix, not a verdict on the order.
_AUTH_STATUSES = {401, 403}


def order_code_of(event: OrderEvent, key: str | None) -> str:
    for field in ("orderCode", "returnOrderCode", "forwardOrderCode"):
        value = event.payload.get(field)
        if isinstance(value, str) and value:
            return value
    if key:
        return key
    raise DecodeError("no orderCode in the payload or the message key")


def update_message(event_id: str, update_type: str, payload: dict[str, Any]) -> bytes:
    """A `marketplace.order-updates` value (DESIGN.md)."""
    return orjson.dumps(
        {
            "eventId": event_id,
            "type": update_type,
            "occurredAt": datetime.now(UTC).isoformat(),
            "payload": payload,
        }
    )


class OrderRouter:
    def __init__(
        self,
        *,
        increff: IncreffClient | None,
        send_commands: SendCommands,
        publish_update: PublishUpdate,
        metrics: Metrics,
        outage_base_s: float = 0.5,
        outage_max_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.increff = increff
        self._send_commands = send_commands
        self._publish_update = publish_update
        self.metrics = metrics
        self.outage_base_s = outage_base_s
        self.outage_max_s = outage_max_s
        self._sleep = sleep

    async def handle(self, event: OrderEvent, key: str | None) -> None:
        """Route one order event; raises `DecodeError` for input that can never apply."""
        body = self._increff_body(event)
        order_code = order_code_of(event, key)
        self.metrics.order_events.labels(event.type).inc()
        await self._send_commands(reservation_commands(event, order_code))
        if self.increff is None or body is None:
            return
        error = await self._call_until_final(event, order_code, body)
        if error is None:
            if isinstance(body, OutwardOrder):
                await self._send_commands(
                    settle_commands(
                        f"accept:{event.eventId}",
                        "ACCEPT",
                        order_code,
                        body.locationCode,
                        [item.channelSkuCode for item in body.orderItems],
                        datetime.now(UTC),
                    )
                )
            return
        await self._reject(event, order_code, body, error)

    def _increff_body(self, event: OrderEvent) -> IncreffModel | None:
        model = _BODIES.get(event.type)
        if model is None:
            return None
        try:
            return model.model_validate(event.payload)
        except ValidationError as exc:
            raise DecodeError(f"payload: {validation_reason(exc)}") from exc

    async def _call(self, event: OrderEvent, order_code: str, body: IncreffModel) -> None:
        assert self.increff is not None
        client = self.increff
        if isinstance(body, OutwardOrder):
            await client.create_order(body)
        elif isinstance(body, CustomerCancellation):
            await client.cancel_order(order_code, body)
        elif isinstance(body, CreateReturnOrder):
            await client.create_return(body)
        elif isinstance(body, UpdateReturnOrder):
            await client.update_return(body)
        elif isinstance(body, CancelReturnItems):
            await client.cancel_return_items(body)

    async def _call_until_final(
        self, event: OrderEvent, order_code: str, body: IncreffModel
    ) -> ConnectorError | None:
        """None on success; the final error on a 4xx verdict. Waits out outages."""
        attempt = 0
        while True:
            try:
                await self._call(event, order_code, body)
            except ConnectorError as exc:
                outage = exc.retriable or exc.status in _AUTH_STATUSES
                if not outage:
                    return exc
                attempt += 1
                delay = min(self.outage_max_s, self.outage_base_s * 2 ** min(attempt, 16))
                delay = random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not crypto
                self.metrics.increff_retries.labels(_ENDPOINTS[event.type]).inc()
                log.warning(
                    "Increff unavailable for %s %s (%s); retrying in %.1fs",
                    event.type,
                    order_code,
                    exc,
                    delay,
                )
                await self._sleep(delay)
            else:
                return None

    async def _reject(
        self, event: OrderEvent, order_code: str, body: IncreffModel, error: ConnectorError
    ) -> None:
        code = error.code if isinstance(error, IncreffError) else None
        description = error.description if isinstance(error, IncreffError) else None
        log.warning(
            "Increff rejected %s %s: %s",
            event.type,
            order_code,
            error,
            extra={"order_code": order_code},
        )
        self.metrics.increff_rejections.labels(event.type).inc()
        payload = {
            "orderCode": order_code,
            "requestType": event.type,
            "sourceEventId": event.eventId,
            "status": error.status,
            "code": code,
            "message": error.message,
            "description": description,
        }
        await self._publish_update(
            order_code, "INCREFF_REJECTED", f"rejected:{event.eventId}", payload
        )
        if isinstance(body, OutwardOrder):
            await self._send_commands(
                settle_commands(
                    f"release:{event.eventId}",
                    "RELEASE",
                    order_code,
                    body.locationCode,
                    [item.channelSkuCode for item in body.orderItems],
                    datetime.now(UTC),
                )
            )
