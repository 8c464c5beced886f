"""invsync stream benchmark harness (`make bench`).

    python -m bench.run --events 200000 --keys 5000 --partitions 4 \
        [--bootstrap 127.0.0.1:29092] [--contenders a,b,q,d,e] \
        [--worker-cmd "invsync worker"] [--latency-rate 5000 --latency-seconds 4]

Contenders: (a) raw aiokafka passthrough, (b) naive Faust agent, (c) the harness's own
batched Faust design (reference), (q) Quix Streams (its own venv, bench/.venv-quix, built
on first use), (d) the invsync worker with debounce 0, (e) the invsync worker with its
default windows (500/5000 ms).

Each contender gets its own copy of the backlog (same seed), its own consumer group and
output topic, and runs as its own process:

  processed/s = input events / (last event processed - first consumed)
  committed/s = input events / (the group's committed offsets reach the end - first
                consumed); the harness polls the committed offsets every 0.1 s
  CPU s       = user+system CPU of the worker (+ children) between first consumption
                and the committed end of the backlog
  latency     = paced live phase after the backlog: output record timestamp
                minus the output's ``asOf`` (occurredAt of the newest event it
                reflects; ``occurredAt`` for the passthrough), of the outputs that
                reflect a live event (not a debounced backlog key published late)
  live committed lag max / live commit stall s
              = during the paced phase (until the group committed it all), the
                largest end-minus-committed offsets of the input topic and the longest
                time the committed offsets stood still while behind (sampled every
                0.2 s plus a round trip)
  out/in      = output records / input events during the backlog phase
  peak RSS    = VmHWM of the worker process (+ children) from /proc, whole run

The bench workers report first/last processed through BENCH_STATUS_FILE; the invsync
worker is read from outside: its /metrics (`invsync_stock_events_total`, polled every
0.1 s) and its first output record.

Worker env: BENCH_BOOTSTRAP, BENCH_IN_TOPIC, BENCH_OUT_TOPIC, BENCH_GROUP,
BENCH_PARTITIONS, BENCH_EXPECTED, BENCH_STATUS_FILE; the invsync worker gets the
INVSYNC_* names (INVSYNC_APP_ID = BENCH_GROUP).
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

from bench import quixenv
from bench.kafkaio import (
    Kafka,
    end_offsets,
    first_output_time,
    produce,
    produce_live,
    read_outputs,
    sample_committed_lag,
    verify_outputs,
    verify_tables,
)
from bench.procstats import cpu_seconds, free_port, invsync_events, loadavg, vm_hwm_kb
from bench.report import pct, render

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CONTENDERS: dict[str, tuple[str, list[str]]] = {
    "a": (
        "raw aiokafka consume → produce passthrough",
        [sys.executable, "-m", "bench.workers.raw"],
    ),
    "b": (
        "naive Faust agent (table write + send per event)",
        [sys.executable, "-m", "bench.workers.faust_naive"],
    ),
    "c": (
        "batched Faust (the harness's reference design)",
        [sys.executable, "-m", "bench.workers.faust_best"],
    ),
    "q": (
        f"Quix Streams {quixenv.QUIX_VERSION} `apply(stateful=True)` → `to_topic`",
        ["{quix-python}", "-m", "bench.workers.quix"],
    ),
}
INVSYNC = {
    "d": ("invsync worker, debounce 0", {"INVSYNC_DEBOUNCE_MS": "0", "INVSYNC_MAX_DELAY_MS": "0"}),
    "e": ("invsync worker, defaults 500/5000 ms", {}),
    # another build of the worker (--baseline-cmd), e.g. main before a change
    "z": (
        "baseline invsync worker, debounce 0",
        {"INVSYNC_DEBOUNCE_MS": "0", "INVSYNC_MAX_DELAY_MS": "0"},
    ),
}


def contender_env(
    args: argparse.Namespace, src: str, out: str, group: str, status: Path, n: int
) -> dict[str, str]:
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
            "INVSYNC_CALLBACK_AUTH": "none",
            "INVSYNC_TOPIC_PARTITIONS": str(args.partitions),
            "PYTHONPATH": f"{ROOT}:{envv.get('PYTHONPATH', '')}",
        }
    )
    for kv in args.worker_env:
        k_, v_ = kv.split("=", 1)
        envv[k_] = v_
    return envv


def read_status(status: Path) -> tuple[float | None, float | None]:
    first = done = None
    if status.exists():
        for line in status.read_bytes().splitlines():
            d = orjson.loads(line)
            first = first or d.get("first")
            done = done or d.get("done")
    return first, done


async def run_contender(
    args: argparse.Namespace,
    kafka: Kafka,
    code: str,
    name: str,
    cmd: list[str],
    extra_env: dict[str, str],
    src: str,
    tag: str,
    n: int,
) -> dict[str, Any]:
    group = f"bench-{tag}"
    out = f"bench-out-{tag}"
    await kafka.create(out, args.partitions)
    status = Path(f"/tmp/perf/status-{group}.jsonl")
    status.unlink(missing_ok=True)
    envv = contender_env(args, src, out, group, status, n)
    envv.update(extra_env)
    invsync = code in INVSYNC
    port = free_port() if invsync else 0
    if invsync:
        envv["INVSYNC_WEB_PORT"] = str(port)
    # Faust creates its data dir without parents
    for data in (f"/tmp/perf/faust-data/{group}", envv["INVSYNC_DATA_DIR"]):
        Path(data).mkdir(parents=True, exist_ok=True)
    if args.profile:
        prof = f"/tmp/perf/profile-{group}.txt"
        spy = str(Path(sys.executable).parent / "py-spy")
        gil = ["--gil"] if args.profile == "gil" else []
        cmd = [spy, "record", *gil, "--format", "raw", "-r", "200", "-o", prof, "--", *cmd]
    logf = open(f"/tmp/perf/worker-{group}.log", "wb")
    t_launch = time.time()
    proc = subprocess.Popen(
        cmd, env=envv, cwd=str(ROOT), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
    )
    res: dict[str, Any] = {"code": code, "name": name, "load_before": loadavg()}
    first = done = seen = None
    cpu_first = cpu_end = None
    t_commit_end = None
    deadline = t_launch + args.max_seconds + 60  # startup allowance
    try:
        while time.time() < deadline:
            await asyncio.sleep(0.1)
            if proc.poll() is not None:
                res["error"] = f"worker exited rc={proc.returncode}"
                break
            cpu = cpu_seconds(proc.pid)
            if invsync:
                seen = invsync_events(port)
                if seen and first is None:
                    first = time.time()
                if seen is not None and seen >= n and done is None:
                    done = time.time()
            else:
                first, done = read_status(status)
            if first is not None and cpu_first is None:
                cpu_first = cpu
            c = await kafka.committed(group, src)
            if args.timeline and first is not None:
                seen_now = seen if invsync else None
                print(
                    f"[{code}] t={time.time() - first:6.2f}s processed={seen_now} "
                    f"committed={c} cpu={cpu - (cpu_first or cpu):.2f}s",
                    file=sys.stderr,
                )
            if c >= n:
                t_commit_end, cpu_end = time.time(), cpu
                break
            if first and time.time() - first > args.max_seconds:
                res["error"] = (
                    f"not done in {args.max_seconds:.0f}s (committed {c}/{n}; rates are partial)"
                )
                res["eps_commit"] = c / (time.time() - first)
                break
        res["load_during"] = loadavg()
        if invsync:
            # the poll sees the first consumption up to 0.1 s late: the first output is earlier
            shown = await first_output_time(args.bootstrap, out, args.partitions)
            if shown is not None and (first is None or shown < first):
                first = shown
        if first and t_commit_end:
            res["eps_commit"] = n / (t_commit_end - first)
        if first and done:
            res["eps_processed"] = n / (done - first)
        if cpu_first is not None and cpu_end is not None:
            res["cpu_s"] = cpu_end - cpu_first
        res["startup_s"] = (first - t_launch) if first else None
        out_backlog = await end_offsets(args.bootstrap, out, args.partitions)
        res["out_ratio"] = sum(out_backlog.values()) / n
        # --- latency phase: paced live events on the running worker
        if args.latency_seconds > 0 and t_commit_end and proc.poll() is None:
            stop = asyncio.Event()
            sampler = asyncio.create_task(
                sample_committed_lag(kafka, group, src, args.partitions, stop)
            )
            live_from = time.time()
            m = await produce_live(
                args.bootstrap, src, args.latency_rate, args.latency_seconds, args.keys, n
            )
            t_end = time.time() + 15
            while time.time() < t_end and await kafka.committed(group, src) < n + m:
                await asyncio.sleep(0.2)
            stop.set()
            res["live_lag"], res["live_stall_s"] = await sampler
            await asyncio.sleep(args.settle)  # let debounced outputs come out
            lat = await read_outputs(
                args.bootstrap, out, args.partitions, out_backlog, not_before=live_from
            )
            res["lat_n"] = len(lat)
            res["p50"], res["p99"] = pct(lat, 0.5), pct(lat, 0.99)
        res["rss_mb"] = vm_hwm_kb(proc.pid) / 1024
        if code in ("b", "c") and t_commit_end:
            await asyncio.sleep(0.5)
            res["verify"] = await verify_tables(
                args.bootstrap, src, f"{group}-stock-changelog", args.partitions
            )
        if code != "a" and t_commit_end:
            # outputs are checked once the worker caught up with the live phase too
            target = sum((await end_offsets(args.bootstrap, src, args.partitions)).values())
            t_end = time.time() + 60
            while time.time() < t_end and await kafka.committed(group, src) < target:
                await asyncio.sleep(0.2)
            await asyncio.sleep(args.settle)
            res["verify"] = " ".join(
                filter(
                    None,
                    [
                        res.get("verify"),
                        await verify_outputs(args.bootstrap, src, out, args.partitions),
                    ],
                )
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


def command_for(args: argparse.Namespace, code: str) -> tuple[str, list[str], dict[str, str]] | str:
    """(name, command, extra env) of a contender, or why it is skipped (one line)."""
    if code in INVSYNC:
        name, extra = INVSYNC[code]
        worker = args.worker_cmd or f"{Path(sys.executable).parent / 'invsync'} worker"
        if code == "z":
            if not args.baseline_cmd:
                return "skipped: no --baseline-cmd"
            name, worker = f"{name}: `{args.baseline_cmd}`", args.baseline_cmd
        return name, shlex.split(worker), dict(extra)
    if code not in CONTENDERS:
        return f"unknown contender {code!r} (known: {', '.join([*CONTENDERS, *INVSYNC])})"
    name, cmd = CONTENDERS[code]
    if code == "q":
        python, why = quixenv.ensure()
        if python is None:
            return f"Quix Streams skipped: its venv could not be built: {why}"
        cmd = [str(python), *cmd[1:]]
    return name, cmd, {}


async def amain(args: argparse.Namespace) -> int:
    kafka = Kafka(args.bootstrap)
    await kafka.start()
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S")
    rows = []
    try:
        for i, code in enumerate(args.contenders.split(",")):
            tag = f"{run_id}-{code}{i}"  # a contender may run more than once
            found = command_for(args, code)
            if isinstance(found, str):
                print(f"[{code}] {found}", file=sys.stderr)
                continue
            name, cmd, extra = found
            # fresh input topic per contender: identical data (same seed), and the
            # latency phase of one contender cannot change another's backlog
            src = f"bench-in-{tag}"
            await kafka.create(src, args.partitions)
            pt = await produce(args.bootstrap, src, args.events, args.keys)
            print(f"[{code}] produced {args.events} events to {src} in {pt:.1f}s", file=sys.stderr)
            r = await run_contender(args, kafka, code, name, cmd, extra, src, tag, args.events)
            print(f"[{code}] {r}", file=sys.stderr)
            rows.append(r)
    finally:
        await kafka.stop()
    text = render(args, run_id, rows)
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
    ap.add_argument("--contenders", default="a,b,q,d,e")
    ap.add_argument(
        "--worker-cmd", default=None, help="invsync worker command (default: this venv's)"
    )
    ap.add_argument(
        "--baseline-cmd",
        default=None,
        help="contender z: another invsync worker build to compare (debounce 0)",
    )
    ap.add_argument(
        "--worker-env", action="append", default=[], help="KEY=VALUE for the workers (repeatable)"
    )
    ap.add_argument(
        "--max-seconds", type=float, default=60.0, help="per contender, after first consumption"
    )
    ap.add_argument("--latency-rate", type=int, default=5000)
    ap.add_argument("--latency-seconds", type=float, default=4.0)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument(
        "--profile",
        nargs="?",
        const="wall",
        choices=["wall", "gil"],
        help="run workers under py-spy (raw stacks in /tmp/perf); gil: only samples that "
        "hold the GIL (where the CPU goes, not the waits)",
    )
    ap.add_argument(
        "--timeline", action="store_true", help="print processed/committed every poll (stderr)"
    )
    args = ap.parse_args(argv)
    Path("/tmp/perf").mkdir(exist_ok=True)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
