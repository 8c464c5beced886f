"""The inventory core on the real broker, with `invsync worker` subprocesses."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import orjson
import pytest

from invsync.localkafka import free_port
from tests.integration.inventory_support import (
    customer_cancelled,
    latest_by_key,
    order_created,
    read_all,
    stock,
    versions_increase,
)
from tests.integration.support import WorkerProcess, committed_offsets, isolated_env, produce

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, params=["fast-path", "faust-path"])
def inventory_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on the batch fast path and on Faust's own per-record path."""
    monkeypatch.setenv("INVSYNC_FAST_PATH", "true" if request.param == "fast-path" else "false")
    return str(request.param)


async def test_scripted_sequence_gives_exact_output_and_dead_letters(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="0")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    stock_topic = env["INVSYNC_TOPIC_STOCK_EVENTS"]
    try:
        await produce(
            kafka_bootstrap,
            stock_topic,
            [
                stock("s1", "WH1:A", 10, kind="SNAPSHOT"),
                stock("s2", "WH1:A", -3),
                stock("s2", "WH1:A", -3),  # re-sent: same eventId, new offset
                stock("s3", "WH1:B", 5, kind="SNAPSHOT"),
                stock("s4", "WH1:B", 2),
                (b"WH1:A", b"{not json"),
                (b"WH1:A", b'{"eventId":"s5","type":"DELTA"}'),  # fields missing
                (b"WH9:Z", stock("s6", "WH1:A", 1)[1]),  # key does not match the body
            ],
        )
        await produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_ORDERS"],
            [
                order_created("o1", "ORD-1", "WH1", [("A", 2), ("B", 1)]),
                order_created("o1", "ORD-1", "WH1", [("A", 2), ("B", 1)]),  # replayed
                customer_cancelled("c1", "ORD-1", "WH1", [("A", 1), ("B", 0)]),
                (b"ORD-2", b'{"eventId": "x", "type": "ORDER_CREATED"}'),
            ],
        )
        # Expected: A = 10 - 3 - (2 - 1) = 6; B = 5 + 2 - 1 = 6.
        out = await read_all(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_INVENTORY"],
            until=lambda recs: (
                latest_by_key(recs).get("WH1:A", {}).get("quantity") == 6
                and latest_by_key(recs).get("WH1:B", {}).get("quantity") == 6
            ),
        )
        latest = latest_by_key(out)
        assert latest["WH1:A"]["quantity"] == 6, worker.log_tail()
        assert latest["WH1:A"]["onHand"] == 7
        assert latest["WH1:A"]["reserved"] == 1
        assert latest["WH1:B"]["quantity"] == 6
        assert latest["WH1:B"]["reserved"] == 1
        assert set(latest) == {"WH1:A", "WH1:B"}
        assert versions_increase(out)

        letters = await read_all(
            kafka_bootstrap, env["INVSYNC_TOPIC_DEAD_LETTERS"], until=lambda r: len(r) >= 4
        )
        bodies = [orjson.loads(r.value) for r in letters]
        assert len(bodies) == 4
        by_topic: dict[str, list[str]] = {}
        for body in bodies:
            by_topic.setdefault(body["sourceTopic"], []).append(body["error"])
            assert body["failedAt"]
            assert isinstance(body["offset"], int)
        stock_errors = by_topic[stock_topic]
        assert len(stock_errors) == 3
        assert any("json" in e.lower() for e in stock_errors)
        assert any("does not match" in e for e in stock_errors)
        assert any("quantity" in e or "locationCode" in e for e in stock_errors)
        assert len(by_topic[env["INVSYNC_TOPIC_ORDERS"]]) == 1
        assert any(b["value"] == "{not json" for b in bodies)
    finally:
        worker.stop()


