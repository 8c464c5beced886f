"""Metrics: names, labels and units as the dashboards query them; a fresh registry per test."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import (
    COMMAND_TYPES,
    CONSOLIDATION_OUTCOMES,
    DEAD_LETTER_REASONS,
    DUPLICATE_SOURCES,
    STOCK_EVENT_TYPES,
    Metrics,
    render,
)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


# attribute -> (exposed family name, kind, label names)
EXPECTED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "stock_events": ("invsync_stock_events", "counter", ("type",)),
    "commands": ("invsync_inventory_commands", "counter", ("type",)),
    "duplicates": ("invsync_duplicates_dropped", "counter", ("source",)),
    "dead_letters": ("invsync_dead_letters", "counter", ("reason",)),
    "updates_published": ("invsync_inventory_updates_published", "counter", ()),
    "stockouts": ("invsync_stockouts_published", "counter", ()),
    "e2e_latency": ("invsync_end_to_end_latency_seconds", "histogram", ()),
    "stockout_latency": ("invsync_stockout_propagation_seconds", "histogram", ()),
    "publish_delay": ("invsync_publish_delay_seconds", "histogram", ()),
    "reservations_open": ("invsync_reservations_open", "gauge", ()),
    "reservations_expired": ("invsync_reservations_expired", "counter", ()),
    "keys_dirty": ("invsync_keys_pending_publish", "gauge", ()),
    "keys_pending_push": ("invsync_keys_pending_push", "gauge", ()),
    "consolidated_records": ("invsync_consolidated_records", "counter", ("outcome",)),
    "consolidated_published": ("invsync_consolidated_updates_published", "counter", ()),
    "increff_requests": ("invsync_increff_requests", "counter", ("endpoint", "status")),
    "increff_latency": ("invsync_increff_request_duration_seconds", "histogram", ("endpoint",)),
    "increff_retries": ("invsync_increff_retries", "counter", ("endpoint",)),
    "increff_rejections": ("invsync_increff_rejections", "counter", ("type",)),
    "increff_auth_failures": ("invsync_increff_auth_failures", "counter", ()),
    "orders_waiting": ("invsync_orders_waiting", "gauge", ()),
    "orders_parked_total": ("invsync_orders_parked", "counter", ()),
    "marketplace_requests": ("invsync_marketplace_requests", "counter", ("status",)),
    "marketplace_latency": ("invsync_marketplace_request_duration_seconds", "histogram", ()),
    "marketplace_sku_failures": ("invsync_marketplace_sku_failures", "counter", ()),
    "marketplace_auth_failures": ("invsync_marketplace_auth_failures", "counter", ()),
    "order_events": ("invsync_order_events", "counter", ("type",)),
    "order_updates": ("invsync_order_updates_published", "counter", ("type",)),
    "callbacks": ("invsync_callbacks", "counter", ("path", "status")),
    "callback_latency": ("invsync_callback_duration_seconds", "histogram", ("path",)),
    "consumer_lag": ("invsync_consumer_lag_records", "gauge", ("topic", "partition")),
    "acked_uncommitted": (
        "invsync_consumer_acked_uncommitted_records",
        "gauge",
        ("topic", "partition"),
    ),
    "commit_blocked": ("invsync_consumer_commit_blocked", "gauge", ("topic", "partition")),
    "ready": ("invsync_ready", "gauge", ()),
    "debounce": ("invsync_config_debounce_seconds", "gauge", ()),
    "max_delay": ("invsync_config_max_delay_seconds", "gauge", ()),
}


def exercise(m: Metrics) -> None:
    """Touch every metric once, as the agents will."""
    m.stock_events.labels(type="DELTA").inc()
    m.commands.labels(type="RESERVE").inc()
    m.duplicates.labels(source="stock").inc()
    m.dead_letters.labels(reason="invalid_json").inc()
    m.updates_published.inc()
    m.stockouts.inc()
    m.e2e_latency.observe(0.012)
    m.stockout_latency.observe(0.004)
    m.reservations_open.set(3)
    m.reservations_expired.inc()
    m.keys_dirty.set(5)
    m.keys_pending_push.set(2)
    m.consolidated_records.labels(outcome="stale").inc()
    m.consolidated_published.inc()
    m.increff_requests.labels(endpoint="create_order", status="200").inc()
    m.increff_latency.labels(endpoint="create_order").observe(0.05)
    m.increff_retries.labels(endpoint="create_order").inc()
    m.increff_rejections.labels(type="ORDER_CREATED").inc()
    m.marketplace_requests.labels(status="200").inc()
    m.marketplace_latency.observe(0.03)
    m.marketplace_sku_failures.inc()
    m.marketplace_auth_failures.inc()
    m.order_events.labels(type="ORDER_CREATED").inc()
    m.order_updates.labels(type="ORDER_PACKED").inc()
    m.callbacks.labels(path="/increff/orders/pack", status="200").inc()
    m.callback_latency.labels(path="/increff/orders/pack").observe(0.002)
    m.set_lag({("stock", 0): 10}, {("stock", 0): 7})
    m.set_commits({("stock", 0): (7, [7, 8])})
    m.set_windows(0.5, 5.0)
    m.report_ready(lambda: True)


def families(registry: CollectorRegistry) -> dict[str, Any]:
    body, _ = render(registry)
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def sample_value(
    registry: CollectorRegistry, name: str, labels: Mapping[str, str] | None = None
) -> float | None:
    return registry.get_sample_value(name, dict(labels or {}))


def test_every_metric_has_its_name_kind_and_labels(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    exercise(metrics)
    found = families(registry)
    for attr, (name, kind, labels) in EXPECTED.items():
        assert hasattr(metrics, attr), attr
        assert name in found, f"{attr}: {name} not exposed"
        family = found[name]
        assert family.type == kind, f"{name} is a {family.type}, expected {kind}"
        assert family.documentation, f"{name} has no help text"
        for sample in family.samples:
            got = set(sample.labels) - {"le"}
            assert got == set(labels), f"{sample.name} labels {got}, expected {set(labels)}"
    # prometheus_client also exposes `<name>_created` timestamps; those are not ours to list.
    ours = {n for n in found if n.startswith("invsync_") and not n.endswith("_created")}
    extra = ours - {v[0] for v in EXPECTED.values()}
    assert not extra, f"unexpected metrics {extra}"


def test_render_returns_the_text_format_with_every_name(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    exercise(metrics)
    body, content_type = render(registry)
    assert content_type == "text/plain; version=0.0.4"
    text = body.decode()
    for full in (
        "invsync_stock_events_total",
        "invsync_inventory_commands_total",
        "invsync_duplicates_dropped_total",
        "invsync_dead_letters_total",
        "invsync_inventory_updates_published_total",
        "invsync_stockouts_published_total",
        "invsync_end_to_end_latency_seconds_bucket",
        "invsync_stockout_propagation_seconds_bucket",
        "invsync_reservations_open",
        "invsync_reservations_expired_total",
        "invsync_keys_pending_publish",
        "invsync_keys_pending_push",
        "invsync_increff_requests_total",
        "invsync_increff_request_duration_seconds_bucket",
        "invsync_increff_retries_total",
        "invsync_increff_rejections_total",
        "invsync_marketplace_requests_total",
        "invsync_marketplace_request_duration_seconds_bucket",
        "invsync_marketplace_sku_failures_total",
        "invsync_marketplace_auth_failures_total",
        "invsync_order_events_total",
        "invsync_order_updates_published_total",
        "invsync_callbacks_total",
        "invsync_callback_duration_seconds_bucket",
        "invsync_consumer_lag_records",
        "invsync_ready",
        "invsync_config_debounce_seconds",
        "invsync_config_max_delay_seconds",
    ):
        assert f"\n{full}" in text, f"{full} missing from /metrics"


def test_render_content_type_is_accepted_by_faust_web_views(registry: CollectorRegistry) -> None:
    # Faust's View.bytes(content_type=...) builds an aiohttp Response, which raises
    # "charset must not be in content_type argument" for prometheus_client's own constant.
    Metrics(registry)
    body, content_type = render(registry)
    response = web.Response(body=body, content_type=content_type)
    assert response.content_type == "text/plain"
    assert response.headers["Content-Type"] == content_type


def test_process_and_platform_metrics_are_exported(registry: CollectorRegistry) -> None:
    Metrics(registry)
    found = families(registry)
    for name in (
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
        "python_gc_collections",
    ):
        assert name in found, f"{name} missing from /metrics"
    assert (sample_value(registry, "process_resident_memory_bytes") or 0) > 0


def test_windows_and_readiness_are_exported(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.set_windows(0.5, 5.0)
    assert sample_value(registry, "invsync_config_debounce_seconds") == 0.5
    assert sample_value(registry, "invsync_config_max_delay_seconds") == 5.0
    state = {"ready": False}
    metrics.report_ready(lambda: state["ready"])
    assert sample_value(registry, "invsync_ready") == 0
    state["ready"] = True
    assert sample_value(registry, "invsync_ready") == 1  # evaluated at each scrape


def test_metrics_stay_on_the_registry_given() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first).updates_published.inc(3)
    Metrics(second)  # a second instance must not clash (no global registry)
    assert sample_value(first, "invsync_inventory_updates_published_total") == 3
    assert sample_value(second, "invsync_inventory_updates_published_total") == 0


def test_enumerated_labels_start_at_zero(registry: CollectorRegistry) -> None:
    Metrics(registry)
    for name, label, values in (
        ("invsync_stock_events_total", "type", STOCK_EVENT_TYPES),
        ("invsync_inventory_commands_total", "type", COMMAND_TYPES),
        ("invsync_duplicates_dropped_total", "source", DUPLICATE_SOURCES),
        ("invsync_dead_letters_total", "reason", DEAD_LETTER_REASONS),
        ("invsync_consolidated_records_total", "outcome", CONSOLIDATION_OUTCOMES),
    ):
        for value in values:
            assert sample_value(registry, name, {label: value}) == 0, (name, value)
    assert set(STOCK_EVENT_TYPES) == {"DELTA", "SNAPSHOT"}
    assert set(COMMAND_TYPES) == {"RESERVE", "CANCEL", "RELEASE", "ACCEPT"}
    assert set(DUPLICATE_SOURCES) == {"stock", "commands"}
    assert set(DEAD_LETTER_REASONS) == {
        "invalid_json",
        "schema",
        "key_mismatch",
        "wrong_partition",
        "out_of_range",
        "unapplicable",
        "unsupported",
        "other",
    }


def test_latency_buckets_span_1ms_to_60s(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.e2e_latency.observe(0.0005)
    metrics.e2e_latency.observe(45.0)
    name = "invsync_end_to_end_latency_seconds_bucket"
    assert sample_value(registry, name, {"le": "0.001"}) == 1
    assert sample_value(registry, name, {"le": "60.0"}) == 2
    for hist in ("end_to_end_latency_seconds", "stockout_propagation_seconds"):
        les = [
            s.labels["le"]
            for s in families(registry)[f"invsync_{hist}"].samples
            if s.name.endswith("_bucket")
        ]
        assert les[0] == "0.001" and les[-2] == "60.0" and les[-1] == "+Inf", les


def test_set_lag_sets_and_forgets_partitions(metrics: Metrics, registry: CollectorRegistry) -> None:
    lag = "invsync_consumer_lag_records"
    metrics.set_lag({("s", 0): 100, ("s", 1): 50}, {("s", 0): 40, ("s", 1): 50})
    assert sample_value(registry, lag, {"topic": "s", "partition": "0"}) == 60
    assert sample_value(registry, lag, {"topic": "s", "partition": "1"}) == 0

    # After a rebalance partition 0 is gone; a position ahead of a stale highwater is 0.
    metrics.set_lag({("s", 1): 50, ("s", 2): 9}, {("s", 1): 52, ("s", 2): None})
    assert sample_value(registry, lag, {"topic": "s", "partition": "0"}) is None
    assert sample_value(registry, lag, {"topic": "s", "partition": "1"}) == 0
    assert sample_value(registry, lag, {"topic": "s", "partition": "2"}) is None


class TP(NamedTuple):
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self, ends: dict[TP, int], positions: dict[TP, int | None]) -> None:
        self.ends, self.positions = ends, positions

    def assignment(self) -> set[TP]:
        return set(self.ends)

    async def highwaters(self, *partitions: TP) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, tp: TP) -> int | None:
        return self.positions[tp]


async def test_update_lag_reads_a_faust_like_consumer(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    a, b = TP("stock", 0), TP("orders", 3)
    await metrics.update_lag(FakeConsumer({a: 10, b: 4}, {a: 3, b: 4}))
    lag = "invsync_consumer_lag_records"
    assert sample_value(registry, lag, {"topic": "stock", "partition": "0"}) == 7
    assert sample_value(registry, lag, {"topic": "orders", "partition": "3"}) == 0
    await metrics.update_lag(FakeConsumer({}, {}))
    assert sample_value(registry, lag, {"topic": "stock", "partition": "0"}) is None


DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards" / "grafana"


def dashboard_metric_names() -> set[str]:
    """Metric names (with `_total`/`_bucket` suffixes stripped) used by any dashboard query."""
    names: set[str] = set()
    for path in DASHBOARDS.glob("*.json"):
        stack = list(json.loads(path.read_text(encoding="utf-8"))["panels"])
        while stack:
            panel = stack.pop()
            stack.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                for name in re.findall(r"\binvsync_[a-z_]+", target.get("expr", "")):
                    names.add(re.sub(r"_(total|bucket|sum|count)$", "", name))
    return names


def test_dashboards_query_every_metric_and_only_ours() -> None:
    used = dashboard_metric_names()
    defined = {name for name, _, _ in EXPECTED.values()}
    assert used, "no dashboard queries found"
    assert used <= defined, f"dashboards query unknown metrics {sorted(used - defined)}"
    assert defined <= used, f"metrics on no dashboard {sorted(defined - used)}"


def test_set_commits_flags_acked_offsets_that_cannot_be_committed(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    def blocked(partition: int) -> float | None:
        return sample_value(
            registry, "invsync_consumer_commit_blocked", {"topic": "s", "partition": str(partition)}
        )

    reasons = metrics.set_commits(
        {
            ("s", 0): (40, [40, 41, 42]),  # follows the commit
            ("s", 1): (40, [62, 63]),  # a hole before them: never committed
            ("s", 2): (40, [40, 41, 41, 42]),  # acked twice: one offset per commit
            ("s", 3): (None, [5, 6]),  # nothing committed yet
            ("s", 4): (40, []),
        }
    )
    assert [blocked(p) for p in range(5)] == [0, 1, 1, 0, 0]
    assert reasons == {
        ("s", 1): "offsets 40-61 were never acked (2 acked after them)",
        ("s", 2): "1 offsets acked twice, the first 41",
    }
    waiting = "invsync_consumer_acked_uncommitted_records"
    assert sample_value(registry, waiting, {"topic": "s", "partition": "2"}) == 4
    metrics.set_commits({("s", 1): (64, [])})  # the others were revoked
    assert blocked(1) == 0 and blocked(0) is None
    assert sample_value(registry, waiting, {"topic": "s", "partition": "0"}) is None


def test_commit_state_reads_the_consumers_bookkeeping(tmp_path: Path) -> None:
    from faust.types import TP

    from streams import faustcompat
    from streams.app import create_app
    from streams.settings import Settings

    app = create_app(Settings(data_dir=tmp_path, callback_auth="none", app_id="t-commits")).app
    consumer = app.consumer
    acked, other = TP("orders-t", 1), TP("orders-t", 2)
    app.topics._acking_topics.add("orders-t")
    consumer._committed_offset[acked] = 40
    consumer._acked[acked] = [41, 40]
    consumer.assignment = lambda: {acked, other, TP("no-acks", 0)}
    assert faustcompat.commit_state(consumer) == {
        ("orders-t", 1): (40, [41, 40]),
        ("orders-t", 2): (None, []),
    }
