"""The composition root: builds the Faust app, its topics, tables and agents from settings."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from dataclasses import dataclass
from typing import Any

import faust
import httpx
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from connectors.increff import IncreffClient
from connectors.marketplace import MarketplaceInventoryClient
from connectors.retry import NO_RETRY, Backoff
from models.engine import InventoryEngine, Publication
from models.events import InventoryCommand
from models.inventory import SafetyStock
from models.orders import command_key
from streams import fastpath, faustcompat
from streams.deadletters import DeadLetters
from streams.inventory import InventoryAgent
from streams.kafka import faust_credentials
from streams.metrics import Metrics, render
from streams.openapi import install_openapi
from streams.orders import OrderLanes, install_orders
from streams.push import MarketplacePusher
from streams.router import update_message
from streams.settings import Settings
from streams.state import StateTable, default_partition
from streams.topics import bootstrap_list
from streams.web import install_callbacks

log = logging.getLogger(__name__)

BATCH_MAX = 4000
# How long the broker may hold a fetch that finds no new data (see faustcompat).
FETCH_MAX_WAIT_MS = 10
BATCH_WITHIN_S = 0.01
FLUSH_TICK_S = 0.02


EXIT_CRASHED = 70
"""Exit status of a worker whose inventory path failed (EX_SOFTWARE)."""


def fatal(exc: BaseException) -> None:
    """The inventory path failed: exit at once, non-zero, so a supervisor restarts us.

    Nothing is lost: a batch's offsets are committed only after its outputs and state
    writes were acknowledged, so the restart replays it (as after a SIGKILL). Lingering
    would leave a process that looks alive and consumes nothing.
    """
    log.critical(
        "inventory processing failed (%s: %s); exiting with status %d so the worker is "
        "restarted from its committed offsets",
        type(exc).__name__,
        exc,
        EXIT_CRASHED,
        exc_info=exc,
    )
    logging.shutdown()
    os._exit(EXIT_CRASHED)


def faust_config(settings: Settings) -> dict[str, Any]:
    """Faust settings derived from ours (DESIGN.md "Running it")."""
    return {
        "id": settings.app_id,
        "broker": [f"kafka://{s}" for s in bootstrap_list(settings.kafka_bootstrap_servers)],
        "broker_credentials": faust_credentials(settings),
        "store": "memory://",
        "datadir": str(settings.data_dir),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "topic_allow_declare": True,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "web_in_thread": False,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_linger_ms": 2,
        # A killed worker's partitions move after 10 s, not Faust's default 60 s.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 1.0,
        "broker_commit_every": 10_000,
        "broker_commit_interval": 1.0,
        "broker_max_poll_records": 2000,
        "stream_buffer_maxsize": 16_384,
        "table_cleanup_interval": 3600.0,
    }


def raw_topic(app: faust.App, *names: str, **kwargs: Any) -> faust.TopicT:
    """A topic carrying bytes: we decode with pydantic/orjson ourselves, never faust.Record."""
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        **kwargs,
    )


@dataclass
class Runtime:
    """What tests and the demo may need to reach inside a built app."""

    app: faust.App
    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    inventory: InventoryAgent
    orders: OrderLanes
    pusher: MarketplacePusher | None


def _increff_client(settings: Settings, metrics: Metrics) -> IncreffClient | None:
    if not settings.increff_base_url:
        return None
    assert settings.increff_username and settings.increff_password  # validated by Settings

    def observe(endpoint: str, status: int | None, seconds: float) -> None:
        metrics.increff_requests.labels(endpoint, str(status or "error")).inc()
        metrics.increff_latency.labels(endpoint).observe(seconds)
        if status is None or status == 429 or status >= 500:
            metrics.increff_retries.labels(endpoint).inc()

    return IncreffClient(
        settings.increff_base_url,
        settings.increff_username,
        settings.increff_password,
        settings.increff_domain,
        timeout=settings.increff_timeout_s,
        on_request=observe,
        # The short in-line retry; an order still failing after it is parked (streams/orders).
        backoff=Backoff(
            base=0.2, max_delay=1.0, max_attempts=4, deadline=settings.order_inline_retry_s
        ),
        limits=httpx.Limits(max_connections=settings.order_concurrency),
    )


def _marketplace_client(settings: Settings, metrics: Metrics) -> MarketplaceInventoryClient | None:
    if not settings.marketplace_inventory_url:
        return None

    def observe(endpoint: str, status: int | None, seconds: float) -> None:
        metrics.marketplace_requests.labels(str(status or "error")).inc()
        metrics.marketplace_latency.observe(seconds)

    # No retries inside the client: the pusher retries itself and re-reads what waits
    # each time, so a retry never carries a quantity that a newer one replaced.
    return MarketplaceInventoryClient(
        settings.marketplace_inventory_url,
        settings.marketplace_headers,
        timeout=settings.marketplace_timeout_s,
        on_request=observe,
        backoff=NO_RETRY,
    )


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> Runtime:
    faustcompat.check_version()
    app = faust.App(**faust_config(settings))
    faustcompat.bound_fetch_wait(app, FETCH_MAX_WAIT_MS)
    faustcompat.seek_uncommitted_from_start()
    reg = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(reg)
    metrics.set_windows(settings.debounce_ms / 1000, settings.max_delay_ms / 1000)

    stock_and_commands = raw_topic(app, settings.topic_stock_events, settings.topic_commands)
    commands = raw_topic(app, settings.topic_commands)
    orders = raw_topic(app, settings.topic_orders)
    inventory_out = raw_topic(app, settings.topic_inventory)
    dead_letter_topic = raw_topic(app, settings.topic_dead_letters)
    order_updates = raw_topic(app, settings.topic_order_updates)

    inventory_topic = inventory_out.get_topic_name()

    async def publish(key: bytes, value: bytes) -> Any:
        # Straight to the app's producer, not `Topic.send`: Faust's per-record channel
        # path (FutureMessage, callbacks, sensors) cost more than the rule itself in the
        # live profile. Still covered by Faust's producer flush before each commit; the
        # returned future resolves when the broker acknowledged the record.
        return await app.producer.send(
            inventory_topic, key, value, partition=None, timestamp=None, headers=None
        )

    async def send_dead_letter(key: bytes, value: bytes) -> Any:
        return await dead_letter_topic.send(key=key, value=value)

    dead_letters = DeadLetters(send_dead_letter, metrics)

    async def send_commands(cmds: list[InventoryCommand]) -> None:
        """Send and wait for the broker: a callback answers only once its effect is safe."""
        acks = [await commands.send(key=command_key(c), value=c.encode()) for c in cmds]
        await asyncio.gather(*acks)

    async def publish_update(
        order_code: str, update_type: str, event_id: str, payload: dict[str, Any]
    ) -> None:
        metrics.order_updates.labels(update_type).inc()
        ack = await order_updates.send(
            key=order_code.encode(), value=update_message(event_id, update_type, payload)
        )
        await ack

    increff = _increff_client(settings, metrics)
    orders_lanes = install_orders(
        app,
        settings,
        metrics,
        orders_topic=orders,
        dead_letter_topic=dead_letter_topic,
        increff=increff,
        send_commands=send_commands,
        publish_update=publish_update,
    )

    pusher: MarketplacePusher | None = None
    market = _marketplace_client(settings, metrics)
    if market is not None:
        pusher = MarketplacePusher(
            client=market,
            pushed=StateTable(app, "pushed-versions", settings.topic_partitions, "json"),
            dead_letters=dead_letters,
            metrics=metrics,
            source_topic=settings.topic_inventory,
        )

    def on_published(pub: Publication) -> None:
        if pusher is not None:
            u = pub.update
            pusher.note(
                pub.key, u.locationCode, u.channelSkuCode, u.quantity, u.version, pub.partition
            )

    state = StateTable(app, "inventory-state", settings.topic_partitions)
    partitions = settings.topic_partitions
    engine = InventoryEngine(
        state,
        stock_topic=settings.topic_stock_events,
        safety=SafetyStock(
            default=settings.safety_stock,
            per_location={k: v for k, v in settings.safety_stock_overrides.items() if ":" not in k},
            per_key={k: v for k, v in settings.safety_stock_overrides.items() if ":" in k},
        ),
        debounce_s=settings.debounce_ms / 1000,
        max_delay_s=settings.max_delay_ms / 1000,
        reservation_ttl_s=settings.reservation_ttl_s,
        settle_grace_s=settings.settle_grace_s,
        partition_for=lambda key: default_partition(key, partitions),
    )
    processor = InventoryAgent(
        engine=engine,
        state=state,
        publish=publish,
        dead_letters=dead_letters,
        metrics=metrics,
        on_published=on_published,
    )

    stock_events = raw_topic(app, settings.topic_stock_events)

    async def send_stock_event(key: bytes, value: bytes) -> Any:
        return await stock_events.send(key=key, value=value)

    install_callbacks(
        app,
        settings,
        metrics,
        shipments_topic=raw_topic(app, settings.topic_shipments),
        publish_update=publish_update,
        send_commands=send_commands,
        send_stock_event=send_stock_event,
        reject=dead_letters.reject,
    )
    install_openapi(app, settings)

    if settings.fast_path:

        async def apply_batch(tp: TP, messages: list[Any]) -> None:
            await processor.process(messages)

        # process() handles events of several partitions at once (explicit changelog
        # partitions), so take all queued partitions in one call: one wait for the
        # outputs' acks per call instead of one per partition batch.
        fastpath.install(app, stock_and_commands, apply_batch, combine=True, fatal=fatal)
    else:

        @app.agent(stock_and_commands, name="inventory")
        async def apply_inventory(stream: Any) -> None:  # a faust.Stream: untyped
            async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
                try:
                    await processor.process([event.message for event in events])
                except Exception as exc:  # noqa: BLE001 - Faust would restart the agent and ack it
                    fatal(exc)

    async def flush_due() -> None:
        if processor.next_deadline() is not None:
            await processor.flush()

    async def expire_reservations() -> None:
        await processor.expire()

    timer: Any = app.timer  # untyped decorator in faust
    timer(FLUSH_TICK_S, on_leader=False)(flush_due)
    timer(min(60.0, max(1.0, settings.reservation_ttl_s / 10)), on_leader=False)(
        expire_reservations
    )

    def _stock_partitions(tps: set[TP]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == settings.topic_stock_events}

    # A rebalance: revoked (eager: everything) -> assigned (Faust starts restoring the
    # tables) -> rebalance complete (restored). Nothing is published or written between
    # the first and the last, when keys may briefly hold older states of the changelog.
    recovering: dict[str, int | None] = {"generation": None, "joined": None}

    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        recovering["generation"] = None
        await processor.suspend()
        if pusher is not None:  # an old owner's PUT must not land after the new owner's
            await pusher.revoke(_stock_partitions(revoked))

    async def on_assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        now_assigned = _stock_partitions(assigned)
        lost = engine.assignment - now_assigned
        await processor.assigned(now_assigned)
        if pusher is not None and lost:
            pusher.forget_partitions(lost)
        recovering["generation"] = app.consumer_generation_id
        recovering["joined"] = app.consumer_generation_id

    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        if recovering["generation"] != app.consumer_generation_id:
            return  # a newer rebalance began: its own completion activates it
        recovering["generation"] = None
        await processor.recovered()
        if pusher is not None:
            pusher.rescan(engine.items_active())
        # Move what exists now (modules, the app, recovered state) out of the cyclic
        # GC's reach: full collections scanned it all, 75-100 ms pauses on the loop
        # that showed up as the live latency's p99. Refcounting still frees it.
        gc.collect()
        gc.freeze()

    broker: dict[str, bool] = {"reachable": False}

    def restored_reason() -> str | None:
        if recovering["joined"] is None:
            return "not yet a member of the consumer group (no partitions assigned)"
        if recovering["generation"] is not None or engine.active != engine.assignment:
            return "rebalancing: tables are being restored"
        return None

    async def check_broker() -> None:
        broker["reachable"] = await faustcompat.broker_reachable(app)

    timer(5.0, on_leader=False)(check_broker)
    # `invsync_ready` at each scrape: the broker as last checked (every 5 s).
    metrics.report_ready(lambda: broker["reachable"] and restored_reason() is None)

    @app.page("/health")
    class Health(View):
        """Liveness: the process and its event loop answer."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    async def not_ready() -> str | None:
        reason = restored_reason()
        if reason is None:
            await check_broker()
            if not broker["reachable"]:
                reason = "broker unreachable"
        return reason

    @app.page("/ready")
    class Ready(View):
        """Readiness (DESIGN.md): broker reachable, partitions assigned, tables recovered."""

        async def get(self, request: Request) -> Response:
            reason = await not_ready()
            if reason is None:
                return self.json({"status": "ready"})
            return self.json({"status": "not ready", "reason": reason}, status=503)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            body, content_type = render(reg)
            return self.bytes(body, content_type=content_type)

    async def flush_on_shutdown(sender: Any, **kwargs: Any) -> None:
        try:
            await asyncio.wait_for(processor.flush(everything=True), 5.0)
        except Exception:  # shutdown goes on; the next owner re-marks the keys
            log.warning("could not flush pending updates on shutdown", exc_info=True)
        for client in (increff, market):
            if client is not None:
                await client.aclose()

    if pusher is not None:
        running_pusher = pusher

        async def push_inventory() -> None:
            await running_pusher.run(lambda: bool(app.should_stop))

        app.task(push_inventory)

    async def report_lag() -> None:
        await metrics.update_lag(app.consumer)

    timer(5.0, on_leader=False)(report_lag)

    signals: list[tuple[Any, Any]] = [
        (app.on_partitions_assigned, on_assigned),
        (app.on_partitions_revoked, on_revoked),
        (app.on_rebalance_complete, on_rebalance_complete),
        (app.on_before_shutdown, flush_on_shutdown),
    ]
    for signal, handler in signals:
        signal.connect(handler)

    return Runtime(app, settings, reg, metrics, processor, orders_lanes, pusher)
