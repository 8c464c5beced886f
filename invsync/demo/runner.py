"""`invsync demo`: the whole product on one machine, checked against a ground truth.

1. a Kafka broker: ``KAFKA_BOOTSTRAP_SERVERS`` when set, else the local broker of
   ``invsync kafka`` (started here unless it already runs; stopped at the end only if
   it was started here);
2. a MockIncreff and a MockMarketplace in this process, on free ports;
3. an ``invsync worker`` subprocess with a unique app id and topic names (reruns
   start clean), pushing inventory to the mock marketplace and orders to mock Increff;
4. the simulator, paced, with one progress line a second;
5. convergence (bounded), then a summary comparing the marketplace's final quantities
   with the simulator's ground truth. Exit code 0 only if every key matches.

SIGINT / SIGTERM stop everything: the worker's process group, the mocks, the broker
if started here. Output is plain lines (fine in a terminal and in a log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from invsync import localkafka
from invsync.demo.feed import FeedProgress, make_producer, out, run_feed
from invsync.demo.lookup import LookupProbe
from invsync.demo.promtext import Samples, parse
from invsync.demo.simulator import SimConfig, Simulator
from invsync.mocks.increff import MockIncreff
from invsync.mocks.marketplace import MockMarketplace
from streams.kafka import security_kwargs
from streams.settings import load_settings

INCREFF_USER = "invsync-user"
INCREFF_PASSWORD = "invsync-pass"  # noqa: S105 - the mock's published demo default
INCREFF_DOMAIN = "invsync-domain"
CALLBACK_HEADERS = '{"authUsername": "increff", "authPassword": "demo-callback-secret"}'
"""The headers the demo worker requires of Increff's callbacks (as docker-compose.yml)."""

ORDER_SETTLE_S = 2.0
"""Seconds an order must have been at Increff before its picks and cancellations go."""

EXIT_MISMATCH = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float = 60.0
    rate: float = 2000.0
    order_rate: float = 20.0
    keys: int = 1000
    locations: int = 4
    seed: int = 1
    debounce_ms: int = 200
    max_delay_ms: int = 1000
    converge_timeout: float = 60.0
    ready_timeout: float = 120.0
    kafka_port: int = localkafka.DEFAULT_PORT
    kafka_data_dir: Path = localkafka.DEFAULT_DATA_DIR
    work_dir: Path = Path(".invsync/demo")
    keep_topics: bool = False


class _Stop(BaseException):
    """SIGTERM outside the event loop (broker start/stop): unwind like Ctrl-C."""


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass(slots=True)
class _Outputs:
    """What the demo read back from `marketplace.inventory`."""

    updates: int = 0
    freshness: list[float] = field(default_factory=list)
    """publishedAt - asOf of each update: newest change included → published."""
    latest: dict[str, tuple[int, int]] = field(default_factory=dict)
    """key → (version, quantity)."""


