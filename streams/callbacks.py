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

The web view calls `admit` on the request head before it reads any body byte, and
`handle` only with the whole body; large bodies are parsed in a thread so a
500,000-element array does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson
from pydantic import SecretStr

from models.atp import atp_key, plan_consolidated_inventory, plan_inventory
from models.callbacks import (
    BadRequest,
    CallbackError,
    NotFound,
    Plan,
    error_body,
    parse_query,
    plan_acknowledgements,
    plan_handover,
    plan_invoice,
    plan_label,
    plan_manifest,
    plan_pack,
    plan_return_ack,
    plan_seller_cancel,
)
from models.events import InventoryCommand, StockEvent
from models.increff import GetInvoiceQuery, GetShippingLabelQuery, IncreffModel
from streams.auth import HeaderAuth
from streams.metrics import Metrics

__all__ = [
    "ACKNOWLEDGE",
    "CONSOLIDATED_INVENTORY",
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

T = TypeVar("T")

OFF_LOOP_BYTES = 64 * 1024
"""Bodies larger than this are parsed in a thread (the loop keeps answering)."""
PUBLISH_CONCURRENCY = 500
"""Order updates of one callback in flight at once (a 1 MiB acknowledgement is ~18,000)."""

ACKNOWLEDGE = "PUT /increff/orders/acknowledge"
PACK = "POST /increff/orders/pack"
INVOICE = "GET /increff/orders/invoice"
SHIPPING_LABEL = "GET /increff/orders/shipping-label"
MANIFESTS = "POST /increff/manifests"
HANDOVER = "POST /increff/orders/handover"
SELLER_CANCEL = "PUT /increff/orders/seller-cancel"
INVENTORY = "PUT /increff/inventory"
CONSOLIDATED_INVENTORY = "PUT /increff/inventory/consolidated"
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
    CONSOLIDATED_INVENTORY,
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
    """`body` is JSON, or empty for a plain 200; `at`: when it was remembered (epoch s)."""

    status: int
    body: bytes
    at: float = field(default=0.0, compare=False)


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

    @asynccontextmanager
    async def hold_all(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """Hold every key's lock, taken in sorted order so two batches never deadlock."""
        async with AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self.hold(key))
            yield


Route = Callable[[CallbackRequest], Awaitable[CallbackResponse]]
AtpPlan = Callable[[bytes, datetime, float], tuple[list[StockEvent], IncreffModel]]


class CallbackHandler:
    """Checks, routes and answers Increff's callbacks; never raises (except cancellation)."""

    def __init__(
        self,
        ports: CallbackPorts,
        *,
        required_headers: Sequence[Mapping[str, SecretStr]],
        max_bytes: int,
        metrics: Metrics | None = None,
        atp_window_s: float = 300.0,
        clock: Callable[[], datetime] = _utcnow,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._ports = ports
        self._authorized = HeaderAuth(required_headers)  # any one set passes; none: open
        self._max_bytes = max_bytes
        self._atp_window_s = atp_window_s
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
            INVENTORY: functools.partial(self._atp_push, plan=plan_inventory, kind="atp"),
            CONSOLIDATED_INVENTORY: functools.partial(
                self._atp_push, plan=plan_consolidated_inventory, kind="atp-consolidated"
            ),
            RETURNS_ACKNOWLEDGE: self._return_ack,
        }

    def admit(self, route: str, head: CallbackRequest) -> CallbackResponse | None:
        """The refusal (404, 405, 401) a request gets from its head alone, if any."""
        if route not in self._routes:
            return self.refuse(route, 404, "unknown route")
        try:
            self._check(route, head)
        except CallbackError as exc:
            return self.refuse(route, exc.status, str(exc))
        return None

    def refuse(self, route: str, status: int, message: str) -> CallbackResponse:
        """An error answer given without running the route (counted like any other)."""
        response = _error(status, message)
        self._count(route, response, 0.0)
        return response

    async def handle(self, route: str, request: CallbackRequest) -> CallbackResponse:
        started = self._timer()
        run = self._routes.get(route)
        if run is None:
            response = _error(404, "unknown route")
        else:
            response = await self._run(route, run, request)
        self._count(route, response, self._timer() - started)
        return response

    def _count(self, route: str, response: CallbackResponse, seconds: float) -> None:
        if self._metrics is None:
            return
        path = route.partition(" ")[2] if route in self._routes else "unknown"
        self._metrics.callbacks.labels(path, str(response.status)).inc()
        self._metrics.callback_latency.labels(path).observe(seconds)

    async def _parse(self, plan: Callable[..., T], body: bytes, *args: Any) -> T:
        """Run a pure `plan_*` on the body; in a thread when the body is large."""
        if len(body) <= OFF_LOOP_BYTES:
            return plan(body, *args)
        return await asyncio.to_thread(functools.partial(plan, body, *args))

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

    async def _once(self, plan: Plan) -> CallbackResponse:
        """Send the plan's effects the first time its key is seen; else the remembered answer.

        Effects go out before the answer is remembered: a crash in between makes the
        retry send them again under the same ids, never lose them.
        """
        return (await self._once_each([plan]))[0]

    async def _once_each(self, plans: Sequence[Plan]) -> list[CallbackResponse]:
        """`_once` for many plans at a time: effects of new keys sent concurrently, each
        key remembered once its own effects are out; the first failure raises (500) after
        the others finished, so a retry re-sends only what was not remembered."""
        async with self._locks.hold_all([p.key for p in plans]):
            answers: dict[str, CallbackResponse] = {}
            fresh: dict[str, Plan] = {}
            for plan in plans:
                prior = await self._ports.recall(plan.key)
                if prior is not None:
                    answers[plan.key] = prior
                else:
                    fresh.setdefault(plan.key, plan)
            limit = asyncio.Semaphore(PUBLISH_CONCURRENCY)

            async def effects(plan: Plan) -> None:
                async with limit:
                    if plan.commands:
                        await self._ports.send_commands(list(plan.commands))
                    for update in plan.updates:
                        await self._ports.publish_update(
                            update.order_code,
                            update.type,
                            update.payload,
                            event_id=update.event_id,
                        )
                    response = CallbackResponse(plan.status, plan.body, self._now())
                    await self._ports.remember(plan.key, response)
                    answers[plan.key] = response

            results = await asyncio.gather(
                *(effects(p) for p in fresh.values()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return [answers[p.key] for p in plans]

    # --- routes -------------------------------------------------------------------

    async def _acknowledge(self, request: CallbackRequest) -> CallbackResponse:
        plans, answer = await self._parse(plan_acknowledgements, request.body)
        await self._once_each(plans)
        return CallbackResponse(200, answer)

    async def _pack(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(await self._parse(plan_pack, request.body))

    async def _manifest(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(await self._parse(plan_manifest, request.body))

    async def _handover(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(await self._parse(plan_handover, request.body))

    async def _seller_cancel(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(await self._parse(plan_seller_cancel, request.body, self._clock()))

    async def _return_ack(self, request: CallbackRequest) -> CallbackResponse:
        return await self._once(await self._parse(plan_return_ack, request.body))

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

    async def _atp_push(
        self, request: CallbackRequest, *, plan: AtpPlan, kind: str
    ) -> CallbackResponse:
        """Both ATP pushes. A retry (same bytes within the window) gets the remembered
        answer; see `models.atp._snapshots` for why a later identical push applies again."""
        key = atp_key(request.body, kind)
        async with self._locks.hold(key):
            prior = await self._ports.recall(key)
            now = self._clock()
            if prior is not None and now.timestamp() - prior.at < self._atp_window_s:
                return prior
            events, answer = await self._parse(plan, request.body, now, self._atp_window_s)
            if events:
                await self._ports.publish_snapshots(events)
            response = CallbackResponse(200, orjson.dumps(answer.to_wire()), now.timestamp())
            await self._ports.remember(key, response)
            return response

    def _now(self) -> float:
        return self._clock().timestamp()
