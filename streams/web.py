"""Increff's callbacks on the worker's web server, backed by Kafka and global tables.

Any worker may receive any callback, so the tables behind them are global: the
shipments table reads `marketplace.shipments` (compacted; it is the table's changelog)
and the callback-results table remembers each answered request, so a repeat gets the
same answer from whichever worker it reaches. Both are bounded and the shipments are
indexed by (orderCode, shipmentCode): see streams/shipments.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import faust
import orjson
from aiohttp import web

from models.errors import DecodeError
from models.events import InventoryCommand, StockEvent
from models.messages import decode_shipment
from streams.callbacks import (
    ROUTES,
    CallbackHandler,
    CallbackRequest,
    CallbackResponse,
)
from streams.httpserver import BodyRefused, defer_expect, harden, read_body
from streams.metrics import Metrics
from streams.settings import Settings, require_callback_auth
from streams.shipments import ShipmentIndex, prune, tombstone, watch_shipments
from streams.state import StateTable, default_partition

log = logging.getLogger(__name__)

SendCommands = Callable[[list[InventoryCommand]], Awaitable[None]]
PublishUpdate = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
SendRaw = Callable[[bytes, bytes], Awaitable[Any]]


class KafkaCallbackPorts:
    """`CallbackPorts` on the worker: topics for effects, global tables for lookups."""

    def __init__(
        self,
        *,
        app: faust.App,
        shipments: StateTable,
        index: ShipmentIndex,
        results: StateTable,
        partitions: int,
        publish_update: PublishUpdate,
        send_commands: SendCommands,
        send_stock_event: SendRaw,
    ) -> None:
        self._app = app
        self._shipments = shipments
        self._index = index
        self._results = results
        self._partitions = partitions
        self._publish_update = publish_update
        self._send_commands = send_commands
        self._send_stock_event = send_stock_event

    async def publish_update(
        self, order_code: str, update_type: str, payload: dict[str, Any], *, event_id: str
    ) -> None:
        await self._publish_update(order_code, update_type, event_id, payload)

    async def publish_snapshots(self, events: list[StockEvent]) -> None:
        acks = [
            await self._send_stock_event(e.key.encode(), orjson.dumps(e.model_dump(mode="json")))
            for e in events
        ]
        await asyncio.gather(*acks)

    async def send_commands(self, commands: list[InventoryCommand]) -> None:
        await self._send_commands(commands)

    async def find_shipment(
        self, *, shipment_id: str | None, order_code: str | None, shipment_code: str | None
    ) -> dict[str, Any] | None:
        if shipment_id:
            raw = self._shipments.get(shipment_id)
            if raw is not None:
                found: dict[str, Any] = orjson.loads(raw)
                return found
        if order_code and shipment_code:
            indexed = self._index.find(order_code, shipment_code)
            raw = self._shipments.get(indexed) if indexed is not None else None
            if raw is not None:
                candidate: dict[str, Any] = orjson.loads(raw)
                if (
                    candidate.get("orderCode") == order_code
                    and candidate.get("shipmentCode") == shipment_code
                ):
                    return candidate
        return None

    async def recall(self, idem_key: str) -> CallbackResponse | None:
        stored = self._results.get(idem_key)
        if stored is None:
            return None
        at = float(stored[2]) if len(stored) > 2 else 0.0
        return CallbackResponse(status=int(stored[0]), body=str(stored[1]).encode(), at=at)

    async def remember(self, idem_key: str, response: CallbackResponse) -> None:
        # The 4th element is when it was stored: retention drops it that long after.
        value = [response.status, response.body.decode(), response.at, time.time()]
        self._results.put(idem_key, value, default_partition(idem_key, self._partitions))


def install_callbacks(
    app: faust.App,
    settings: Settings,
    metrics: Metrics,
    *,
    shipments_topic: faust.TopicT,
    publish_update: PublishUpdate,
    send_commands: SendCommands,
    send_stock_event: SendRaw,
    reject: Callable[[Any, DecodeError | str], Awaitable[None]],
) -> CallbackHandler:
    """Register the DESIGN.md callback paths on the app's web server."""
    # A GlobalTable with marketplace.shipments itself as changelog stalls Faust's
    # assignor, so an agent copies the topic into a global table of our own.
    shipments = StateTable(app, "shipments", settings.topic_partitions, "raw", global_=True)
    index = ShipmentIndex()
    watch_shipments(shipments, index)
    retention = settings.shipment_retention_s

    async def index_shipments(stream: Any) -> None:
        async for event in stream.events():
            await _index_shipment(event.message)

    async def _index_shipment(msg: Any) -> None:
        if msg.value is None:  # the marketplace tombstoned the shipment: forget it
            key = msg.key.decode("utf-8", "replace") if msg.key else ""
            await tombstone(shipments, [key])
            index.drop(key)
            return
        try:
            shipment = decode_shipment(msg.key, msg.value)
        except DecodeError as exc:
            await reject(msg, exc)
            return
        shipment_id = str(shipment.shipmentId)
        at = msg.timestamp or time.time()
        if at < time.time() - retention:
            return  # already past retention (a new group reading the topic from the start)
        shipments.hold(shipment_id, msg.value, msg.partition)
        index.add(shipment_id, msg.value, at)
        # Acknowledged before the event's offset is: an indexed shipment is never lost.
        ack = await app.producer.send(
            shipments.changelog,
            shipment_id.encode("utf-8"),
            msg.value,
            partition=msg.partition,
            timestamp=at,
            headers=None,
        )
        await ack

    app.agent(shipments_topic, name="shipments")(index_shipments)
    results = StateTable(app, "callback-results", settings.topic_partitions, "json", global_=True)
    started = time.time()

    async def prune_tables() -> None:
        await prune(
            shipments=shipments,
            index=index,
            results=results,
            shipment_retention_s=retention,
            result_retention_s=settings.callback_result_retention_s,
            now=time.time(),
            started=started,
        )

    shortest = min(retention, settings.callback_result_retention_s)
    timer: Any = app.timer  # untyped decorator in faust
    timer(max(1.0, min(600.0, shortest / 4)), on_leader=True)(prune_tables)
    ports = KafkaCallbackPorts(
        app=app,
        shipments=shipments,
        index=index,
        results=results,
        partitions=settings.topic_partitions,
        publish_update=publish_update,
        send_commands=send_commands,
        send_stock_event=send_stock_event,
    )
    if not require_callback_auth(settings):
        log.warning("INVSYNC_CALLBACK_AUTH=none: Increff callbacks are served without auth")
    handler = CallbackHandler(
        ports,
        required_headers=settings.callback_headers,
        max_bytes=settings.callback_max_bytes,
        metrics=metrics,
    )
    aio = harden(app, header_timeout_s=settings.callback_header_timeout_s)
    serve = _server(
        handler,
        limit=settings.callback_max_bytes,
        body_timeout_s=settings.callback_body_timeout_s,
    )
    for path in dict.fromkeys(route.partition(" ")[2] for route in ROUTES):
        aio.router.add_route("*", path, serve, expect_handler=defer_expect)
    return handler


