"""Marketplace push against a misbehaving marketplace: refused credentials, 500s, slow
answers, a SIGKILL between publication and push, and a rebalance while a PUT is in
flight. Real workers, a real local HTTP marketplace, the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from invsync.localkafka import free_port
from invsync.mocks.marketplace import MockMarketplace
from tests.integration.inventory_support import latest_by_key, read_all, stock
from tests.integration.support import WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration

TOKEN = {"x-api-key": "mk-secret"}


@pytest.fixture
async def marketplace() -> AsyncIterator[MockMarketplace]:
    mock = MockMarketplace(auth_headers=TOKEN)
    await mock.start()
    yield mock
    await mock.stop()


def _env(bootstrap: str, tmp_path: Path, mock: MockMarketplace, **extra: str) -> dict[str, str]:
    return isolated_env(
        bootstrap,
        tmp_path / "data",
        INVSYNC_DEBOUNCE_MS="0",
        INVSYNC_MARKETPLACE_INVENTORY_URL=f"{mock.base_url}{mock.path}",
        INVSYNC_MARKETPLACE_HEADERS='{"x-api-key": "mk-secret"}',
        **extra,
    )


async def _eventually(predicate: object, within: float = 30.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


def _all_at(mock: MockMarketplace, keys: list[str], quantity: int) -> bool:
    return all(mock.quantity("WH1", k.split(":")[1]) == quantity for k in keys)


def _metric(worker: WorkerProcess, name: str) -> float:
    text = httpx.get(f"{worker.web}/metrics", timeout=5.0).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _published(bootstrap: str, topic: str, keys: list[str], quantity: int) -> None:
    out = await read_all(
        bootstrap,
        topic,
        until=lambda recs: all(
            latest_by_key(recs).get(k, {}).get("quantity") == quantity for k in keys
        ),
        quiet_s=0.3,
        timeout=60.0,
    )
    assert all(latest_by_key(out).get(k, {}).get("quantity") == quantity for k in keys)


async def test_refused_credentials_back_off_and_keep_every_key(
    kafka_bootstrap: str, tmp_path: Path, marketplace: MockMarketplace
) -> None:
    marketplace.auth_headers = {"x-api-key": "rotated"}  # ours is refused: 401
    env = _env(kafka_bootstrap, tmp_path, marketplace)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    keys = [f"WH1:A{i}" for i in range(300)]
    try:
        await produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_STOCK_EVENTS"],
            [stock(f"a-{k}", k, 6, kind="SNAPSHOT") for k in keys],
        )
        assert await _eventually(lambda: len(marketplace.requests) >= 2), worker.log_tail()
        first = time.monotonic()
        await asyncio.sleep(6.0)  # was: 5 rounds in ~2.5 s, then all 300 dead-lettered
        refused = [r for r in marketplace.requests if r.status == 401]
        rounds = len(refused) / 2  # 300 SKUs at one location: two calls a round
        assert rounds <= 10, f"{rounds} rounds in {time.monotonic() - first:.1f}s: no backoff"
        assert _metric(worker, "invsync_marketplace_auth_failures_total") >= len(refused) - 2
        dead = await read_all(
            kafka_bootstrap, env["INVSYNC_TOPIC_DEAD_LETTERS"], quiet_s=1.0, timeout=3.0
        )
        assert dead == [], f"{len(dead)} keys dead-lettered on a 401"
        assert "mk-secret" not in (tmp_path / "worker.log").read_text()
        marketplace.auth_headers = dict(TOKEN)  # credentials fixed
        assert await _eventually(lambda: _all_at(marketplace, keys, 6), 45.0), worker.log_tail()
    finally:
        worker.stop()


async def test_500s_and_slow_answers_still_converge(
    kafka_bootstrap: str, tmp_path: Path, marketplace: MockMarketplace
) -> None:
    marketplace.fail_next(4, status=500)
    marketplace.latency_s = 1.5
    env = _env(kafka_bootstrap, tmp_path, marketplace)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    keys = [f"WH1:B{i}" for i in range(50)]
    try:
        await produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_STOCK_EVENTS"],
            [stock(f"b-{k}", k, 3, kind="SNAPSHOT") for k in keys],
        )
        assert await _eventually(lambda: _all_at(marketplace, keys, 3), 45.0), worker.log_tail()
        assert sum(1 for r in marketplace.requests if r.status == 500) == 4
        dead = await read_all(
            kafka_bootstrap, env["INVSYNC_TOPIC_DEAD_LETTERS"], quiet_s=1.0, timeout=3.0
        )
        assert dead == []
    finally:
        worker.stop()


async def test_keys_published_but_not_pushed_when_killed_are_pushed_after_restart(
    kafka_bootstrap: str, tmp_path: Path, marketplace: MockMarketplace
) -> None:
    marketplace.latency_s = 30.0  # the push is in flight when the worker dies
    env = _env(kafka_bootstrap, tmp_path, marketplace, INVSYNC_MARKETPLACE_TIMEOUT_S="60")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    keys = [f"WH1:C{i}" for i in range(40)]
    try:
        await produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_STOCK_EVENTS"],
            [stock(f"c-{k}", k, 4, kind="SNAPSHOT") for k in keys],
        )
        await _published(kafka_bootstrap, env["INVSYNC_TOPIC_INVENTORY"], keys, 4)
        assert await _eventually(lambda: len(marketplace.requests) >= 1), worker.log_tail()
        worker.kill9()
        marketplace.latency_s = 0.0
        assert not any(_all_at(marketplace, [k], 4) for k in keys)
        worker.start()
        assert await _eventually(lambda: _all_at(marketplace, keys, 4), 45.0), worker.log_tail()
    finally:
        worker.stop()


async def test_a_revoked_partitions_push_in_flight_never_lands_after_the_new_owners(
    kafka_bootstrap: str, tmp_path: Path, marketplace: MockMarketplace
) -> None:
    slow = 20.0
    marketplace.latency_s = slow
    env = _env(kafka_bootstrap, tmp_path, marketplace, INVSYNC_MARKETPLACE_TIMEOUT_S="60")
    first = WorkerProcess(env, tmp_path / "first.log")
    second = WorkerProcess(
        {**env, "INVSYNC_WEB_PORT": str(free_port()), "INVSYNC_DATA_DIR": str(tmp_path / "b")},
        tmp_path / "second.log",
    )
    first.start(ready=True)
    topic = env["INVSYNC_TOPIC_STOCK_EVENTS"]
    keys = [f"WH1:D{i}" for i in range(40)]  # spread over the 4 partitions
    try:
        await produce(
            kafka_bootstrap, topic, [stock(f"d-{k}", k, 5, kind="SNAPSHOT") for k in keys]
        )
        assert await _eventually(lambda: len(marketplace.requests) >= 1), first.log_tail()
        in_flight_since = time.monotonic()
        marketplace.latency_s = 0.0  # only the first owner's PUT is slow
        second.start(ready=True)  # a rebalance: the first owner loses partitions
        await produce(
            kafka_bootstrap, topic, [stock(f"e-{k}", k, 7, kind="SNAPSHOT") for k in keys]
        )
        assert await _eventually(lambda: _all_at(marketplace, keys, 7), 45.0), (
            first.log_tail() + second.log_tail()
        )
        # Past the moment the old PUT (quantity 5) would have been applied.
        await asyncio.sleep(max(0.0, in_flight_since + slow + 1.5 - time.monotonic()))
        stale = [k for k in keys if not _all_at(marketplace, [k], 7)]
        assert not stale, f"an old owner's PUT landed after the new owner's: {stale[:5]}"
        assert marketplace.aborted >= 1
    finally:
        second.stop()
        first.stop()
