"""invsync's Grafana dashboards as code, with Grafana's grafana-foundation-sdk.

    python dashboards/generate.py           rewrite dashboards/grafana/*.json
    python dashboards/generate.py --check   exit 1 if a committed file differs

The JSON files are what Grafana provisions (docker-compose.yml mounts them); they are
generated, never edited by hand. `tests/unit/test_dashboards.py` fails when they differ
from what this module generates. The SDK is in the `dashboards` extra, not a dependency
of the worker, which never imports this module.

Every query is scoped to the `$instance` variable (the workers to show) and runs on the
`$datasource` variable (any Prometheus datasource), so the files carry no datasource uid.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

OUT = Path(__file__).resolve().parent / "grafana"

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
INSTANCE = 'instance=~"$instance"'
RATE = "[$__rate_interval]"

E2E_TARGET_S = 0.05
"""DESIGN.md: end-to-end p99 <= 50 ms with debounce 0, so the target line is debounce + 50 ms."""
STOCKOUT_TARGET_S = 0.1
"""DESIGN.md: stock-out propagation p99 <= 100 ms with any debounce."""


def sel(metric: str, *matchers: str) -> str:
    """`metric{instance=~"$instance", ...}`: every series a panel reads, scoped to $instance."""
    return f"{metric}{{{', '.join((INSTANCE, *matchers))}}}"


def rate(metric: str, *matchers: str) -> str:
    return f"rate({sel(metric, *matchers)}{RATE})"


def quantile(q: float, metric: str, *by: str) -> str:
    labels = ", ".join((*by, "le"))
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(metric + '_bucket')}))"


@dataclass(frozen=True)
class Q:
    """One query of a panel: PromQL and its legend."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Line:
    """A reference line drawn from a query (a configured window), dashed in a fixed color."""

    legend: str
    color: str


def _overrides(lines: Sequence[Line]) -> list[Builder[dm.DashboardFieldConfigSourceOverrides]]:
    out: list[Builder[dm.DashboardFieldConfigSourceOverrides]] = []
    for line in lines:
        props = {
            "color": {"mode": "fixed", "fixedColor": line.color},
            "custom.lineStyle": {"fill": "dash", "dash": [10, 10]},
            "custom.fillOpacity": 0,
            "custom.stacking": {"mode": "none", "group": "A"},
        }
        matcher = dm.MatcherConfig(id_val="byName", options=line.legend)
        out.append(
            db.DashboardFieldConfigSourceOverrides()
            .matcher(matcher)
            .properties([dm.DynamicConfigValue(id_val=k, value=v) for k, v in props.items()])
        )
    return out