def _crash_events(n: int, keys: list[str], seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    events: list[tuple[bytes, bytes]] = []
    for key in keys:
        events.append(stock(f"init-{key}", key, 1000, kind="SNAPSHOT"))
    for i in range(n):
        key = rng.choice(keys)
        if rng.random() < 0.03:
            events.append(stock(f"e{i}", key, rng.randint(0, 2000), kind="SNAPSHOT"))
        else:
            events.append(stock(f"e{i}", key, rng.randint(-20, 20)))
        if rng.random() < 0.05:
            events.append(events[-1])  # producer re-send
    return events


def _expected(events: list[tuple[bytes, bytes]]) -> dict[str, int]:
    on_hand: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for key_b, value in events:
        body = orjson.loads(value)
        key = key_b.decode()
        if (key, body["eventId"]) in seen:
            continue
        seen.add((key, body["eventId"]))
        if body["type"] == "SNAPSHOT":
            on_hand[key] = body["quantity"]
        else:
            on_hand[key] = on_hand.get(key, 0) + body["quantity"]
    return {k: max(0, v) for k, v in on_hand.items()}


async def test_kill_9_three_times_ends_with_the_quantities_of_a_clean_pass(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = isolated_env(
        kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="50", INVSYNC_MAX_DELAY_MS="200"
    )
    keys = [f"WH{i % 3}:SKU-{i}" for i in range(40)]
    events = _crash_events(30_000, keys, seed=7)
    expected = _expected(events)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start(ready=True)
    rng = random.Random(11)
    chunks = [events[i : i + 2500] for i in range(0, len(events), 2500)]
    kills = 0
    try:
        for index, chunk in enumerate(chunks):
            await produce(kafka_bootstrap, env["INVSYNC_TOPIC_STOCK_EVENTS"], chunk)
            if index in (2, 5, 8):
                await asyncio.sleep(rng.uniform(0.05, 1.5))
                worker.kill9()
                kills += 1
                worker.start(ready=True)
        assert kills >= 3

        def converged(recs: list[object]) -> bool:
            latest = latest_by_key(recs)  # type: ignore[arg-type]
            return all(latest.get(k, {}).get("quantity") == v for k, v in expected.items())

        out = await read_all(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_INVENTORY"],
            until=converged,
            quiet_s=3.0,
            timeout=120.0,
        )
        latest = latest_by_key(out)
        wrong = {
            k: (latest.get(k, {}).get("quantity"), v)
            for k, v in expected.items()
            if latest.get(k, {}).get("quantity") != v
        }
        assert not wrong, f"(published, expected) per key: {wrong}\n{worker.log_tail()}"
    finally:
        worker.stop()


async def test_stock_out_is_published_within_a_second_despite_a_long_debounce(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = isolated_env(
        kafka_bootstrap,
        tmp_path / "data",
        INVSYNC_DEBOUNCE_MS="10000",
        INVSYNC_MAX_DELAY_MS="30000",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    topic = env["INVSYNC_TOPIC_STOCK_EVENTS"]
    out_topic = env["INVSYNC_TOPIC_INVENTORY"]
    try:
        await produce(kafka_bootstrap, topic, [stock("a", "WH1:HOT", 3, kind="SNAPSHOT")])
        first = await read_all(kafka_bootstrap, out_topic, until=lambda r: len(r) >= 1, quiet_s=0)
        assert orjson.loads(first[0].value)["quantity"] == 3
        await produce(kafka_bootstrap, topic, [stock("b", "WH1:HOT", 1)])  # debounced
        sent = time.monotonic()
        await produce(kafka_bootstrap, topic, [stock("c", "WH1:HOT", -4)])  # stock-out
        out = await read_all(
            kafka_bootstrap,
            out_topic,
            until=lambda r: any(orjson.loads(x.value)["quantity"] == 0 for x in r),
            quiet_s=0,
            timeout=5.0,
        )
        elapsed = time.monotonic() - sent
        quantities = [orjson.loads(r.value)["quantity"] for r in out]
        assert quantities == [3, 0], quantities  # the +1 never went out on its own
        assert elapsed < 1.0, f"stock-out took {elapsed:.2f}s"
    finally:
        worker.stop()


async def test_offsets_are_committed_soon_after_catching_up_not_at_the_interval(
    kafka_bootstrap: str, tmp_path: Path, inventory_path: str
) -> None:
    """A burst smaller than the 10,000 acks that trigger a commit, with the interval
    commit ten minutes away: the fast path commits once its queue runs empty."""
    if inventory_path != "fast-path":
        pytest.skip("the catch-up commit is the fast path's (Faust's path: the interval)")
    env = isolated_env(
        kafka_bootstrap,
        tmp_path / "data",
        INVSYNC_DEBOUNCE_MS="0",
        INVSYNC_COMMIT_INTERVAL_MS="600000",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start(ready=True)
    topic = env["INVSYNC_TOPIC_STOCK_EVENTS"]
    try:
        events = [stock(f"c{i}", f"WH1:C{i % 7}", 5, kind="SNAPSHOT") for i in range(40)]
        await produce(kafka_bootstrap, topic, events)
        deadline = time.monotonic() + 30
        committed: dict[int, int] = {}
        while time.monotonic() < deadline:
            committed = await committed_offsets(kafka_bootstrap, env["INVSYNC_APP_ID"], topic)
            if sum(committed.values()) == len(events):
                break
            await asyncio.sleep(0.2)
        assert sum(committed.values()) == len(events), (committed, worker.log_tail())
    finally:
        worker.stop()


async def test_two_workers_share_partitions_and_stay_exact(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="20")
    env_b = {**env, "INVSYNC_WEB_PORT": str(free_port())}
    env_b["INVSYNC_DATA_DIR"] = str(tmp_path / "data-b")
    keys = [f"WH{i % 2}:SKU-{i}" for i in range(60)]
    events = _crash_events(10_000, keys, seed=3)
    expected = _expected(events)
    a = WorkerProcess(env, tmp_path / "a.log")
    b = WorkerProcess(env_b, tmp_path / "b.log")
    a.start(ready=True)
    b.start(ready=True)  # the group has rebalanced: each worker owns some partitions
    try:
        await produce(kafka_bootstrap, env["INVSYNC_TOPIC_STOCK_EVENTS"], events)
        out = await read_all(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_INVENTORY"],
            until=lambda recs: all(
                latest_by_key(recs).get(k, {}).get("quantity") == v for k, v in expected.items()
            ),
            quiet_s=3.0,
            timeout=90.0,
        )
        latest = latest_by_key(out)
        assert {k: v["quantity"] for k, v in latest.items()} == expected
        assert versions_increase(out)
        counts = []
        for w in (a, b):
            metrics = httpx.get(f"{w.web}/metrics", timeout=5).text
            counts.append(
                sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if line.startswith("invsync_stock_events_total{")
                )
            )
        assert all(c > 0 for c in counts), f"both workers must process events: {counts}"
    finally:
        a.stop()
        b.stop()


async def test_a_worker_joining_under_load_keeps_the_result_exact(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A rebalance while events flow: consumers that keep the highest version per key
    (DESIGN.md) end with exact quantities."""
    env = isolated_env(kafka_bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="20")
    env_b = {**env, "INVSYNC_WEB_PORT": str(free_port()), "INVSYNC_DATA_DIR": str(tmp_path / "b")}
    keys = [f"WH{i % 2}:SKU-{i}" for i in range(80)]
    events = _crash_events(40_000, keys, seed=5)
    expected = _expected(events)
    a = WorkerProcess(env, tmp_path / "a.log")
    b = WorkerProcess(env_b, tmp_path / "b.log")
    a.start(ready=True)
    topic = env["INVSYNC_TOPIC_STOCK_EVENTS"]

    def produce_slowly() -> None:
        async def run() -> None:
            for i in range(0, len(events), 1000):
                await produce(kafka_bootstrap, topic, events[i : i + 1000])
                await asyncio.sleep(0.15)

        asyncio.run(run())

    try:
        feeding = asyncio.get_running_loop().run_in_executor(None, produce_slowly)
        await asyncio.sleep(1.0)
        await asyncio.get_running_loop().run_in_executor(None, lambda: b.start(ready=True))
        await feeding
        out = await read_all(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_INVENTORY"],
            until=lambda recs: all(
                latest_by_key(recs).get(k, {}).get("quantity") == v for k, v in expected.items()
            ),
            quiet_s=3.0,
            timeout=90.0,
        )
        latest = latest_by_key(out)
        wrong = {k: (latest.get(k, {}).get("quantity"), v) for k, v in expected.items()}
        wrong = {k: pv for k, pv in wrong.items() if pv[0] != pv[1]}
        assert not wrong, f"(published, expected): {wrong}\n{a.log_tail()}\n{b.log_tail()}"
    finally:
        a.stop()
        b.stop()
