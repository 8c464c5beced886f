"""Prometheus metrics of a worker, registered on the registry the caller passes in.

Names follow Prometheus conventions: prefix `invsync_`, base units in the name
(`_seconds`, `_records`), counters end in `_total`. The dashboards in `dashboards/`
query exactly these names; `tests/integration/test_prometheus.py` checks every query.
Label values that DESIGN.md enumerates are created at zero up front, so a rate panel
shows 0 rather than "no data" before the first occurrence.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from models.errors import DecodeReason

NAMESPACE = "invsync"

CONTENT_TYPE = "text/plain; version=0.0.4"
"""Prometheus text format 0.0.4, understood by every Prometheus. No `charset` parameter:
aiohttp (under Faust's `View.bytes(content_type=...)`) refuses one, and the format is UTF-8
by definition."""

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    2.5,
    3.0,
    4.0,
    5.0,
    6.0,
    7.5,
    10.0,
    30.0,
    60.0,
)
"""Event-to-publish latency, 1 ms to 60 s (targets: p99 50 ms, stock-out 100 ms); dense
between 0.5 and 7.5 s, where the default windows (500 ms debounce, 5 s max delay) put it."""

HTTP_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""One HTTP attempt; the client timeout defaults to 10 s."""

STOCK_EVENT_TYPES = ("DELTA", "SNAPSHOT")
COMMAND_TYPES = ("RESERVE", "CANCEL", "RELEASE", "ACCEPT")
DUPLICATE_SOURCES = ("stock", "commands")
CONSOLIDATION_OUTCOMES = ("newer", "stale")
DEAD_LETTER_REASONS = (*get_args(DecodeReason), "unsupported", "other")
"""Every decode reason, a marketplace refusal (`push.py`), anything else: all exported at 0."""
ORDER_EVENT_TYPES = (
    "ORDER_CREATED",
    "CUSTOMER_CANCELLED",
    "ORDER_PROPERTIES_UPDATED",
    "RETURN_CREATED",
    "RETURN_UPDATED",
    "RETURN_ITEMS_ADDED",
    "RETURN_ITEMS_CANCELLED",
)
ORDER_UPDATE_TYPES = (
    "ORDER_PACKED",
    "SHIPPING_LABEL_REQUESTED",
    "INVOICE_REQUESTED",
    "ORDER_HANDED_OVER",
    "SELLER_CANCELLED",
    "RETURN_ACKNOWLEDGED",
    "ORDER_ACKNOWLEDGED",
    "INCREFF_REJECTED",
)


class LagSource(Protocol):
    """What `update_lag` needs of a Faust consumer (`app.consumer`)."""

    def assignment(self) -> Any: ...

    async def highwaters(self, *partitions: Any) -> Mapping[Any, int]: ...

    async def position(self, tp: Any) -> int | None: ...


def _zero(counter: Counter, label: str, values: Iterable[str]) -> None:
    for value in values:
        counter.labels(**{label: value})


class Metrics:
    """Every metric of a worker. Attribute names are what the agents use."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        ns = NAMESPACE

        # Inventory flow.
        self.stock_events = Counter(
            "stock_events", "Stock events consumed, by type.", ["type"], namespace=ns, registry=r
        )
        self.commands = Counter(
            "inventory_commands",
            "Reserve/release commands applied, by type.",
            ["type"],
            namespace=ns,
            registry=r,
        )
        self.duplicates = Counter(
            "duplicates_dropped",
            "Events dropped as repeats (eventId ring or source offset), by source.",
            ["source"],
            namespace=ns,
            registry=r,
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            namespace=ns,
            registry=r,
        )
        self.updates_published = Counter(
            "inventory_updates_published",
            "Absolute inventory updates published.",
            namespace=ns,
            registry=r,
        )
        self.stockouts = Counter(
            "stockouts_published",
            "Inventory updates published with quantity 0 (stock-outs).",
            namespace=ns,
            registry=r,
        )
        self.e2e_latency = Histogram(
            "end_to_end_latency_seconds",
            "From a stock event's occurredAt to the publication of its update.",
            namespace=ns,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.publish_delay = Histogram(
            "publish_delay_seconds",
            "From when a key was first marked changed to the publication of its update "
            "(the coalescing windows alone, without the producer's or Kafka's delay).",
            namespace=ns,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.stockout_latency = Histogram(
            "stockout_propagation_seconds",
            "From the occurredAt of the event that made a key stock out to its publication.",
            namespace=ns,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.reservations_open = Gauge(
            "reservations_open",
            "Open reservations in this worker's partitions.",
            namespace=ns,
            registry=r,
        )
        self.reservations_expired = Counter(
            "reservations_expired",
            "Reservations released because they expired (should stay at 0).",
            namespace=ns,
            registry=r,
        )
        self.keys_dirty = Gauge(
            "keys_pending_publish",
            "Keys whose ATP changed and is not published yet.",
            namespace=ns,
            registry=r,
        )
        self.keys_pending_push = Gauge(
            "keys_pending_push",
            "Keys published but not yet pushed to the marketplace inventory URL.",
            namespace=ns,
            registry=r,
        )
        # Consolidated ATP per SKU (INVSYNC_CONSOLIDATED).
        self.consolidated_records = Counter(
            "consolidated_records",
            "Per-location records read by the consolidation, by outcome: newer (held) or "
            "stale (a version already beaten: replays, a rebalance's late record).",
            ["outcome"],
            namespace=ns,
            registry=r,
        )
        self.consolidated_published = Counter(
            "consolidated_updates_published",
            "Consolidated (all-location) updates published per SKU.",
            namespace=ns,
            registry=r,
        )

        # Increff API.
        self.increff_requests = Counter(
            "increff_requests",
            "Increff API attempts, by endpoint and HTTP status (or error).",
            ["endpoint", "status"],
            namespace=ns,
            registry=r,
        )
        self.increff_latency = Histogram(
            "increff_request_duration_seconds",
            "Duration of one Increff API attempt.",
            ["endpoint"],
            namespace=ns,
            registry=r,
            buckets=HTTP_BUCKETS,
        )
        self.increff_retries = Counter(
            "increff_retries",
            "Increff API attempts retried (5xx, 429, network error).",
            ["endpoint"],
            namespace=ns,
            registry=r,
        )
        self.increff_rejections = Counter(
            "increff_rejections",
            "Order events Increff refused with a 4xx, by event type.",
            ["type"],
            namespace=ns,
            registry=r,
        )

        self.increff_auth_failures = Counter(
            "increff_auth_failures",
            "Increff refused our credentials (401/403): a credential problem, not an outage.",
            namespace=ns,
            registry=r,
        )
        self.orders_waiting = Gauge(
            "orders_waiting",
            "Order events parked for a background retry (Increff unreachable).",
            namespace=ns,
            registry=r,
        )
        self.orders_parked_total = Counter(
            "orders_parked",
            "Order events parked after the in-line retry failed, or queued behind one.",
            namespace=ns,
            registry=r,
        )

        # Marketplace inventory push.
        self.marketplace_requests = Counter(
            "marketplace_requests",
            "Marketplace inventory push requests, by HTTP status (or error).",
            ["status"],
            namespace=ns,
            registry=r,
        )
        self.marketplace_latency = Histogram(
            "marketplace_request_duration_seconds",
            "Duration of one marketplace inventory push request.",
            namespace=ns,
            registry=r,
            buckets=HTTP_BUCKETS,
        )
        self.marketplace_auth_failures = Counter(
            "marketplace_auth_failures",
            "Marketplace push calls refused for our credentials (401/403): the push backs "
            "off and keeps every key; a credential problem, not a data one.",
            namespace=ns,
            registry=r,
        )
        self.marketplace_sku_failures = Counter(
            "marketplace_sku_failures",
            "SKUs the marketplace reported as failed in a push response.",
            namespace=ns,
            registry=r,
        )

        # Orders and callbacks.
        self.order_events = Counter(
            "order_events",
            "Marketplace order events consumed, by type.",
            ["type"],
            namespace=ns,
            registry=r,
        )
        self.order_updates = Counter(
            "order_updates_published",
            "Order updates published to the marketplace, by type.",
            ["type"],
            namespace=ns,
            registry=r,
        )
        self.callbacks = Counter(
            "callbacks",
            "Increff callbacks and inventory lookups served, by path and HTTP status.",
            ["path", "status"],
            namespace=ns,
            registry=r,
        )
        self.callback_latency = Histogram(
            "callback_duration_seconds",
            "Time to answer an Increff callback or an inventory lookup.",
            ["path"],
            namespace=ns,
            registry=r,
            buckets=HTTP_BUCKETS,
        )

        # Worker state and configuration (the alert rules and dashboard thresholds use them).
        self.ready = Gauge(
            "ready",
            "1 when the worker is ready (partitions assigned, tables recovered), else 0.",
            namespace=ns,
            registry=r,
        )
        self.debounce = Gauge(
            "config_debounce_seconds",
            "Configured coalescing debounce window (INVSYNC_DEBOUNCE_MS).",
            namespace=ns,
            registry=r,
        )
        self.max_delay = Gauge(
            "config_max_delay_seconds",
            "Configured coalescing max delay (INVSYNC_MAX_DELAY_MS): the freshness bound.",
            namespace=ns,
            registry=r,
        )

        # Kafka.
        self.consumer_lag = Gauge(
            "consumer_lag_records",
            "Records between the consumer position and the partition's high watermark.",
            ["topic", "partition"],
            namespace=ns,
            registry=r,
        )

        self.acked_uncommitted = Gauge(
            "consumer_acked_uncommitted_records",
            "Offsets processed and acked, waiting for a commit.",
            ["topic", "partition"],
            namespace=ns,
            registry=r,
        )
        self.commit_blocked = Gauge(
            "consumer_commit_blocked",
            "1 while a partition's acked offsets cannot be committed as they are: they do "
            "not follow the committed offset, or some are acked twice (commits then move "
            "one offset at a time). Should never stay 1.",
            ["topic", "partition"],
            namespace=ns,
            registry=r,
        )

        _zero(self.stock_events, "type", STOCK_EVENT_TYPES)
        _zero(self.commands, "type", COMMAND_TYPES)
        _zero(self.duplicates, "source", DUPLICATE_SOURCES)
        _zero(self.dead_letters, "reason", DEAD_LETTER_REASONS)
        _zero(self.consolidated_records, "outcome", CONSOLIDATION_OUTCOMES)
        _zero(self.order_events, "type", ORDER_EVENT_TYPES)
        _zero(self.order_updates, "type", ORDER_UPDATE_TYPES)
        self._lag_series: set[tuple[str, str]] = set()
        self._commit_series: set[tuple[str, str]] = set()
        # prometheus_client registers these on its global registry only; ours is our own.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def set_windows(self, debounce_s: float, max_delay_s: float) -> None:
        """Expose the coalescing windows, so thresholds and alerts follow the configuration."""
        self.debounce.set(debounce_s)
        self.max_delay.set(max_delay_s)

    def report_ready(self, check: Callable[[], bool]) -> None:
        """Evaluate `check` at every scrape for `invsync_ready` (1 ready, 0 not)."""
        self.ready.set_function(lambda: 1.0 if check() else 0.0)

    def set_lag(
        self,
        highwaters: Mapping[tuple[str, int], int],
        positions: Mapping[tuple[str, int], int | None],
    ) -> None:
        """Set the lag of every (topic, partition) in `highwaters`; drop series no longer held.

        `highwaters` are log-end offsets (the next offset to be written), `positions` the
        next offset the consumer will fetch; a partition without a position yet is skipped.
        """
        current: set[tuple[str, str]] = set()
        for (topic, partition), end in highwaters.items():
            position = positions.get((topic, partition))
            if position is None:
                continue
            labels = (str(topic), str(partition))
            self.consumer_lag.labels(*labels).set(max(0, end - position))
            current.add(labels)
        self._lag_series = _prune(self._lag_series, current, self.consumer_lag)

    def set_commits(
        self, state: Mapping[tuple[str, int], tuple[int | None, list[int]]]
    ) -> dict[tuple[str, int], str]:
        """From each partition's committed offset (as the worker knows it) and its acked
        offsets waiting for a commit (`faustcompat.commit_state`); returns why each
        blocked partition is blocked (`commit_blocker`)."""
        current: set[tuple[str, str]] = set()
        blocked: dict[tuple[str, int], str] = {}
        for (topic, partition), (committed, acked) in state.items():
            labels = (str(topic), str(partition))
            reason = commit_blocker(committed, acked)
            if reason is not None:
                blocked[(topic, partition)] = reason
            self.acked_uncommitted.labels(*labels).set(len(acked))
            self.commit_blocked.labels(*labels).set(0 if reason is None else 1)
            current.add(labels)
        self._commit_series = _prune(
            self._commit_series, current, self.acked_uncommitted, self.commit_blocked
        )
        return blocked

    async def update_lag(self, consumer: LagSource) -> None:
        """Refresh `consumer_lag` from a Faust consumer (`app.consumer`); call from a timer."""
        tps = list(consumer.assignment())
        if not tps:
            self.set_lag({}, {})
            return
        ends = await consumer.highwaters(*tps)
        highwaters: dict[tuple[str, int], int] = {}
        positions: dict[tuple[str, int], int | None] = {}
        for tp in tps:
            key = (str(tp.topic), int(tp.partition))
            end = ends.get(tp)
            if end is None:
                continue
            highwaters[key] = int(end)
            positions[key] = await consumer.position(tp)
        self.set_lag(highwaters, positions)


def _prune(
    before: set[tuple[str, str]], current: set[tuple[str, str]], *gauges: Gauge
) -> set[tuple[str, str]]:
    """Remove from ``gauges`` the label series held ``before`` but no longer (partitions
    revoked); returns ``current``, what is held now."""
    for gone in before - current:
        for gauge in gauges:
            gauge.remove(*gone)
    return current


def commit_blocker(committed: int | None, acked: list[int]) -> str | None:
    """Why Faust's commit cannot take a partition's acked offsets (``committed`` is the
    next offset to read, as the consumer knows it), or None.

    Faust commits the run of consecutive acked offsets that starts at most one past the
    committed offset (`Consumer._new_offset`): offsets never acked before the run hold
    it for good, and an offset acked twice ends a run, so each commit moves one offset.
    """
    if not acked:
        return None
    low = min(acked)
    if committed is not None and low - committed > 1:
        return f"offsets {committed}-{low - 1} were never acked ({len(acked)} acked after them)"
    twice = sorted(offset for offset, n in Tally(acked).items() if n > 1)
    if twice:
        return f"{len(twice)} offsets acked twice, the first {twice[0]}"
    return None


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The `/metrics` body and its content type, ready for `View.bytes(body, content_type=...)`."""
    return generate_latest(registry), CONTENT_TYPE
