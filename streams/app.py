"""The composition root: builds the Faust app, its topics, tables and agents from settings."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

import faust
import httpx
from prometheus_client import CollectorRegistry

from connectors.increff import IncreffClient
from connectors.marketplace import MarketplaceInventoryClient
from connectors.retry import NO_RETRY, Backoff
from models.engine import Publication
from models.events import InventoryCommand
from models.orders import command_key
from streams import faustcompat
from streams.consolidation import ConsolidationAgent, install_consolidation
from streams.deadletters import DeadLetters, Send
from streams.inventory import InventoryAgent, install_inventory
from streams.kafka import Murmur2Partitioner, faust_credentials
from streams.lookup import install_lookup
from streams.metrics import Metrics
from streams.openapi import install_openapi
from streams.orders import OrderLanes, install_orders
from streams.publishing import PublishingAgent
from streams.push import MarketplacePusher
from streams.router import update_message
from streams.settings import Settings
from streams.state import StateTable
from streams.topics import bootstrap_list
from streams.views import install_views
from streams.web import install_callbacks

log = logging.getLogger(__name__)

# How long the broker may hold a fetch that finds no new data (see faustcompat).
FETCH_MAX_WAIT_MS = 10


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
        # What the assignor advertises to the group: the lookup's peers call it.
        "canonical_url": settings.advertised_url,
        "web_in_thread": False,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_linger_ms": 2,
        # A batch's changelog writes and outputs go out in few produce batches (16 KB
        # by default: dozens per partition per batch at the backlog's rate).
        "producer_max_batch_size": 256 * 1024,
        "producer_partitioner": Murmur2Partitioner(),
        # A killed worker's partitions move after 10 s, not Faust's default 60 s.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 1.0,
        "broker_commit_every": 10_000,
        "broker_commit_interval": settings.commit_interval_ms / 1000,
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


def producer_send(app: faust.App, topic: str) -> Send:
    """Records to ``topic`` straight through the app's producer, keyed by Kafka's default
    partitioner; each send returns a future resolved once the broker acknowledged it.

    Not `Topic.send`: Faust's per-record channel path (FutureMessage, callbacks, sensors)
    cost more than the rule itself in the live profile. Still covered by Faust's producer
    flush before each commit.
    """

    async def send(key: bytes, value: bytes) -> Any:
        return await app.producer.send(
            topic, key, value, partition=None, timestamp=None, headers=None
        )

    return send


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
    consolidation: ConsolidationAgent | None = None


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
    faustcompat.seek_each_to_committed()
    faustcompat.back_off_failed_metadata_updates()
    faustcompat.no_commit_while_seeking()
    faustcompat.keep_queued_records_on_resume(app)
    faustcompat.install_drainer()
    reg = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(reg)
    metrics.set_windows(settings.debounce_ms / 1000, settings.max_delay_ms / 1000)

    stock_and_commands = raw_topic(app, settings.topic_stock_events, settings.topic_commands)
    commands = raw_topic(app, settings.topic_commands)
    orders = raw_topic(app, settings.topic_orders)
    inventory_out = raw_topic(app, settings.topic_inventory)
    dead_letter_topic = raw_topic(app, settings.topic_dead_letters)
    order_updates = raw_topic(app, settings.topic_order_updates)

    publish = producer_send(app, inventory_out.get_topic_name())

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

    inventory = install_inventory(
        app,
        settings,
        source=stock_and_commands,
        publish=publish,
        dead_letters=dead_letters,
        metrics=metrics,
        on_published=on_published,
        on_recovered=pusher.rescan if pusher is not None else None,
        on_lost=pusher.forget_partitions if pusher is not None else None,
        # an old owner's PUT must not land after the new owner's
        on_revoked=pusher.revoke if pusher is not None else None,
        fatal=fatal,
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
    consolidation: ConsolidationAgent | None = None
    if settings.consolidated:
        by_sku = raw_topic(app, settings.topic_inventory_by_sku)
        consolidation = install_consolidation(
            app,
            settings,
            inventory=inventory_out,
            by_sku=by_sku,
            send_by_sku=producer_send(app, settings.topic_inventory_by_sku),
            publish=producer_send(app, settings.topic_inventory_consolidated),
            dead_letters=dead_letters,
            metrics=metrics,
            rebalances=inventory,
            fatal=fatal,
        )
    install_lookup(
        app,
        settings,
        metrics,
        engine=inventory.agent.engine,
        restored_reason=inventory.restored_reason,
        broker_reachable=inventory.broker_ok,
        changelog=inventory.agent.state.changelog,
    )
    install_openapi(app, settings)

    install_views(app, reg, inventory)

    async def flush_on_shutdown(sender: Any, **kwargs: Any) -> None:
        stages: list[PublishingAgent[Any, Any]] = [inventory.agent]
        if consolidation is not None:
            stages.append(consolidation)
        for stage in stages:
            try:
                await asyncio.wait_for(stage.flush(everything=True), 5.0)
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

    blocked_commits: set[tuple[str, int]] = set()

    async def report_lag() -> None:
        await metrics.update_lag(app.consumer)
        blocked = metrics.set_commits(faustcompat.commit_state(app.consumer))
        for (topic, partition), reason in blocked.items():
            if (topic, partition) not in blocked_commits:  # once, as it turns blocked
                log.warning("commits of %s[%d] are blocked: %s", topic, partition, reason)
        for topic, partition in blocked_commits - blocked.keys():
            log.info("commits of %s[%d] move again", topic, partition)
        blocked_commits.clear()
        blocked_commits.update(blocked)

    timer: Any = app.timer  # untyped decorator in faust
    timer(5.0, on_leader=False)(report_lag)

    shutdown: Any = app.on_before_shutdown  # Faust's signal type rejects async handlers
    shutdown.connect(flush_on_shutdown)

    return Runtime(
        app, settings, reg, metrics, inventory.agent, orders_lanes, pusher, consolidation
    )
