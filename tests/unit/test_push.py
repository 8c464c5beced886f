"""The marketplace pusher without a broker: a fake client, an in-memory pushed table."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from connectors.errors import MarketplaceError
from connectors.marketplace import PushResult
from connectors.retry import Backoff
from streams.metrics import Metrics
from streams.push import MAX_SKU_ATTEMPTS, MarketplacePusher


class _Pushed:
    def __init__(self) -> None:
        self.data: dict[str, int] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, version: int, partition: int) -> None:
        self.data[key] = version


class _DeadLetters:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def record(self, **kwargs: Any) -> None:
        self.records.append(kwargs)


class _Client:
    """Answers every push with `status` (None: success); `gate` holds calls open."""

    def __init__(self, status: int | None = None) -> None:
        self.status = status
        self.calls = 0
        self.cancelled = 0
        self.gate: asyncio.Event | None = None

    async def push(self, location: str, items: list[tuple[str, int]]) -> PushResult:
        self.calls += 1
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        skus = tuple(sku for sku, _ in items)
        if self.status is None:
            return PushResult(location, succeeded=skus)
        error = MarketplaceError(
            "refused", retriable=self.status >= 500, status=self.status, endpoint="push"
        )
        return PushResult(location, failed=skus, errors=(error,))


def _pusher(client: _Client) -> tuple[MarketplacePusher, _DeadLetters, CollectorRegistry]:
    registry = CollectorRegistry()
    dead = _DeadLetters()
    pusher = MarketplacePusher(
        client=client,  # type: ignore[arg-type]
        pushed=_Pushed(),  # type: ignore[arg-type]
        dead_letters=dead,  # type: ignore[arg-type]
        metrics=Metrics(registry),
        source_topic="inventory",
        backoff=Backoff(base=0.01, max_delay=0.02, max_attempts=None, deadline=1e9),
    )
    return pusher, dead, registry


async def test_refused_credentials_keep_every_key_and_are_counted() -> None:
    for status in (401, 403):
        client = _Client(status)
        pusher, dead, registry = _pusher(client)
        for i in range(300):
            pusher.note(f"WH1:S{i}", "WH1", f"S{i}", 5, 1, i % 4)
        for _ in range(MAX_SKU_ATTEMPTS * 3):
            assert await pusher.push_once() == 0
        assert dead.records == []
        assert len(pusher.pending) == 300
        refused = registry.get_sample_value("invsync_marketplace_auth_failures_total")
        assert refused == MAX_SKU_ATTEMPTS * 3
        assert pusher._not_before > 0  # backing off
        client.status = None  # credentials fixed
        assert await pusher.push_once() == 300
        assert pusher.pending == {}


async def test_a_bad_request_for_the_batch_still_dead_letters_after_a_few_tries() -> None:
    pusher, dead, _ = _pusher(_Client(400))
    pusher.note("WH1:S1", "WH1", "S1", 5, 1, 0)
    for _ in range(MAX_SKU_ATTEMPTS):
        await pusher.push_once()
    assert len(dead.records) == 1
    assert pusher.pending == {}


async def test_revoke_cancels_the_round_in_flight_and_waits_for_the_rescan() -> None:
    client = _Client()
    client.gate = asyncio.Event()
    pusher, _, _ = _pusher(client)
    stop = asyncio.Event()
    loop = asyncio.create_task(pusher.run(stop.is_set))
    try:
        pusher.note("WH1:A", "WH1", "A", 5, 1, 0)
        pusher.note("WH1:B", "WH1", "B", 5, 1, 1)
        for _ in range(100):
            if client.calls:
                break
            await asyncio.sleep(0.01)
        assert client.calls == 1
        await pusher.revoke({0})
        assert client.cancelled == 1, "the PUT in flight was not cancelled"
        assert set(pusher.pending) == {"WH1:B"}
        client.gate.set()
        await asyncio.sleep(0.7)
        assert client.calls == 1, "pushed during the rebalance"
        pusher.rescan([])
        for _ in range(100):
            if not pusher.pending:
                break
            await asyncio.sleep(0.01)
        assert pusher.pending == {}
        assert not loop.done(), "the loop died with its round"
    finally:
        stop.set()
        await asyncio.wait_for(loop, 2.0)
