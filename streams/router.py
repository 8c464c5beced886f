"""The order router's I/O for one order event: commands to Kafka, the call to Increff.

Decisions come from `models.orders` (which call, which commands, what an error
means); `streams.orders` decides when an event is tried, parked or dead-lettered.
One `attempt` sends the plan to Increff (the client retries in-line per its
`Backoff`), then settles: ACCEPT on a created order, or `INCREFF_REJECTED` and
RELEASE on a final answer. An outage comes back as `Attempt.retry` for parking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.errors import ConnectorError, IncreffError
from models.events import InventoryCommand
from models.messages import OrderUpdate
from models.orders import IncreffOrders, OrderPlan, increff_verdict
from streams.metrics import Metrics

log = logging.getLogger(__name__)

SendCommands = Callable[[list[InventoryCommand]], Awaitable[None]]
"""Send and wait for the broker's acknowledgement."""
PublishUpdate = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
"""(orderCode, update type, eventId, payload) → `marketplace.order-updates`, acknowledged."""


def update_message(event_id: str, update_type: str, payload: dict[str, Any]) -> bytes:
    """A `marketplace.order-updates` value: the one `OrderUpdate` model (DESIGN.md)."""
    update = OrderUpdate.model_validate(
        {"eventId": event_id, "type": update_type, "occurredAt": datetime.now(UTC)}
        | {"payload": payload}
    )
    return update.encode()


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one attempt ended: done (accepted or rejected), or to retry later."""

    retry: bool
    error: str = ""
    retry_after: float | None = None

    @classmethod
    def later(cls, error: str, retry_after: float | None = None) -> Attempt:
        return cls(True, error, retry_after)


DONE = Attempt(False)


class OrderRouter:
    def __init__(
        self,
        *,
        increff: IncreffOrders | None,
        send_commands: SendCommands,
        publish_update: PublishUpdate,
        metrics: Metrics,
        send_timeout_s: float = 10.0,
    ) -> None:
        self.increff = increff
        self._send_commands = send_commands
        self._publish_update = publish_update
        self.metrics = metrics
        self.send_timeout_s = send_timeout_s

    async def attempt(self, plan: OrderPlan, *, reserve: bool = False) -> Attempt:
        """Send the plan to Increff and settle it; with `reserve`, its reservation
        commands too, while Increff answers (acknowledged before any settling command,
        so a RELEASE never precedes its RESERVE). Kafka failures raise."""
        call = self._call(plan)
        if reserve and plan.commands:
            sent, error = await asyncio.gather(
                self.send(plan.commands), call, return_exceptions=True
            )
            if isinstance(sent, BaseException):
                raise sent
            if isinstance(error, BaseException) and not isinstance(error, ConnectorError):
                raise error
        else:
            error = await call
        if error is None:
            await self.send(plan.settle("ACCEPT", datetime.now(UTC)))
            return DONE
        return await self._failed(plan, error)

    async def _call(self, plan: OrderPlan) -> ConnectorError | None:
        if self.increff is None:
            return None
        try:
            await plan.route.call(self.increff, plan.code, plan.body)
        except ConnectorError as exc:
            return exc
        return None

    async def _failed(self, plan: OrderPlan, exc: ConnectorError) -> Attempt:
        code = exc.code if isinstance(exc, IncreffError) else None
        verdict = increff_verdict(exc.status, code, exc.retriable)
        if verdict == "final":
            await self._reject(plan, exc)
            return DONE
        if verdict == "credentials":
            self.metrics.increff_auth_failures.inc()
            log.error(
                "Increff refused our credentials (HTTP %s) for %s %s: check "
                "INVSYNC_INCREFF_USERNAME / _PASSWORD / _DOMAIN; the order waits",
                exc.status,
                plan.event.type,
                plan.code,
            )
        else:
            self.metrics.increff_retries.labels(plan.route.endpoint).inc()
        return Attempt.later(str(exc), exc.retry_after)

    async def _reject(self, plan: OrderPlan, error: ConnectorError) -> None:
        code = error.code if isinstance(error, IncreffError) else None
        description = error.description if isinstance(error, IncreffError) else None
        event = plan.event
        log.warning("Increff rejected %s %s: %s", event.type, plan.code, error)
        self.metrics.increff_rejections.labels(event.type).inc()
        payload = {
            "orderCode": plan.code,
            "requestType": event.type,
            "sourceEventId": event.eventId,
            "status": error.status,
            "code": code,
            "message": error.message,
            "description": description,
        }
        await self._bounded(
            self._publish_update(
                plan.code, "INCREFF_REJECTED", f"rejected:{event.eventId}", payload
            )
        )
        await self.send(plan.settle("RELEASE", datetime.now(UTC)))

    async def send(self, commands: list[InventoryCommand]) -> None:
        """Commands, acknowledged by the broker within `send_timeout_s` (or raises)."""
        if commands:
            await self._bounded(self._send_commands(commands))

    async def _bounded(self, send: Awaitable[None]) -> None:
        """Wait for the broker at most `send_timeout_s` (TimeoutError: the event is retried).

        Shielded: a record already handed to the producer is never cancelled under it.
        """
        await asyncio.wait_for(asyncio.shield(send), self.send_timeout_s)
