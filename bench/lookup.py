"""Pre-order lookup latency: `POST /inventories/search-sku` with N keys loaded, idle and
while stock events flow.

    python -m bench.lookup [--keys 100000] [--locations 4] [--skus 100] [--workers 1]
        [--rate 5000] [--seconds 20] [--bootstrap 127.0.0.1:19092] [--worker-env K=V ...]

Loads one SNAPSHOT per key (SKU-i at LOC0..LOC{locations-1}), starts `--workers`
`invsync worker` processes of one group (default coalescing windows), waits until the
group's committed offsets reach N, then times lookups of `--skus` random SKUs each,
`--lookup-rate` a second (one at a time, over keep-alive connections, alternating between
the workers; 0: back to back):
  idle      for `--seconds`, nothing else flowing;
  loaded    for `--seconds`, while a separate process produces DELTAs at `--rate`/s.
Reports p50 / p99 / max per phase (client side: request sent → whole answer read), the
events/s the workers consumed meanwhile, and what the SKU index costs in memory for N keys.

One run per invocation; the machine is shared, so quote the load average beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import sys
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/lookup.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from bench.run import Kafka, loadavg
from bench.scale import ROOT, Worker, proc_kb, produce
from invsync.localkafka import free_port
from models.lookup import SkuIndex

TOKEN = {"x-bench-token": "bench-lookup"}
PATH = "/inventories/search-sku"


def key_of(i: int, locations: int) -> str:
    return f"LOC{i % locations}:SKU-{i // locations:07d}"


def event(key: str, typ: str, qty: int, at: datetime, n: int) -> bytes:
    loc, sku = key.split(":", 1)
    return orjson.dumps(
        {
            "eventId": f"{typ[0]}{n}",
            "type": typ,
            "locationCode": loc,
            "channelSkuCode": sku,
            "quantity": qty,
            "occurredAt": at.isoformat(),
        }
    )


def _feed(bs: str, topic: str, rate: float, seconds: float, keys: int, locations: int) -> None:
    """The loaded phase's producer, in its own process: DELTAs at `rate`/s, paced."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bs, linger_ms=5, acks=1)
        await producer.start()
        rng = random.Random(3)
        try:
            t0 = time.perf_counter()
            sent = 0
            while (elapsed := time.perf_counter() - t0) < seconds:
                due = int(elapsed * rate) + 1
                now = datetime.now(UTC)
                while sent < due:
                    key = key_of(rng.randrange(keys), locations)
                    value = event(key, "DELTA", rng.choice((-2, -1, 1, 3)), now, sent)
                    await producer.send(topic, value, key=key.encode())
                    sent += 1
                await asyncio.sleep(0.005)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of the processes so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _index_mb(keys: int, locations: int) -> float:
    """The SKU index's own memory (the key strings are the table's, shared)."""
    held = [key_of(i, locations) for i in range(keys)]
    tracemalloc.start()
    index = SkuIndex()
    for key in held:
        index.add(key)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del index
    return size / 1e6


async def _metric(http: httpx.AsyncClient, webs: list[str], prefix: str) -> float:
    """The sum over the workers of every sample whose line starts with `prefix`."""
    total = 0.0
    for web in webs:
        text = (await http.get(web + "/metrics")).text
        for line in text.splitlines():
            if line.startswith(prefix):
                total += float(line.rsplit(" ", 1)[1])
    return total


async def _stock_consumed(http: httpx.AsyncClient, webs: list[str]) -> float:
    return await _metric(http, webs, "invsync_stock_events_total{")


