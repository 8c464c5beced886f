"""Kafka side of the simulator: produce its messages at a paced rate (`invsync simulate`)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from invsync.demo.simulator import Message, SimConfig, Simulator

TICK_S = 0.05


@dataclass(slots=True)
class FeedProgress:
    """Counts of what has been produced so far."""

    stock: int = 0
    orders: int = 0
    started: float = 0.0
    elapsed: float = 0.0
    done: bool = False

    @property
    def total(self) -> int:
        return self.stock + self.orders

    @property
    def rate(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else 0.0


def out(line: str) -> None:
    """One line to stdout, flushed (readable live in a terminal and in a log)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_producer(bootstrap: str, **security: Any) -> AIOKafkaProducer:
    """`security`: aiokafka's security arguments (`streams.kafka.security_kwargs`)."""
    return AIOKafkaProducer(
        bootstrap_servers=[b.strip() for b in bootstrap.split(",") if b.strip()],
        **security,
        linger_ms=5,
        acks="all",
        enable_idempotence=True,
    )


async def _send(
    producer: AIOKafkaProducer,
    topics: dict[str, str],
    batch: list[Message],
    progress: FeedProgress,
) -> None:
    futures = []
    for msg in batch:
        futures.append(
            await producer.send(
                topics[msg.topic], orjson.dumps(msg.value), key=msg.key.encode("utf-8")
            )
        )
        if msg.topic == "stock":
            progress.stock += 1
        else:
            progress.orders += 1
    if futures:
        await asyncio.gather(*futures)


async def run_feed(
    sim: Simulator,
    producer: AIOKafkaProducer,
    *,
    stock_topic: str,
    orders_topic: str,
    rate: float,
    duration: float,
    progress: FeedProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FeedProgress:
    """Initial snapshots, then activity at ``rate`` messages/s for ``duration`` seconds.

    The producer must be started; it is flushed before returning. Every message the
    simulator generated is produced (its ground truth counts them all).
    """
    progress = progress or FeedProgress()
    topics = {"stock": stock_topic, "orders": orders_topic}
    start = clock()
    progress.started = start
    await _send(producer, topics, sim.initial(datetime.now(UTC)), progress)
    while True:
        elapsed = clock() - start
        progress.elapsed = elapsed
        if elapsed >= duration:
            break
        deficit = int(rate * elapsed) - progress.total
        if deficit > 0:
            await _send(producer, topics, sim.next_batch(datetime.now(UTC), deficit), progress)
        await asyncio.sleep(TICK_S)
    await producer.flush()
    progress.elapsed = clock() - start
    progress.done = True
    return progress


def _write_json(path: Path, body: dict[str, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))


async def simulate(
    *,
    bootstrap: str,
    stock_topic: str,
    orders_topic: str,
    config: SimConfig,
    rate: float,
    duration: float,
    truth_path: Path | None = None,
    security: Mapping[str, Any] | None = None,
) -> int:
    """`invsync simulate`: produce, report every second, optionally write the ground truth."""
    sim = Simulator(config)
    producer = make_producer(bootstrap, **(security or {}))
    await producer.start()
    progress = FeedProgress()
    try:
        feed = asyncio.create_task(
            run_feed(
                sim,
                producer,
                stock_topic=stock_topic,
                orders_topic=orders_topic,
                rate=rate,
                duration=duration,
                progress=progress,
            )
        )
        while not feed.done():
            await asyncio.wait({feed}, timeout=1.0)
            out(
                f"[{progress.elapsed:5.1f}s] produced {progress.total:,} "
                f"({progress.stock:,} stock, {progress.orders:,} order events, "
                f"{progress.rate:,.0f}/s), open orders {sim.open_orders:,}"
            )
        await feed
    finally:
        await producer.stop()
    truth = sim.truth.quantities()
    stats = dict(sorted(sim.stats.items()))
    out(
        f"done: {progress.total:,} events in {progress.elapsed:.1f}s to {stock_topic} / "
        f"{orders_topic}; {len(truth):,} keys, total ATP {sum(truth.values()):,}; {stats}"
    )
    if truth_path is not None:
        body = {f"{loc}:{sku}": qty for (loc, sku), qty in sorted(truth.items())}
        await asyncio.to_thread(_write_json, truth_path, body)
        out(f"ground truth (expected ATP per key) written to {truth_path}")
    return 0
