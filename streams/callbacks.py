"""Increff's callbacks (the marketplace Client URLs), free of any web framework.

A web view builds a `CallbackRequest`, awaits `CallbackHandler.handle(route, request)` and
writes the `CallbackResponse` it always gets back. Side effects go through
`CallbackPorts` (Kafka topics and Faust tables in production). The rules are in
DESIGN.md "Orders and callbacks"; what each route reads and publishes is in
`callbacks_routes`.

Answers: 401 wrong or missing auth header, 404 unknown route (or shipment), 405 wrong
method, 413 body too large, 400 bad JSON or schema, 500 anything unexpected; errors are
`{"hasError": true, "errorMessage": ...}` and never carry header values or input.
Repeats (same idempotency key) get the remembered answer and publish nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from pydantic import SecretStr

from models.callbacks import (
    BadRequest,
    CallbackError,
    NotFound,
    Plan,
    error_body,
    parse_query,
    plan_acknowledgements,
    plan_handover,
    plan_inventory,
    plan_invoice,
    plan_label,
    plan_manifest,
    plan_pack,
    plan_return_ack,
    plan_seller_cancel,
)
from models.events import InventoryCommand, StockEvent
from models.increff import GetInvoiceQuery, GetShippingLabelQuery
from streams.metrics import Metrics

__all__ = [
    "ACKNOWLEDGE",
    "HANDOVER",
    "INVENTORY",
    "INVOICE",
    "MANIFESTS",
    "PACK",
    "RETURNS_ACKNOWLEDGE",
    "ROUTES",
    "SELLER_CANCEL",
    "SHIPPING_LABEL",
    "BadRequest",
    "CallbackError",
    "CallbackHandler",
    "CallbackPorts",
    "CallbackRequest",
    "CallbackResponse",
    "NotFound",
]

log = logging.getLogger(__name__)

ACKNOWLEDGE = "PUT /increff/orders/acknowledge"
PACK = "POST /increff/orders/pack"
INVOICE = "GET /increff/orders/invoice"
SHIPPING_LABEL = "GET /increff/orders/shipping-label"
MANIFESTS = "POST /increff/manifests"
HANDOVER = "POST /increff/orders/handover"
SELLER_CANCEL = "PUT /increff/orders/seller-cancel"
INVENTORY = "PUT /increff/inventory"
RETURNS_ACKNOWLEDGE = "PUT /increff/returns/acknowledge"
ROUTES: tuple[str, ...] = (
    ACKNOWLEDGE,
    PACK,
    INVOICE,
    SHIPPING_LABEL,
    MANIFESTS,
    HANDOVER,
    SELLER_CANCEL,
    INVENTORY,
    RETURNS_ACKNOWLEDGE,
)
"""Every route served, as `"{METHOD} {path}"` (DESIGN.md path table)."""


@dataclass(frozen=True)
class CallbackRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class CallbackResponse:
    """`body` is JSON, or empty for a plain 200."""

    status: int
    body: bytes


class CallbackPorts(Protocol):
    """The side effects of callbacks (Kafka topics and Faust tables in production)."""

    async def publish_update(
        self, order_code: str, update_type: str, payload: dict[str, Any], *, event_id: str
    ) -> None:
        """To `marketplace.order-updates` as `{eventId, type, occurredAt, payload}`.

        `event_id` is deterministic (derived from the idempotency key): a retry after a
        crash publishes the same id again, for consumers to deduplicate.
        """

    async def publish_snapshots(self, events: list[StockEvent]) -> None:
        """To `warehouse.stock-events`, keyed by each event's inventory key."""

    async def send_commands(self, commands: list[InventoryCommand]) -> None:
        """Reservation commands, keyed by each command's inventory key."""

    async def find_shipment(
        self, *, shipment_id: str | None, order_code: str | None, shipment_code: str | None
    ) -> dict[str, Any] | None:
        """A `marketplace.shipments` value, or None when no shipment matches."""

    async def recall(self, idem_key: str) -> CallbackResponse | None:
        """The answer remembered for `idem_key`, if any."""

    async def remember(self, idem_key: str, response: CallbackResponse) -> None:
        """Keep the answer for `idem_key`; called only after its effects were sent."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _error(status: int, message: str) -> CallbackResponse:
    return CallbackResponse(status, error_body(message))


@dataclass
class _KeyLocks:
    """Serializes concurrent requests with the same idempotency key within this worker."""

    _held: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._held.get(key, (asyncio.Lock(), 0))
        self._held[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[key]
            if users <= 1:
                del self._held[key]
            else:
                self._held[key] = (lock, users - 1)


Route = Callable[[CallbackRequest], Awaitable[CallbackResponse]]


class CallbackHandler:
    """Checks, routes and answers Increff's callbacks; never raises (except cancellation)."""

    def __init__(
        self,
        ports: CallbackPorts,
        *,
        required_headers: Mapping[str, SecretStr],
        max_bytes: int,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = _utcnow,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._ports = ports
        # Header names are case-insensitive in HTTP; values are compared exactly.
        self._required = [
            (name.lower(), secret.get_secret_value().encode("utf-8"))
            for name, secret in required_headers.items()
        ]
        self._max_bytes = max_bytes
        self._metrics = metrics
        self._clock = clock
        self._timer = timer
        self._locks = _KeyLocks()
        self._routes: dict[str, Route] = {
            ACKNOWLEDGE: self._acknowledge,
            PACK: self._pack,
            INVOICE: self._invoice,
            SHIPPING_LABEL: self._shipping_label,
            MANIFESTS: self._manifest,
            HANDOVER: self._handover,
            SELLER_CANCEL: self._seller_cancel,
            INVENTORY: self._inventory,
            RETURNS_ACKNOWLEDGE: self._return_ack,
        }

    async def handle(self, route: str, request: CallbackRequest) -> CallbackResponse:
        started = self._timer()
        run = self._routes.get(route)
        if run is None:
            path, response = "unknown", _error(404, "unknown route")
        else:
            path, response = route.partition(" ")[2], await self._run(route, run, request)
        if self._metrics is not None:
            self._metrics.callbacks.labels(path, str(response.status)).inc()
            self._metrics.callback_latency.labels(path).observe(self._timer() - started)
        return response

    async def _run(self, route: str, run: Route, request: CallbackRequest) -> CallbackResponse:
        try:
            self._check(route, request)
            return await run(request)
        except CallbackError as exc:
            return _error(exc.status, str(exc))
        except Exception:
            log.exception("Increff callback %s failed", route)
            return _error(500, "internal error")

    def _check(self, route: str, request: CallbackRequest) -> None:
        if request.method.upper() != route.partition(" ")[0]:
            raise CallbackError("method not allowed", status=405)
        if not self._authorized(request.headers):
            raise CallbackError("unauthorized", status=401)
        if len(request.body) > self._max_bytes:
            raise CallbackError(f"body larger than {self._max_bytes} bytes", status=413)

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        given = {name.lower(): value for name, value in headers.items()}
        ok = True
        for name, expected in self._required:
            value = given.get(name)
            # Compare every header, present or not, so timing says nothing about which failed.
            same = hmac.compare_digest((value or "").encode("utf-8"), expected)
            ok = ok and value is not None and same
        return ok

    async def _once(self, plan: Plan) -> CallbackResponse:
        """Send the plan's effects the first time its key is seen; else the remembered answer.

        Effects go out before the answer is remembered: a crash in between makes the
        retry send them again under the same ids, never lose them.
        """
        async with self._locks.hold(plan.key):
            prior = await self._ports.recall(plan.key)
            if prior is not None:
                return prior
            if plan.commands:
                await self._ports.send_commands(list(plan.commands))
            for update in plan.updates:
                await self._ports.publish_update(
                    update.order_code, update.type, update.payload, event_id=update.event_id
                )
            response = CallbackResponse(plan.status, plan.body)
            await self._ports.remember(plan.key, response)
            return response

    # --- routes -------------------------------------------------------------------

    async def _acknowledge(self, request: CallbackRequest) -> CallbackResponse:
        plans, answer = plan_acknowledgements(request.body)
        for plan in plans:
            await self._once(plan)
        return CallbackResponse(200, answer)

    async def _pack(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(plan_pack(request.body))

    async def _manifest(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(plan_manifest(request.body))

    async def _handover(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(plan_handover(request.body))

    async def _seller_cancel(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(plan_seller_cancel(request.body, self._clock()))

    async def _return_ack(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(plan_return_ack(request.body))

    async def _shipping_label(self, request: CallbackRequest) -> CallbackResponse:
        query = parse_query(GetShippingLabelQuery, request.query)
        shipment = await self._ports.find_shipment(
            shipment_id=None if query.shipmentId is None else str(query.shipmentId),
            order_code=query.orderCode,
            shipment_code=query.shipmentCode,
        )
        plan = plan_label(query, shipment)
        await self._once(plan)  # publishes once per shipment; every call gets a fresh answer
        return CallbackResponse(plan.status, plan.body)

    async def _invoice(self, request: CallbackRequest) -> CallbackResponse:
        query = parse_query(GetInvoiceQuery, request.query)
        shipment = await self._ports.find_shipment(
            shipment_id=None, order_code=query.orderCode, shipment_code=query.shipmentCode
        )
        plan = plan_invoice(query, shipment)
        await self._once(plan)
        return CallbackResponse(plan.status, plan.body)

    async def _inventory(self, request: CallbackRequest) -> CallbackResponse:
        events, answer = plan_inventory(request.body, self._clock())
        if events:
            await self._ports.publish_snapshots(events)
        return CallbackResponse(200, orjson.dumps(answer.to_wire()))
