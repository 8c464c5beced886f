"""invsync stream benchmark harness.

    python -m bench.run --events 200000 --keys 5000 --partitions 4 \
        [--bootstrap 127.0.0.1:29092] [--contenders a,b,c,d] \
        [--worker-cmd "invsync worker"] [--latency-rate 5000 --latency-seconds 4]

One input topic is pre-produced per run (same data for every contender).  Each
contender runs as its own process with a fresh consumer group and output topic:

  throughput  = input events / (last processed or committed - first consumption)
  latency     = paced live phase after the backlog: output record timestamp
                minus the output's ``asOf`` (occurredAt of the newest event it
                reflects; ``occurredAt`` for the passthrough)
  out/in      = output records / input events during the backlog phase
  peak RSS    = VmHWM of the worker process (+ children) from /proc

Worker env (also given to --worker-cmd, which also gets the INVSYNC_* names):
BENCH_BOOTSTRAP, BENCH_IN_TOPIC, BENCH_OUT_TOPIC, BENCH_GROUP, BENCH_PARTITIONS,
BENCH_EXPECTED, BENCH_STATUS_FILE.  The external worker's consumer group must be
its app id (INVSYNC_APP_ID = BENCH_GROUP).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import gen_events, iso_now, parse_ts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CONTENDERS = {
    "a": (
        "raw aiokafka passthrough (getmany, orjson)",
        [sys.executable, "-m", "bench.workers.raw"],
    ),
    "b": (
        "Faust naive: per-event table write + send",
        [sys.executable, "-m", "bench.workers.faust_naive"],
    ),
    "c": (
        "Faust batched: per-partition batches, 1 write/key/batch",
        [sys.executable, "-m", "bench.workers.faust_best"],
    ),
}


def vm_hwm_kb(pid: int) -> int:
    """Peak RSS of pid and its descendants (sum of VmHWM, kB)."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
        ).stdout
        pids += [int(p) for p in out.split()]
    except Exception:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Kafka:
    def __init__(self, bootstrap: str):
        self.bs = bootstrap
        self.admin: AIOKafkaAdminClient | None = None

    async def start(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bs)
        await self.admin.start()

    async def stop(self) -> None:
        if self.admin:
            await self.admin.close()

    async def create(self, name: str, partitions: int) -> None:
        await self.admin.create_topics([NewTopic(name, partitions, 1)])
        # wait until metadata sees it
        for _ in range(50):
            md = await self.admin.describe_topics([name])
            if (
                md
                and md[0].get("error_code", 0) == 0
                and len(md[0].get("partitions", [])) == partitions
            ):
                return
            await asyncio.sleep(0.1)

    async def committed(self, group: str, topic: str) -> int:
        try:
            offs = await self.admin.list_consumer_group_offsets(group)
        except Exception:
            return 0
        return sum(m.offset for tp, m in offs.items() if tp.topic == topic and m.offset > 0)


async def end_offsets(bs: str, topic: str, partitions: int) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bs)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        eo = await c.end_offsets(tps)
        return {tp.partition: o for tp, o in eo.items()}
    finally:
        await c.stop()


async def produce(bs: str, topic: str, n: int, k: int) -> float:
    p = AIOKafkaProducer(bootstrap_servers=bs, linger_ms=20, max_batch_size=512 * 1024, acks=1)
    await p.start()
    t0 = time.time()
    try:
        futs = []
        for key, ev in gen_events(n, k):
            futs.append(await p.send(topic, orjson.dumps(ev), key=key))
        await p.flush()
    finally:
        await p.stop()
    return time.time() - t0


async def produce_live(
    bs: str, topic: str, rate: int, seconds: float, k: int, start_id: int
) -> int:
    """Paced producer, occurredAt = send time."""
    p = AIOKafkaProducer(bootstrap_servers=bs, linger_ms=0, acks=1)
    await p.start()
    n = int(rate * seconds)
    tick = 0.005
    per_tick = max(1, int(rate * tick))
    try:
        it = gen_events(n, k, seed=11, live=True, start_id=start_id)
        t0 = time.perf_counter()
        sent = 0
        for key, ev in it:
            ev["occurredAt"] = iso_now()
            await p.send(topic, orjson.dumps(ev), key=key)
            sent += 1
            if sent % per_tick == 0:
                target = t0 + sent / rate
                d = target - time.perf_counter()
                if d > 0:
                    await asyncio.sleep(d)
        await p.flush()
    finally:
        await p.stop()
    return n


