"""Orders/s of one worker against the mock Increff with added latency.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python -m bench.orders --orders 2000

Starts the mock Increff (``--latency-ms`` added to every answer), an `invsync worker`
talking to it, produces ``--orders`` ORDER_CREATED events (distinct orderCodes, spread
over the topic's partitions) and reports how many Increff applied per second, from the
first produce until the last order reached Increff.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from invsync.mocks.increff import MockIncreff
from tests.integration.inventory_support import order_created
from tests.integration.support import WorkerProcess, isolated_env, produce


async def run(orders: int, latency_ms: float, bootstrap: str) -> float:
    mock = MockIncreff(username="u", password="bench-pass", domain="d")
    mock.latency_s = latency_ms / 1000
    await mock.start()
    with tempfile.TemporaryDirectory() as tmp:
        env = isolated_env(
            bootstrap,
            Path(tmp) / "data",
            INVSYNC_INCREFF_BASE_URL=mock.base_url,
            INVSYNC_INCREFF_USERNAME="u",
            INVSYNC_INCREFF_PASSWORD="bench-pass",
            INVSYNC_INCREFF_DOMAIN="d",
            INVSYNC_CALLBACK_AUTH="none",
            INVSYNC_CALLBACK_HEADERS='{"x-bench": "bench"}',
        )
        worker = WorkerProcess(env, Path(tmp) / "worker.log")
        await asyncio.to_thread(worker.start, 90.0, ready=True)
        try:
            # warm-up: one order, so topic metadata and connections exist
            await produce(bootstrap, env["INVSYNC_TOPIC_ORDERS"], [_order("warm", 0)])
            await mock.wait_until(lambda: len(mock.orders) == 1, within=60)
            started = time.monotonic()
            cpu0 = _cpu_s(worker)
            await produce(
                bootstrap,
                env["INVSYNC_TOPIC_ORDERS"],
                [_order("b", i) for i in range(orders)],
            )
            await mock.wait_until(lambda: len(mock.orders) == orders + 1, within=600)
            elapsed = time.monotonic() - started
            print(
                f"worker CPU {(_cpu_s(worker) - cpu0) / elapsed:.0%} of a core over {elapsed:.1f}s"
            )
        finally:
            if os.environ.get("BENCH_LOG"):
                print(worker.log_tail(int(os.environ["BENCH_LOG"])))
            await asyncio.to_thread(worker.stop)
            await mock.stop()
    return orders / elapsed


def _cpu_s(worker: WorkerProcess) -> float:
    assert worker.proc is not None
    fields = Path(f"/proc/{worker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _order(tag: str, i: int) -> tuple[bytes, bytes]:
    return order_created(f"{tag}-e{i}", f"{tag.upper()}-ORD-{i}", "WH1", [(f"SKU{i % 50}", 1)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    rate = asyncio.run(run(args.orders, args.latency_ms, bootstrap))
    print(f"{args.orders} orders, Increff +{args.latency_ms:.0f} ms: {rate:.1f} orders/s")


if __name__ == "__main__":
    main()