def _server(
    handler: CallbackHandler, *, limit: int, body_timeout_s: float
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """One aiohttp handler for every callback path and method (the handler says 405).

    Auth and method are checked on the head, before any body byte is read or
    `100 Continue` sent; the handler sees only whole bodies.
    """
    methods: dict[str, list[str]] = {}
    for route in ROUTES:
        method, _, path = route.partition(" ")
        methods.setdefault(path, []).append(method)

    async def serve(request: web.Request) -> web.StreamResponse:
        allowed = methods[request.path]
        method = request.method.upper()
        route = f"{method if method in allowed else allowed[0]} {request.path}"
        head = CallbackRequest(
            method=method,
            path=request.path,
            headers=request.headers,
            query=dict(request.query),
            body=b"",
        )
        answer = handler.admit(route, head)
        if answer is None:
            try:
                body = await read_body(request, limit=limit, timeout_s=body_timeout_s)
            except BodyRefused as exc:
                response = _response(handler.refuse(route, exc.status, str(exc)))
                if exc.status in (400, 408):
                    response.force_close()  # the rest of the body will never be read
                return response
            answer = await handler.handle(route, replace(head, body=body))
        return _response(answer)

    return serve


def _response(answer: CallbackResponse) -> web.Response:
    if not answer.body:
        return web.Response(status=answer.status)
    return web.Response(status=answer.status, body=answer.body, content_type="application/json")