async def read_outputs(
    bs: str,
    topic: str,
    partitions: int,
    since_offsets: dict[int, int],
    until_offsets: dict[int, int] | None = None,
) -> list[float]:
    """Latencies (ms) of output records after since_offsets."""
    c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False)
    await c.start()
    lat: list[float] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, since_offsets.get(tp.partition, 0))
        ends = until_offsets or await end_offsets(bs, topic, partitions)
        remaining = {p for p in range(partitions) if ends.get(p, 0) > since_offsets.get(p, 0)}
        pos = dict(since_offsets)
        deadline = time.time() + 30
        while remaining and time.time() < deadline:
            batch = await c.getmany(timeout_ms=500, max_records=20000)
            for tp, recs in batch.items():
                for r in recs:
                    v = orjson.loads(r.value)
                    asof = v.get("asOf") or v.get("occurredAt")
                    if asof:
                        lat.append(r.timestamp - parse_ts(asof) * 1000.0)
                    pos[tp.partition] = r.offset + 1
                if pos.get(tp.partition, 0) >= ends.get(tp.partition, 0):
                    remaining.discard(tp.partition)
    finally:
        await c.stop()
    return lat


async def read_all(bs: str, topic: str, partitions: int) -> list[Any]:
    """All records of a topic (ConsumerRecord list)."""
    ends = await end_offsets(bs, topic, partitions)
    c = AIOKafkaConsumer(
        bootstrap_servers=bs, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await c.start()
    out: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        pos = {p: 0 for p in range(partitions)}
        deadline = time.time() + 30
        while any(pos[p] < ends[p] for p in pos) and time.time() < deadline:
            for tp, recs in (await c.getmany(timeout_ms=500, max_records=50000)).items():
                out.extend(recs)
                if recs:
                    pos[tp.partition] = recs[-1].offset + 1
    finally:
        await c.stop()
    return out


async def verify_tables(bs: str, src: str, changelog: str, partitions: int) -> str:
    """Changelog partition == source partition of the key, and the final table
    state (last changelog value per key) == a clean fold of the input."""
    from bench.common import apply

    inp = await read_all(bs, src, partitions)
    expected: dict[bytes, Any] = {}
    src_part: dict[bytes, int] = {}
    for r in sorted(inp, key=lambda r: (r.partition, r.offset)):
        src_part[r.key] = r.partition
        expected[r.key], _ = apply(expected.get(r.key), orjson.loads(r.value), r.offset)
    cl = await read_all(bs, changelog, partitions)
    final: dict[bytes, Any] = {}
    wrong_part = 0
    for r in sorted(cl, key=lambda r: (r.partition, r.offset)):
        if src_part.get(r.key) != r.partition:
            wrong_part += 1
        final[r.key] = orjson.loads(r.value) if r.value is not None else None
    bad = sum(
        1
        for k, st in expected.items()
        if final.get(k) is None or final[k]["onHand"] != st["onHand"]
    )
    return (
        f"changelog {len(cl)} recs, wrong partition {wrong_part}, "
        f"keys {len(expected)}, wrong final onHand {bad}"
    )


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def run_contender(
    args: argparse.Namespace,
    kafka: Kafka,
    code: str,
    name: str,
    cmd: list[str],
    src: str,
    run_id: str,
    n: int,
    next_id: int,
) -> dict[str, Any]:
    group = f"bench-{run_id}-{code}"
    out = f"bench-out-{run_id}-{code}"
    await kafka.create(out, args.partitions)
    status = Path(f"/tmp/perf/status-{group}.jsonl")
    status.unlink(missing_ok=True)
    envv = dict(os.environ)
    envv.update(
        {
            "BENCH_BOOTSTRAP": args.bootstrap,
            "BENCH_IN_TOPIC": src,
            "BENCH_OUT_TOPIC": out,
            "BENCH_GROUP": group,
            "BENCH_PARTITIONS": str(args.partitions),
            "BENCH_EXPECTED": str(n),
            "BENCH_STATUS_FILE": str(status),
            # names for the real invsync worker
            "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
            "INVSYNC_APP_ID": group,
            "INVSYNC_TOPIC_STOCK_EVENTS": src,
            "INVSYNC_TOPIC_INVENTORY": out,
            "INVSYNC_DATA_DIR": f"/tmp/perf/invsync-data/{group}",
            "PYTHONPATH": f"{ROOT}:{envv.get('PYTHONPATH', '')}",
        }
    )
    for kv in args.worker_env:
        k_, v_ = kv.split("=", 1)
        envv[k_] = v_
    if args.profile:
        prof = f"/tmp/perf/profile-{group}.txt"
        cmd = [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--format",
            "raw",
            "-r",
            "200",
            "-o",
            prof,
            "--",
        ] + cmd
    logf = open(f"/tmp/perf/worker-{group}.log", "wb")
    t_launch = time.time()
    proc = subprocess.Popen(
        cmd, env=envv, cwd=str(ROOT), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
    )
    res: dict[str, Any] = {"code": code, "name": name, "load_before": loadavg()}
    first = done = None
    t_first_commit = t_commit_end = None
    deadline = t_launch + args.max_seconds + 30  # startup allowance
    try:
        while time.time() < deadline:
            await asyncio.sleep(0.1)
            if proc.poll() is not None:
                res["error"] = f"worker exited rc={proc.returncode}"
                break
            if status.exists():
                for line in status.read_bytes().splitlines():
                    d = orjson.loads(line)
                    first = first or d.get("first")
                    done = done or d.get("done")
            c = await kafka.committed(group, src)
            if c > 0 and t_first_commit is None:
                t_first_commit = time.time()
            if c >= n:
                t_commit_end = time.time()
                break
            if first and time.time() - first > args.max_seconds:
                res["error"] = (
                    f"not done in {args.max_seconds:.0f}s (committed {c}/{n}; rates are partial)"
                )
                res["eps_commit"] = c / (time.time() - first)
                if status.exists():
                    res["eps_processed"] = None
                break
        res["load_during"] = loadavg()
        # the external worker reports nothing: first consumption ~ first output record
        if first is None:
            eo = await end_offsets(args.bootstrap, out, args.partitions)
            if sum(eo.values()):
                c2 = AIOKafkaConsumer(
                    bootstrap_servers=args.bootstrap, auto_offset_reset="earliest"
                )
                await c2.start()
                c2.assign([TopicPartition(out, p) for p in range(args.partitions)])
                b = await c2.getmany(timeout_ms=2000, max_records=1000)
                await c2.stop()
                ts = [r.timestamp / 1000 for recs in b.values() for r in recs]
                if ts:
                    first = min(ts)
            first = first or t_first_commit
        if first and t_commit_end:
            res["eps_commit"] = n / (t_commit_end - first)
        if first and done:
            res["eps_processed"] = n / (done - first)
        res["startup_s"] = (first - t_launch) if first else None
        out_backlog = await end_offsets(args.bootstrap, out, args.partitions)
        res["out_ratio"] = sum(out_backlog.values()) / n
        # --- latency phase: paced live events on the running worker
        if args.latency_seconds > 0 and t_commit_end and proc.poll() is None:
            m = await produce_live(
                args.bootstrap, src, args.latency_rate, args.latency_seconds, args.keys, next_id
            )
            target = n + m
            t_end = time.time() + 15
            while time.time() < t_end and await kafka.committed(group, src) < target:
                await asyncio.sleep(0.2)
            await asyncio.sleep(args.settle)  # let debounced outputs come out
            lat = await read_outputs(args.bootstrap, out, args.partitions, out_backlog)
            res["lat_n"] = len(lat)
            res["p50"], res["p99"] = pct(lat, 0.5), pct(lat, 0.99)
            # the live events advance the committed offset beyond n for the next contender? no:
            # each contender has its own group, but the topic now holds n+m events.
        res["rss_mb"] = vm_hwm_kb(proc.pid) / 1024
        if code in ("b", "c") and t_commit_end:
            await asyncio.sleep(0.5)
            res["verify"] = await verify_tables(
                args.bootstrap, src, f"{group}-stock-changelog", args.partitions
            )
    finally:
        if args.profile and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        logf.close()
    return res


def fmt(v: Any, f: str = "{:,.0f}") -> str:
    return "—" if v is None else f.format(v)


async def amain(args: argparse.Namespace) -> int:
    kafka = Kafka(args.bootstrap)
    await kafka.start()
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        codes = args.contenders.split(",")
        rows = []
        for i, code in enumerate(codes):
            # fresh input topic per contender: identical data (same seed), and the
            # latency phase of one contender cannot change another's backlog
            src = f"bench-in-{run_id}-{code}"
            await kafka.create(src, args.partitions)
            pt = await produce(args.bootstrap, src, args.events, args.keys)
            print(f"[{code}] produced {args.events} events to {src} in {pt:.1f}s", file=sys.stderr)
            if code == "d":
                if not args.worker_cmd:
                    print("[d] skipped: no --worker-cmd", file=sys.stderr)
                    continue
                name, cmd = f"external: `{args.worker_cmd}`", shlex.split(args.worker_cmd)
            else:
                name, cmd = CONTENDERS[code]
            r = await run_contender(
                args, kafka, code, name, cmd, src, run_id, args.events, args.events
            )
            print(f"[{code}] {r}", file=sys.stderr)
            rows.append(r)
    finally:
        await kafka.stop()
    hdr = (
        f"Run {run_id}: {args.events:,} events, {args.keys:,} keys (Zipf s=1.1), "
        f"{args.partitions} partitions, broker {args.bootstrap}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}; latency phase {args.latency_rate}/s for "
        f"{args.latency_seconds}s\n\n"
    )
    table = (
        "| contender | events/s (processed) | events/s (committed) | startup s | out/in | "
        "p50 ms | p99 ms | peak RSS MB | load avg before → during | note |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n"
    )
    for r in rows:
        table += (
            f"| ({r['code']}) {r['name']} | {fmt(r.get('eps_processed'))} | {fmt(r.get('eps_commit'))} | "
            f"{fmt(r.get('startup_s'), '{:.1f}')} | {fmt(r.get('out_ratio'), '{:.3f}')} | "
            f"{fmt(r.get('p50'), '{:.1f}')} | {fmt(r.get('p99'), '{:.1f}')} | "
            f"{fmt(r.get('rss_mb'), '{:.0f}')} | {r.get('load_before')} → {r.get('load_during')} | "
            f"{r.get('error', '')} {r.get('verify', '')} |\n"
        )
    for var in ("BENCH_FAUST_CONF", "BENCH_DESIGN", "BENCH_SEND", "BENCH_SPINNER", "BENCH_UVLOOP"):
        if os.environ.get(var):
            hdr += f"{var}={os.environ[var]}\n\n"
    if args.profile:
        hdr += "(workers ran under py-spy: throughput is lower than unprofiled)\n\n"
    text = hdr + table
    print(text)
    outdir = HERE / "results"
    outdir.mkdir(exist_ok=True)
    (outdir / f"{run_id}.md").write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=5_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:29092")
    )
    ap.add_argument("--contenders", default="a,b,c,d")
    ap.add_argument("--worker-cmd", default=None, help='external worker, e.g. "invsync worker"')
    ap.add_argument(
        "--worker-env", action="append", default=[], help="KEY=VALUE for the worker (repeatable)"
    )
    ap.add_argument(
        "--max-seconds", type=float, default=60.0, help="per contender, after first consumption"
    )
    ap.add_argument("--latency-rate", type=int, default=5000)
    ap.add_argument("--latency-seconds", type=float, default=4.0)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument(
        "--profile", action="store_true", help="run workers under py-spy (raw stacks in /tmp/perf)"
    )
    args = ap.parse_args(argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