class Board:
    """A dashboard under construction: numbers its panels and lays them out in rows."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]) -> None:
        self.next_id = 1
        self.builder = (
            db.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["invsync", *tags])
            .editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .time("now-1h", "now")
            .refresh("10s")
            .timezone("browser")
            .annotation(
                db.AnnotationQuery()
                .name("Annotations & Alerts")
                .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                .enable(True)
                .hide(True)
                .icon_color("rgba(0, 211, 255, 1)")
                .type("dashboard")
                .built_in(1)
            )
            .link(
                db.DashboardLink("invsync")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["invsync"])
                .icon("external link")
                .keep_time(True)
                .include_vars(True)
            )
            .with_variable(
                db.DatasourceVariable("datasource").label("Data source").type("prometheus")
            )
            .with_variable(
                db.QueryVariable("instance")
                .label("Instance")
                .datasource(DATASOURCE)
                .query("label_values(invsync_stock_events_total, instance)")
                .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(dm.VariableSort.ALPHABETICAL_ASC)
                .multi(True)
                .include_all(True)
            )
        )

    def _id(self) -> int:
        n = self.next_id
        self.next_id += 1
        return n

    def row(self, title: str) -> Board:
        self.builder.with_row(db.Row(title).id(self._id()))
        return self

    def panel(
        self,
        title: str,
        description: str,
        unit: str,
        queries: Sequence[Q],
        *,
        width: int = 12,
        stacked: bool = False,
        threshold: float | None = None,
        lines: Sequence[Line] = (),
    ) -> Board:
        steps = [dm.Threshold(value=None, color="green")]
        if threshold is not None:
            steps.append(dm.Threshold(value=threshold, color="red"))
        panel = (
            ts.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .height(8)
            .span(width)
            .unit(unit)
            .min(0)
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
            .thresholds(db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps))
            .thresholds_style(
                cb.GraphThresholdsStyleConfig().mode(
                    cm.GraphThresholdsStyleMode.DASHED
                    if threshold is not None
                    else cm.GraphThresholdsStyleMode.OFF
                )
            )
            .draw_style(cm.GraphDrawStyle.LINE)
            .line_width(1)
            .fill_opacity(30 if stacked else 10)
            .show_points(cm.VisibilityMode.NEVER)
            .span_nulls(False)
            .stacking(
                cb.StackingConfig()
                .mode(cm.StackingMode.NORMAL if stacked else cm.StackingMode.NONE)
                .group("A")
            )
            .legend(
                cb.VizLegendOptions()
                .display_mode(cm.LegendDisplayMode.TABLE)
                .placement(cm.LegendPlacement.BOTTOM)
                .show_legend(True)
                .calcs(["lastNotNull", "max"])
            )
            .tooltip(
                cb.VizTooltipOptions()
                .mode(cm.TooltipDisplayMode.MULTI)
                .sort(cm.SortOrder.DESCENDING)
            )
            .overrides(_overrides(lines))
        )
        for ref, query in zip("ABCDEFGH", queries, strict=False):
            panel.with_target(
                pb.Dataquery()
                .ref_id(ref)
                .datasource(DATASOURCE)
                .expr(query.expr)
                .legend_format(query.legend)
                .range()
            )
        self.builder.with_panel(panel)
        return self

    def json(self) -> str:
        return (
            json.dumps(self.builder.build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
        )


def inventory_sync() -> Board:
    debounce = f"max({sel('invsync_config_debounce_seconds')})"
    max_delay = f"max({sel('invsync_config_max_delay_seconds')})"
    target = Line("target: debounce + 50 ms", "red")
    bound = Line("max delay", "orange")
    b = Board(
        "invsync-inventory-sync",
        "Inventory sync",
        "invsync: stock events in, coalesced absolute updates out, latency, stock-outs, health.",
        ["kafka", "inventory"],
    )
    b.row("Throughput")
    b.panel(
        "Stock events in",
        "Stock events consumed per second, by type (DELTA, SNAPSHOT).",
        "ops",
        [Q(f"sum by (type) ({rate('invsync_stock_events_total')})", "{{type}}")],
        width=8,
        stacked=True,
    )
    b.panel(
        "Inventory updates out",
        "Absolute inventory updates published to marketplace.inventory per second.",
        "ops",
        [Q(f"sum({rate('invsync_inventory_updates_published_total')})", "updates")],
        width=8,
    )
    b.panel(
        "Coalescing ratio",
        "Updates published per stock event consumed: rate(updates) / rate(stock events). "
        "Lower is more coalescing; 1 means every event gave an update.",
        "percentunit",
        [
            Q(
                f"sum({rate('invsync_inventory_updates_published_total')}) / "
                f"sum({rate('invsync_stock_events_total')})",
                "updates per event",
            )
        ],
        width=8,
    )
    b.panel(
        "Inventory commands",
        "Reserve / cancel / release / accept commands applied per second.",
        "ops",
        [Q(f"sum by (type) ({rate('invsync_inventory_commands_total')})", "{{type}}")],
        stacked=True,
    )
    b.panel(
        "Duplicates dropped",
        "Repeated events dropped (eventId ring, source offset), by source.",
        "ops",
        [Q(f"sum by (source) ({rate('invsync_duplicates_dropped_total')})", "{{source}}")],
    )
    b.panel(
        "Consolidated ATP (INVSYNC_CONSOLIDATED)",
        "Updates published per second to marketplace.inventory-consolidated (one per SKU "
        "over all its locations), and the per-location records the consolidation read, by "
        "outcome: newer (held) or stale (a version already beaten: replays, rebalances).",
        "ops",
        [
            Q(f"sum({rate('invsync_consolidated_updates_published_total')})", "updates"),
            Q(
                f"sum by (outcome) ({rate('invsync_consolidated_records_total')})",
                "records {{outcome}}",
            ),
        ],
        width=24,
    )
    b.row("Latency")
    b.panel(
        "End-to-end latency",
        "occurredAt → published. A key that changes once is published after the debounce "
        "window, one that keeps changing within the max delay. The dashed lines follow the "
        "workers' configuration: the target is debounce + 50 ms (DESIGN.md: p99 ≤ 50 ms with "
        "debounce 0); a p99 above the max delay fires InvsyncFreshnessBeyondMaxDelay.",
        "s",
        [
            Q(quantile(0.5, "invsync_end_to_end_latency_seconds"), "p50"),
            Q(quantile(0.99, "invsync_end_to_end_latency_seconds"), "p99"),
            Q(quantile(0.99, "invsync_publish_delay_seconds"), "p99 from first change seen"),
            Q(f"{debounce} + {E2E_TARGET_S}", target.legend),
            Q(max_delay, bound.legend),
        ],
        lines=[target, bound],
    )
    b.panel(
        "Stock-out propagation p99",
        "occurredAt of the event that made ATP 0 → published. Target: p99 ≤ 100 ms with any "
        "debounce (stock-outs are not debounced).",
        "s",
        [Q(quantile(0.99, "invsync_stockout_propagation_seconds"), "p99")],
        width=6,
        threshold=STOCKOUT_TARGET_S,
    )
    b.panel(
        "Stock-outs",
        "Updates published with quantity 0, per second.",
        "ops",
        [Q(f"sum({rate('invsync_stockouts_published_total')})", "stock-outs")],
        width=6,
    )
    b.row("Health")
    b.panel(
        "Dead letters by reason",
        "Messages sent to invsync.dead-letters per second. Anything above 0 needs a look.",
        "ops",
        [Q(f"sum by (reason) ({rate('invsync_dead_letters_total')})", "{{reason}}")],
        stacked=True,
    )
    b.panel(
        "Consumer lag",
        "Records behind the high watermark, by topic (sum over partitions and workers).",
        "short",
        [Q(f"sum by (topic) ({sel('invsync_consumer_lag_records')})", "{{topic}}")],
    )
    b.panel(
        "Commits",
        "Offsets processed and acked, waiting for a commit, by topic; and partitions whose "
        "acked offsets cannot be committed as they are (should stay 0: a stuck commit).",
        "short",
        [
            Q(
                f"sum by (topic) ({sel('invsync_consumer_acked_uncommitted_records')})",
                "acked, uncommitted: {{topic}}",
            ),
            Q(f"sum({sel('invsync_consumer_commit_blocked')})", "partitions blocked"),
        ],
    )
    b.panel(
        "Keys pending",
        "Keys with an unpublished ATP change, and published keys not yet pushed to the "
        "marketplace.",
        "short",
        [
            Q(f"sum({sel('invsync_keys_pending_publish')})", "pending publish"),
            Q(f"sum({sel('invsync_keys_pending_push')})", "pending push"),
        ],
    )
    b.panel(
        "Reservations",
        "Open reservations, and reservations released by expiry (should stay 0: alert).",
        "short",
        [
            Q(f"sum({sel('invsync_reservations_open')})", "open"),
            Q(f"sum(increase({sel('invsync_reservations_expired_total')}{RATE}))", "expired"),
        ],
    )
    b.row("Workers")
    b.panel(
        "Workers ready",
        "Workers scraped, and those ready (partitions assigned, tables recovered).",
        "short",
        [
            Q(f"count({sel('invsync_ready')})", "scraped"),
            Q(f"sum({sel('invsync_ready')})", "ready"),
        ],
        width=8,
    )
    b.panel(
        "CPU",
        "CPU time per second of each worker process (1 = one core).",
        "short",
        [Q(f"sum by (instance) ({rate('process_cpu_seconds_total')})", "{{instance}}")],
        width=8,
    )
    b.panel(
        "Memory",
        "Resident memory of each worker process.",
        "bytes",
        [Q(f"sum by (instance) ({sel('process_resident_memory_bytes')})", "{{instance}}")],
        width=8,
    )
    return b


def order_lifecycle() -> Board:
    b = Board(
        "invsync-order-lifecycle",
        "Order lifecycle",
        "invsync: orders to Increff, Increff callbacks back, order updates, marketplace "
        "inventory push.",
        ["increff", "orders"],
    )
    b.row("Increff API")
    b.panel(
        "Increff calls by endpoint and status",
        "Attempts per second against Increff's Standard APIs (401/403: credentials).",
        "reqps",
        [
            Q(
                f"sum by (endpoint, status) ({rate('invsync_increff_requests_total')})",
                "{{endpoint}} {{status}}",
            )
        ],
    )
    b.panel(
        "Increff latency p99",
        "p99 duration of one attempt, by endpoint.",
        "s",
        [Q(quantile(0.99, "invsync_increff_request_duration_seconds", "endpoint"), "{{endpoint}}")],
    )
    b.panel(
        "Increff retries",
        "Attempts retried (5xx, 429, network errors), by endpoint.",
        "ops",
        [Q(f"sum by (endpoint) ({rate('invsync_increff_retries_total')})", "{{endpoint}}")],
    )
    b.panel(
        "Increff rejections",
        "Order events Increff refused with a 4xx (published as INCREFF_REJECTED), by type.",
        "ops",
        [Q(f"sum by (type) ({rate('invsync_increff_rejections_total')})", "{{type}}")],
    )
    b.panel(
        "Increff credentials refused",
        "Order attempts Increff answered 401/403: our credentials, not an outage.",
        "ops",
        [Q(f"sum ({rate('invsync_increff_auth_failures_total')})", "refused")],
    )
    b.panel(
        "Orders parked",
        "Orders waiting for a background retry (Increff could not take them), parked per second.",
        "short",
        [
            Q(f"sum ({sel('invsync_orders_waiting')})", "waiting"),
            Q(f"sum ({rate('invsync_orders_parked_total')})", "parked/s"),
        ],
    )
    b.row("Callbacks")
    b.panel(
        "Callbacks by path and status",
        "Increff callbacks served per second.",
        "reqps",
        [Q(f"sum by (path, status) ({rate('invsync_callbacks_total')})", "{{path}} {{status}}")],
    )
    b.panel(
        "Callback latency p99",
        "p99 time to answer a callback, by path.",
        "s",
        [Q(quantile(0.99, "invsync_callback_duration_seconds", "path"), "{{path}}")],
    )
    b.row("Order flow")
    b.panel(
        "Order events by type",
        "marketplace.orders events consumed per second.",
        "ops",
        [Q(f"sum by (type) ({rate('invsync_order_events_total')})", "{{type}}")],
        stacked=True,
    )
    b.panel(
        "Order updates by type",
        "marketplace.order-updates published per second.",
        "ops",
        [Q(f"sum by (type) ({rate('invsync_order_updates_published_total')})", "{{type}}")],
        stacked=True,
    )
    b.row("Marketplace inventory push")
    b.panel(
        "Push requests by status",
        "Requests to the marketplace inventory Client URL per second.",
        "reqps",
        [Q(f"sum by (status) ({rate('invsync_marketplace_requests_total')})", "{{status}}")],
        width=8,
    )
    b.panel(
        "Push latency",
        "Duration of one push request.",
        "s",
        [
            Q(quantile(0.5, "invsync_marketplace_request_duration_seconds"), "p50"),
            Q(quantile(0.99, "invsync_marketplace_request_duration_seconds"), "p99"),
        ],
        width=8,
    )
    b.panel(
        "SKU failures",
        "SKUs the marketplace listed in failureList, and push calls refused for our "
        "credentials (401/403), per second.",
        "ops",
        [
            Q(f"sum({rate('invsync_marketplace_sku_failures_total')})", "failed SKUs"),
            Q(f"sum({rate('invsync_marketplace_auth_failures_total')})", "refused (401/403)"),
        ],
        width=8,
    )
    return b


DASHBOARDS = {
    "inventory-sync.json": inventory_sync,
    "order-lifecycle.json": order_lifecycle,
}


def render_all() -> dict[str, str]:
    """File name → JSON text of every dashboard, as committed in dashboards/grafana/."""
    return {name: build().json() for name, build in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = OUT / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run python dashboards/generate.py)")
        return 1
    for name in stale:
        print(f"wrote dashboards/grafana/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