async def _phase(
    http: httpx.AsyncClient,
    webs: list[str],
    args: argparse.Namespace,
    skus: int,
    name: str,
    pids: list[int],
) -> dict[str, Any]:
    rng = random.Random(name)
    latencies: list[float] = []
    sent_at: list[float] = []
    short = 0
    consumed_before = await _stock_consumed(http, webs)
    cpu_before = cpu_s(pids)
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < args.seconds:
        if args.lookup_rate > 0:  # paced: the next one at its slot (none skipped)
            await asyncio.sleep(max(0.0, t0 + n / args.lookup_rate - time.perf_counter()))
        asked = [f"SKU-{rng.randrange(skus):07d}" for _ in range(args.skus)]
        web = webs[n % len(webs)]
        started = time.perf_counter()
        r = await http.post(web + PATH, json={"channelSkuCodes": asked}, headers=TOKEN)
        latencies.append(time.perf_counter() - started)
        sent_at.append(started - t0)
        n += 1
        if r.status_code != 200:
            raise RuntimeError(f"lookup answered {r.status_code}: {r.text[:300]}")
        answer = r.json()
        held = {item["channelSkuCode"]: len(item["inventories"]) for item in answer["successList"]}
        if any(held.get(s) != args.locations for s in asked):
            short += 1  # a key the workers do not hold (it would be a worker defect)
    elapsed = time.perf_counter() - t0
    cpu = cpu_s(pids) - cpu_before
    consumed = await _stock_consumed(http, webs) - consumed_before
    ms = [x * 1000 for x in latencies]
    slowest = sorted(range(len(ms)), key=ms.__getitem__)[-5:]
    return {
        "answers_missing_a_key": short,
        "slowest_at_s": {round(sent_at[i], 1): round(ms[i]) for i in sorted(slowest)},
        "phase": name,
        "lookups": len(ms),
        "p50_ms": round(_pct(ms, 0.50), 1),
        "p99_ms": round(_pct(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
        "consumed_per_s": round(consumed / elapsed),
        "worker_cpu_per_s": round(cpu / elapsed, 2),
        "load": loadavg(),
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    bs, n, parts = args.bootstrap, args.keys, args.partitions
    tag = uuid.uuid4().hex[:8]
    data = Path(f"/tmp/perf/lookup-{tag}")
    data.mkdir(parents=True, exist_ok=True)
    base_env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bs,
        "INVSYNC_APP_ID": f"lookup-{tag}",
        "INVSYNC_WEB_HOST": "127.0.0.1",
        "INVSYNC_TOPIC_PARTITIONS": str(parts),
        "INVSYNC_CALLBACK_HEADERS": json.dumps(TOKEN),
        "INVSYNC_LOG_LEVEL": "info",
        "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}",
    }
    for name in ("STOCK_EVENTS", "ORDERS", "SHIPMENTS", "INVENTORY", "ORDER_UPDATES"):
        base_env[f"INVSYNC_TOPIC_{name}"] = f"lookup-{name.lower().replace('_', '-')}-{tag}"
    base_env["INVSYNC_TOPIC_DEAD_LETTERS"] = f"lookup-dead-{tag}"
    for kv in args.worker_env:
        k_, v_ = kv.split("=", 1)
        base_env[k_] = v_
    stock = base_env["INVSYNC_TOPIC_STOCK_EVENTS"]
    res: dict[str, Any] = {
        "keys": n,
        "locations": args.locations,
        "skus_per_lookup": args.skus,
        "lookups_per_s": args.lookup_rate,
        "workers": args.workers,
        "partitions": parts,
        "index_mb": round(_index_mb(n, args.locations), 1),
        "load_before": loadavg(),
    }
    kafka = Kafka(bs)
    await kafka.start()
    workers: list[Worker] = []
    try:
        await kafka.create(stock, parts)
        at = datetime.now(UTC) - timedelta(hours=1)
        records = [
            (
                key_of(i, args.locations).encode(),
                event(key_of(i, args.locations), "SNAPSHOT", 50, at, i),
            )
            for i in range(n)
        ]
        await produce(bs, stock, records)

        def start(w: int) -> Worker:
            env = {
                **base_env,
                "INVSYNC_WEB_PORT": str(free_port()),
                "INVSYNC_DATA_DIR": str(data / f"data{w}"),
            }
            worker = Worker(env, data / f"worker{w}.log")
            worker.start()
            workers.append(worker)
            return worker

        # The first worker applies the load alone; the others join afterwards, so the
        # phases measure a settled group (two workers starting together over a backlog
        # left records unapplied before main's a7856b5; seen fixed since).
        start(0)
        t = time.time()
        while await kafka.committed(base_env["INVSYNC_APP_ID"], stock) < n:
            if not all(w.alive() for w in workers):
                raise RuntimeError(f"a worker exited: see {data}")
            await asyncio.sleep(0.5)
        res["apply_s"] = round(time.time() - t, 1)
        for w in range(1, args.workers):
            start(w)
        webs = [f"http://127.0.0.1:{w.env['INVSYNC_WEB_PORT']}" for w in workers]
        skus = n // args.locations
        async with httpx.AsyncClient(timeout=30) as http:
            deadline = time.time() + 120
            while True:  # every worker ready and answering whole
                codes = []
                for web in webs:
                    try:
                        r = await http.post(
                            web + PATH, json={"channelSkuCodes": ["SKU-0000000"]}, headers=TOKEN
                        )
                    except httpx.HTTPError:
                        codes.append(0)  # not listening yet
                        continue
                    codes.append(r.status_code)
                if codes == [200] * len(webs):
                    break
                if time.time() > deadline:
                    raise RuntimeError(f"lookups still answer {codes}")
                await asyncio.sleep(0.5)
            while await _metric(http, webs, "invsync_keys_pending_publish ") > 0:
                await asyncio.sleep(0.5)  # the load's own publications are out
            pids = [w.pid for w in workers]
            warm = argparse.Namespace(**{**vars(args), "seconds": 2.0, "lookup_rate": 0})
            await _phase(http, webs, warm, skus, "warm-up", pids)
            # The workers' CPU with nothing asked (idle polling), to set the lookups' apart.
            before, t_quiet = cpu_s(pids), time.perf_counter()
            await asyncio.sleep(5.0)
            res["quiet_cpu_per_s"] = round(
                (cpu_s(pids) - before) / (time.perf_counter() - t_quiet), 3
            )
            res["idle"] = await _phase(http, webs, args, skus, "idle", pids)
            idle = res["idle"]
            lookups_per_s = idle["lookups"] / args.seconds
            res["cpu_ms_per_lookup"] = round(
                1000 * (idle["worker_cpu_per_s"] - res["quiet_cpu_per_s"]) / lookups_per_s, 1
            )
            feeder = multiprocessing.get_context("spawn").Process(
                target=_feed,
                args=(bs, stock, args.rate, args.seconds + 3, n, args.locations),
                daemon=True,
            )
            feeder.start()
            try:
                await asyncio.sleep(2.0)  # the feed is under way
                res["loaded"] = await _phase(http, webs, args, skus, "loaded", pids)
            finally:
                feeder.join(args.seconds + 30)
                if feeder.is_alive():
                    feeder.kill()
        res["rss_mb"] = [round(proc_kb(w.pid, "VmRSS") / 1024) for w in workers]
    finally:
        for worker in workers:
            worker.kill(signal.SIGTERM)
        await kafka.stop()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--locations", type=int, default=4)
    ap.add_argument("--skus", type=int, default=100, help="SKUs per lookup")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rate", type=float, default=5000.0, help="events/s in the loaded phase")
    ap.add_argument("--seconds", type=float, default=30.0, help="per phase")
    ap.add_argument("--lookup-rate", type=float, default=10.0, help="lookups/s (0: back to back)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    ap.add_argument("--worker-env", action="append", default=[], help="KEY=VALUE (repeatable)")
    args = ap.parse_args(argv)
    res = asyncio.run(amain(args))
    print(json.dumps(res, indent=1))
    print(f"worker CPU per lookup (idle, above its quiet polling): {res['cpu_ms_per_lookup']} ms")
    print(
        "| workers | keys | SKUs x locations | phase | lookups | p50 ms | p99 ms | max ms "
        "| events/s consumed | worker CPU | load |\n"
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|"
    )
    for phase in ("idle", "loaded"):
        p = res[phase]
        print(
            f"| {res['workers']} | {res['keys']:,} | {res['skus_per_lookup']} x "
            f"{res['locations']} | {phase} | {p['lookups']} | {p['p50_ms']} | {p['p99_ms']} | "
            f"{p['max_ms']} | {p['consumed_per_s']:,} | {p['worker_cpu_per_s']} | {p['load']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
