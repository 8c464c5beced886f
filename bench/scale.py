"""State at scale: N keys (one SNAPSHOT each) in one `invsync worker`, then SIGKILL.

    python -m bench.scale --keys 100000 [--bootstrap 127.0.0.1:19092] [--partitions 4]
        [--worker-env KEY=VALUE ...] [--cold]

Reports:
  apply s        first SNAPSHOT consumed (worker Ready) → committed offsets reach N
  peak RSS       VmHWM of the worker after the apply (MB)
  RSS applied    VmRSS once everything is committed and published
  restart s      SIGKILL of the process group → the restarted worker published a probe
                 DELTA sent right after the kill (one per partition): publishing again
  RSS restored   VmRSS of the restarted worker once the probes came out

`--cold` removes the worker's data dir before the restart (a new machine, or
`INVSYNC_STATE_STORE=memory`): the restore reads the whole changelog.

One run per invocation; the machine is shared, so quote the load average beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/scale.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.run import Kafka, loadavg
from invsync.localkafka import free_port

ROOT = Path(__file__).resolve().parent.parent


def proc_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def key_of(i: int) -> str:
    return f"LOC{i % 4:03d}:SKU-{i:08d}"


def event(i: int, typ: str, qty: int, at: datetime) -> bytes:
    loc, sku = key_of(i).split(":", 1)
    return orjson.dumps(
        {
            "eventId": str(uuid.UUID(int=(i << 32) | (7 if typ == "SNAPSHOT" else 9), version=4)),
            "type": typ,
            "locationCode": loc,
            "channelSkuCode": sku,
            "quantity": qty,
            "occurredAt": at.isoformat(),
            "reason": "CYCLE_COUNT" if typ == "SNAPSHOT" else "GRN",
        }
    )


async def produce(bs: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bs, linger_ms=20, max_batch_size=512 * 1024)
    await p.start()
    try:
        for k, v in records:
            await p.send(topic, v, key=k)
        await p.flush()
    finally:
        await p.stop()


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "invsync.cli", "worker"],
                env=self.env,
                cwd=str(ROOT),
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.pid, sig)
            assert self.proc is not None
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()

    def ready_count(self) -> int:
        return self.log.read_bytes().count(b"Worker]: Ready") if self.log.exists() else 0


async def wait_probes(
    bs: str, topic: str, partitions: int, want: dict[bytes, int], worker: Worker, timeout: float
) -> float | None:
    """Time at which every probe key was published with its expected onHand."""
    c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, ends[tp])
        left = dict(want)
        deadline = time.time() + timeout
        while left and time.time() < deadline and worker.alive():
            for recs in (await c.getmany(timeout_ms=100, max_records=50_000)).values():
                for r in recs:
                    if r.key in left and orjson.loads(r.value)["onHand"] == left[r.key]:
                        del left[r.key]
        return time.time() if not left else None
    finally:
        await c.stop()


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    bs, n, parts = args.bootstrap, args.keys, args.partitions
    tag = uuid.uuid4().hex[:8]
    data = Path(f"/tmp/perf/scale-{tag}")
    data.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bs,
        "INVSYNC_APP_ID": f"scale-{tag}",
        "INVSYNC_DATA_DIR": str(data / "data"),
        "INVSYNC_WEB_PORT": str(free_port()),
        "INVSYNC_WEB_HOST": "127.0.0.1",
        "INVSYNC_TOPIC_PARTITIONS": str(parts),
        "INVSYNC_CALLBACK_AUTH": "none",
        "INVSYNC_LOG_LEVEL": "info",
        "INVSYNC_DEBOUNCE_MS": "0",
        "INVSYNC_MAX_DELAY_MS": "0",
        "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}",
    }
    for name in ("STOCK_EVENTS", "ORDERS", "SHIPMENTS", "INVENTORY", "ORDER_UPDATES"):
        env[f"INVSYNC_TOPIC_{name}"] = f"scale-{name.lower().replace('_', '-')}-{tag}"
    env["INVSYNC_TOPIC_DEAD_LETTERS"] = f"scale-dead-{tag}"
    for kv in args.worker_env:
        k_, v_ = kv.split("=", 1)
        env[k_] = v_
    stock, out = env["INVSYNC_TOPIC_STOCK_EVENTS"], env["INVSYNC_TOPIC_INVENTORY"]
    kafka = Kafka(bs)
    await kafka.start()
    res: dict[str, Any] = {"keys": n, "partitions": parts, "load_before": loadavg()}
    res["cold"] = args.cold
    worker = Worker(env, data / "worker.log")
    try:
        await kafka.create(stock, parts)
        base = datetime.now(UTC) - timedelta(hours=1)
        t = time.time()
        await produce(
            bs,
            stock,
            [(key_of(i).encode(), event(i, "SNAPSHOT", 100 + i % 50, base)) for i in range(n)],
        )
        res["produce_s"] = time.time() - t
        print(f"produced {n} snapshots in {res['produce_s']:.1f}s", file=sys.stderr)
        t_launch = time.time()
        worker.start()
        while worker.ready_count() == 0:
            if not worker.alive() or time.time() - t_launch > args.max_restart:
                raise RuntimeError(f"worker exited: see {worker.log}")
            await asyncio.sleep(0.05)
        t_ready = time.time()
        res["startup_s"] = t_ready - t_launch
        last_note = 0.0
        while (done := await kafka.committed(env["INVSYNC_APP_ID"], stock)) < n:
            if not worker.alive():
                raise RuntimeError(f"worker exited: see {worker.log}")
            if time.time() - last_note > 10:  # the RSS curve: steady state or in flight?
                last_note = time.time()
                rss = proc_kb(worker.pid, "VmRSS") // 1024
                print(
                    f"{last_note - t_ready:6.0f}s committed {done:>9,} RSS {rss} MB",
                    file=sys.stderr,
                )
            await asyncio.sleep(0.2)
        res["apply_s"] = time.time() - t_ready
        res["eps"] = n / res["apply_s"]
        await asyncio.sleep(args.settle)
        res["peak_rss_mb"] = proc_kb(worker.pid, "VmHWM") / 1024
        res["rss_applied_mb"] = proc_kb(worker.pid, "VmRSS") / 1024
        res["load_during"] = loadavg()
        print(f"applied: {res}", file=sys.stderr)
        # SIGKILL, restart, and a probe DELTA per partition sent right after the kill
        probes = list(range(parts * 3))
        worker.kill(signal.SIGKILL)
        t_kill = time.time()
        if args.cold:
            shutil.rmtree(data / "data", ignore_errors=True)
        worker.start()
        later = datetime.now(UTC)
        want = {key_of(i).encode(): 100 + i % 50 + 7 for i in probes}
        waiter = asyncio.create_task(
            wait_probes(bs, out, parts, want, worker, timeout=args.max_restart)
        )
        await asyncio.sleep(0.5)  # the waiter is at the end of the output topic
        await produce(
            bs, stock, [(key_of(i).encode(), event(i, "DELTA", 7, later)) for i in probes]
        )
        t_served = await waiter
        res["restart_s"] = (t_served - t_kill) if t_served else None
        res["rss_restored_mb"] = proc_kb(worker.pid, "VmRSS") / 1024
        res["peak_rss_restart_mb"] = proc_kb(worker.pid, "VmHWM") / 1024
        res["load_after"] = loadavg()
    finally:
        worker.kill(signal.SIGTERM)
        await kafka.stop()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    ap.add_argument("--worker-env", action="append", default=[], help="KEY=VALUE (repeatable)")
    ap.add_argument("--settle", type=float, default=2.0, help="s after the apply before RSS")
    ap.add_argument("--max-restart", type=float, default=300.0)
    ap.add_argument("--cold", action="store_true", help="restart without the data dir")
    args = ap.parse_args(argv)
    res = asyncio.run(amain(args))
    print(json.dumps(res, indent=1))
    row = (
        "| keys | apply s | events/s | peak RSS MB | RSS applied MB | SIGKILL→publishing s "
        "| RSS restored MB | load before → after |\n|---:|---:|---:|---:|---:|---:|---:|---|\n"
        f"| {res['keys']:,} | {res['apply_s']:.1f} | {res['eps']:,.0f} | "
        f"{res['peak_rss_mb']:.0f} | {res['rss_applied_mb']:.0f} | "
        f"{res['restart_s'] if res['restart_s'] is None else round(res['restart_s'], 1)} | "
        f"{res['rss_restored_mb']:.0f} | {res['load_before']} → {res['load_after']} |"
    )
    print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