class Demo:
    def __init__(
        self, opts: DemoOptions, bootstrap: str, security: dict[str, Any] | None = None
    ) -> None:
        self.opts = opts
        self.bootstrap = bootstrap
        self.security = security or {}  # aiokafka's security arguments (streams/kafka.py)
        tag = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.tag = tag
        self.app_id = f"invsync-demo-{tag}"
        self.topics = {
            "stock": f"warehouse.stock-events.demo-{tag}",
            "orders": f"marketplace.orders.demo-{tag}",
            "shipments": f"marketplace.shipments.demo-{tag}",
            "inventory": f"marketplace.inventory.demo-{tag}",
            "order_updates": f"marketplace.order-updates.demo-{tag}",
            "dead_letters": f"invsync.dead-letters.demo-{tag}",
        }
        self.work_dir = opts.work_dir
        self.data_dir = opts.work_dir / "data" / self.app_id
        self.log_path = opts.work_dir / "worker.log"
        self.web_port = localkafka.free_port()
        self.increff = MockIncreff(
            username=INCREFF_USER, password=INCREFF_PASSWORD, domain=INCREFF_DOMAIN
        )
        self.market = MockMarketplace()
        self.sim = Simulator(
            SimConfig(
                keys=opts.keys,
                locations=opts.locations,
                seed=opts.seed,
                tag=f"d{uuid.uuid4().hex[:6]}",
                order_rate=opts.order_rate,
            ),
            ready=self._increff_has,
        )
        self.feed = FeedProgress()
        self.lookups = LookupProbe(
            f"http://127.0.0.1:{self.web_port}", json.loads(CALLBACK_HEADERS), self.sim
        )
        self.outputs = _Outputs()
        self.metrics = Samples()
        self.phase = "starting"
        self.t0 = time.monotonic()
        self.worker: subprocess.Popen[bytes] | None = None
        self.producer: AIOKafkaProducer | None = None
        self.http: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._seen: dict[str, float] = {}

    def _increff_has(self, order_code: str) -> bool:
        """May the simulator pick or cancel this order yet?

        A pick names its orderCode on the stock-events topic while the order's RESERVE
        travels orders -> router -> commands topic: if the pick overtook the RESERVE, the
        reservation would stay open (the worker's ATP too low) and the ground truth
        would depend on timing. So: Increff has had the order for a while (the worker
        sends the RESERVE commands before calling Increff), and the worker is not
        lagging behind the stock events.
        """
        now = time.monotonic()
        if order_code not in self.increff.orders:
            return False
        seen = self._seen.setdefault(order_code, now)
        if now - seen < ORDER_SETTLE_S:
            return False
        behind = self.feed.stock - self.metrics.total("invsync_stock_events_total")
        return behind <= max(100.0, self.opts.rate)

    # --- the run -------------------------------------------------------------------

    async def run(self) -> int:
        opts = self.opts
        await self.increff.start()
        await self.market.start()
        out(f"mock Increff      {self.increff.base_url}  (user {INCREFF_USER})")
        out(f"mock marketplace  {self.market.base_url}/inventory")
        self.http = httpx.AsyncClient(timeout=2.0)
        await self._start_worker()
        self._consumer = AIOKafkaConsumer(
            self.topics["inventory"],
            bootstrap_servers=self.bootstrap.split(","),
            **self.security,
            auto_offset_reset="earliest",
            group_id=None,
            enable_auto_commit=False,
        )
        await self._consumer.start()
        self._tasks.append(asyncio.create_task(self._read_outputs(self._consumer)))
        self._tasks.append(asyncio.create_task(self._report_every_second()))
        self._tasks.append(asyncio.create_task(self.lookups.run(self.http)))
        self.producer = make_producer(self.bootstrap, **self.security)
        await self.producer.start()
        out(
            f"simulating {opts.keys:,} keys over {opts.locations} locations for "
            f"{opts.duration:.0f} s at {opts.rate:,.0f} events/s incl. {opts.order_rate:g} "
            f"orders/s (seed {opts.seed}), "
            f"debounce {opts.debounce_ms} ms, max delay {opts.max_delay_ms} ms"
        )
        self.phase = "feeding"
        self.t0 = time.monotonic()
        await run_feed(
            self.sim,
            self.producer,
            stock_topic=self.topics["stock"],
            orders_topic=self.topics["orders"],
            rate=opts.rate,
            duration=opts.duration,
            progress=self.feed,
        )
        self.phase = "converging"
        converged_in = await self._converge()
        if converged_in is not None:
            await self.lookups.check(self.http)
        self.phase = "done"
        await self._poll_metrics()
        return self._summary(converged_in)

    async def _start_worker(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        inherited = dict(os.environ)
        if not self.security:  # a local PLAINTEXT broker: no cluster's credentials
            for name in [n for n in inherited if n.startswith(("KAFKA_SASL_", "KAFKA_SSL_"))]:
                del inherited[name]
            inherited["KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
        env = {
            **inherited,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "INVSYNC_APP_ID": self.app_id,
            "INVSYNC_DATA_DIR": str(self.data_dir),
            "INVSYNC_WEB_HOST": "127.0.0.1",
            "INVSYNC_WEB_PORT": str(self.web_port),
            "INVSYNC_TOPIC_STOCK_EVENTS": self.topics["stock"],
            "INVSYNC_TOPIC_ORDERS": self.topics["orders"],
            "INVSYNC_TOPIC_SHIPMENTS": self.topics["shipments"],
            "INVSYNC_TOPIC_INVENTORY": self.topics["inventory"],
            "INVSYNC_TOPIC_ORDER_UPDATES": self.topics["order_updates"],
            "INVSYNC_TOPIC_DEAD_LETTERS": self.topics["dead_letters"],
            "INVSYNC_INCREFF_BASE_URL": self.increff.base_url,
            "INVSYNC_INCREFF_USERNAME": INCREFF_USER,
            "INVSYNC_INCREFF_PASSWORD": INCREFF_PASSWORD,
            "INVSYNC_INCREFF_DOMAIN": INCREFF_DOMAIN,
            "INVSYNC_MARKETPLACE_INVENTORY_URL": f"{self.market.base_url}/inventory",
            "INVSYNC_MARKETPLACE_HEADERS": "{}",
            "INVSYNC_CALLBACK_HEADERS": CALLBACK_HEADERS,
            "INVSYNC_DEBOUNCE_MS": str(self.opts.debounce_ms),
            "INVSYNC_MAX_DELAY_MS": str(max(self.opts.max_delay_ms, self.opts.debounce_ms)),
            "INVSYNC_SAFETY_STOCK": "0",
            "INVSYNC_SAFETY_STOCK_OVERRIDES": "{}",
            "INVSYNC_RESERVATION_TTL_S": "86400",
        }
        log = self.log_path.open("wb")
        try:
            self.worker = subprocess.Popen(  # noqa: ASYNC220 - Popen does not wait
                [sys.executable, "-m", "invsync.cli", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        out(
            f"worker            pid {self.worker.pid}, app id {self.app_id}, "
            f"http://127.0.0.1:{self.web_port}/metrics, log {self.log_path}"
        )
        deadline = time.monotonic() + self.opts.ready_timeout
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise RuntimeError(
                    f"the worker exited with code {self.worker.returncode}:\n{self._log_tail()}"
                )
            if await self._healthy() and b"Worker]: Ready" in self.log_path.read_bytes():
                out(f"worker ready after {time.monotonic() - self.t0:.1f} s")
                return
            await asyncio.sleep(0.25)
        raise RuntimeError(
            f"the worker was not ready within {self.opts.ready_timeout:.0f} s:\n{self._log_tail()}"
        )

    async def _healthy(self) -> bool:
        assert self.http is not None
        try:
            resp = await self.http.get(f"http://127.0.0.1:{self.web_port}/health")
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def _poll_metrics(self) -> None:
        assert self.http is not None
        with contextlib.suppress(httpx.HTTPError):
            resp = await self.http.get(f"http://127.0.0.1:{self.web_port}/metrics")
            if resp.status_code == 200:
                self.metrics = parse(resp.text)

    async def _read_outputs(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    value: dict[str, Any] = orjson.loads(record.value)
                    self.outputs.updates += 1
                    published = datetime.fromisoformat(value["publishedAt"])
                    as_of = datetime.fromisoformat(value["asOf"])
                    self.outputs.freshness.append((published - as_of).total_seconds())
                    key = record.key.decode()
                    version, quantity = int(value["version"]), int(value["quantity"])
                    seen = self.outputs.latest.get(key)
                    if seen is None or version > seen[0]:
                        self.outputs.latest[key] = (version, quantity)

    async def _report_every_second(self) -> None:
        """One line a second, on schedule: metrics are read by their own task, so a
        slow `/metrics` answer shows slightly older figures rather than a gap."""
        poller = asyncio.create_task(self._poll_metrics_forever())
        try:
            next_at = time.monotonic() + 1.0
            while True:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1.0
                out(self._progress_line())
        finally:
            poller.cancel()
            with contextlib.suppress(BaseException):
                await poller

    async def _poll_metrics_forever(self) -> None:
        while True:
            await self._poll_metrics()
            await asyncio.sleep(0.5)

    def _progress_line(self) -> str:
        m = self.metrics
        consumed = m.total("invsync_stock_events_total") + m.total("invsync_order_events_total")
        updates = m.total("invsync_inventory_updates_published_total")
        ratio = updates / consumed if consumed else 0.0
        p99 = m.quantile("invsync_end_to_end_latency_seconds", 0.99)
        elapsed = time.monotonic() - self.t0
        return (
            f"[{elapsed:5.1f}s] {self.phase:<10} events in {self.feed.total:>9,} "
            f"({self.feed.rate:>6,.0f}/s) | worker {consumed:>9,.0f} | updates out "
            f"{updates:>7,.0f} (ratio {ratio:.3f}) | p99 freshness {_fmt_s(p99):>7} | "
            f"lookup p99 {_fmt_s(self.lookups.p(0.99)):>6} | "
            f"pushes {len(self.market.received):>7,} | Increff orders {len(self.increff.orders):,}"
        )

    def _mismatches(self) -> list[tuple[tuple[str, str], int, int | None]]:
        latest = self.market.latest
        return [
            (key, want, latest.get(key))
            for key, want in sorted(self.sim.truth.quantities().items())
            if latest.get(key) != want
        ]

    async def _converge(self) -> float | None:
        """Wait until the worker consumed everything, published and pushed it, and the
        marketplace shows the ground truth; the seconds it took, None on timeout."""
        start = time.monotonic()
        deadline = start + self.opts.converge_timeout
        while time.monotonic() < deadline:
            await self._poll_metrics()
            m = self.metrics
            caught_up = (
                m.total("invsync_stock_events_total") >= self.feed.stock
                and m.total("invsync_order_events_total") >= self.feed.orders
                and m.total("invsync_keys_pending_publish") == 0
                and m.total("invsync_keys_pending_push") == 0
            )
            if caught_up and not self._mismatches():
                return time.monotonic() - start
            await asyncio.sleep(0.25)
        return None

    def _summary(self, converged_in: float | None) -> int:
        m, feed, sim = self.metrics, self.feed, self.sim
        stock_in = m.total("invsync_stock_events_total")
        orders_in = m.total("invsync_order_events_total")
        updates = m.total("invsync_inventory_updates_published_total")
        consumed = stock_in + orders_in
        fresh = sorted(self.outputs.freshness)
        p50 = m.quantile("invsync_end_to_end_latency_seconds", 0.5)
        p99 = m.quantile("invsync_end_to_end_latency_seconds", 0.99)
        truth = sim.truth.quantities()
        mismatches = self._mismatches()
        stats = sim.stats
        lines = [
            "",
            "=== invsync demo summary " + "=" * 50,
            f"events        {feed.total:,} produced in {feed.elapsed:.1f} s "
            f"({feed.rate:,.0f}/s): {feed.stock:,} stock events (snapshots {len(truth):,}, "
            f"GRN {stats['grn']:,}, adjustments {stats['adjust']:,}, damage {stats['damage']:,}, "
            f"picks {stats['picks']:,}), {feed.orders:,} order events",
            f"worker        consumed {stock_in:,.0f} stock + {orders_in:,.0f} order events, "
            f"dead letters {m.total('invsync_dead_letters_total'):,.0f}, "
            f"duplicates {m.total('invsync_duplicates_dropped_total'):,.0f}",
            f"updates       {updates:,.0f} published to {self.topics['inventory']} "
            f"({self.outputs.updates:,} read back)",
            f"coalescing    {updates / consumed if consumed else 0.0:.3f} updates per event "
            f"({consumed / updates if updates else 0.0:.1f} events per update)",
            f"freshness     p50 {_fmt_s(p50)}, p99 {_fmt_s(p99)} (first unpublished change -> "
            f"published, worker histogram); newest change -> published p50 "
            f"{_fmt_s(_percentile(fresh, 0.5))}, p99 {_fmt_s(_percentile(fresh, 0.99))}",
            f"Increff       {len(self.increff.orders):,} orders created, "
            f"{len(self.increff.cancellations):,} orders with cancellations "
            f"(simulated: {stats['orders']:,} orders, {stats['cancels']:,} cancellations; "
            f"{sim.open_orders:,} still open)",
            f"marketplace   {self.market.calls:,} PUT /inventory calls carrying "
            f"{len(self.market.received):,} quantities for {len(self.market.latest):,} keys",
            *self.lookups.summary(),
            "convergence   "
            + (
                f"{converged_in:.1f} s after the last event"
                if converged_in is not None
                else f"not reached within {self.opts.converge_timeout:.0f} s"
            ),
        ]
        if not mismatches:
            lines.append(
                f"check         OK: {len(truth)}/{len(truth)} keys match "
                "(marketplace quantity == simulator ground truth)"
            )
        else:
            lines.append(
                f"check         MISMATCH: {len(mismatches)}/{len(truth)} keys differ "
                "(key: expected / marketplace / marketplace.inventory topic)"
            )
            for (loc, sku), want, got in mismatches[:25]:
                topic = self.outputs.latest.get(f"{loc}:{sku}")
                lines.append(
                    f"              {loc}:{sku}: {want} / {got} / {topic[1] if topic else None}"
                )
            if len(mismatches) > 25:
                lines.append(f"              ... and {len(mismatches) - 25} more")
        lines.append("=" * 75)
        for line in lines:
            out(line)
        lookup_wrong = self.lookups.checked is not None and bool(self.lookups.checked[1])
        return 0 if not mismatches and not lookup_wrong else EXIT_MISMATCH

    # --- shutdown ------------------------------------------------------------------

    async def close(self) -> None:
        """Stop everything this run started; safe to call at any point of `run`."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self._stop_worker()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), 10)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 10)
        if self.http is not None:
            await self.http.aclose()
        await self.market.stop()
        await self.increff.stop()
        if not self.opts.keep_topics:
            await self._delete_topics()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    async def _stop_worker(self, grace_s: float = 10.0) -> None:
        proc = self.worker
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        if proc.poll() is None:
            out(f"worker did not stop within {grace_s:.0f} s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        # Anything left in the worker's process group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        out(f"worker stopped (exit code {proc.returncode})")

    async def _delete_topics(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap.split(","), request_timeout_ms=5000, **self.security
        )
        try:
            await asyncio.wait_for(admin.start(), 5)
            names = [
                t
                for t in await asyncio.wait_for(admin.list_topics(), 5)
                if t.startswith(self.app_id) or t.endswith(f"demo-{self.tag}")
            ]
            if names:
                await asyncio.wait_for(admin.delete_topics(names), 10)
        except Exception as exc:  # noqa: BLE001 - tidying up is best effort
            out(f"note: could not delete this run's topics ({type(exc).__name__})")
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


async def _amain(opts: DemoOptions, bootstrap: str, security: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    demo = Demo(opts, bootstrap, security)
    run = asyncio.create_task(demo.run())
    stopped_by: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if stopped_by:
            out(f"{sig.name}: still stopping, please wait")
            return
        stopped_by.append(sig)
        out(f"{sig.name}: stopping the demo")
        run.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        try:
            return await run
        except asyncio.CancelledError:
            if not stopped_by:
                raise
        except Exception as exc:  # noqa: BLE001 - report and clean up
            out(f"invsync demo: {type(exc).__name__}: {exc}")
            return 1
        return EXIT_SIGTERM if stopped_by[0] == signal.SIGTERM else EXIT_SIGINT
    finally:
        await demo.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _broker(opts: DemoOptions) -> tuple[str, Path | None, dict[str, Any]]:
    """The bootstrap servers, the data dir of a broker started here (to stop later), and
    the security arguments of the clients (those of the settings for a given cluster)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if given:
        settings = load_settings()
        protocol = settings.kafka_security_protocol
        out(f"kafka             {given} (KAFKA_BOOTSTRAP_SERVERS, {protocol})")
        return given, None, security_kwargs(settings)
    data_dir = opts.kafka_data_dir
    current = localkafka.status(data_dir)
    if current.running and current.bootstrap:
        if not current.answering:
            raise localkafka.LocalKafkaError(
                f"the broker of {data_dir} (pid {current.pid}) runs but does not answer"
            )
        out(f"kafka             {current.bootstrap} (already running, left running)")
        return current.bootstrap, None, {}
    port = opts.kafka_port if localkafka.port_free(opts.kafka_port) else localkafka.free_port()
    out(f"kafka             starting a local broker on 127.0.0.1:{port} ({data_dir}) ...")
    try:
        started = localkafka.start(port=port, data_dir=data_dir)
    except BaseException:
        localkafka.stop(data_dir)
        raise
    assert started.bootstrap is not None
    out(f"kafka             {started.bootstrap} (pid {started.pid}; stopped at the end)")
    return started.bootstrap, data_dir, {}


def run_demo(opts: DemoOptions) -> int:
    """Entry point of `invsync demo`; returns the exit code."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_term)
    started: Path | None = None
    code = EXIT_SIGINT
    try:
        try:
            bootstrap, started, security = _broker(opts)
            code = asyncio.run(_amain(opts, bootstrap, security))
        except KeyboardInterrupt:
            code = EXIT_SIGINT
        except _Stop:
            code = EXIT_SIGTERM
        finally:
            if started is not None:
                out("kafka             stopping the broker started by this demo")
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                localkafka.stop(started)
                signal.signal(signal.SIGINT, signal.default_int_handler)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code
