"""`streams.lookup.LookupService` over real local HTTP servers: two "workers" (engines on
MemoryStores, each restored on its own partitions) gather from each other; a restoring
worker, another generation, a rebalance mid-lookup or a silent peer give 503."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from connectors.peers import PEER_LOOKUP_PATH, PeerClient
from models.engine import Input, InventoryEngine, MemoryStore
from models.events import StockEvent
from models.inventory import SafetyStock
from streams import lookup as lookup_module
from streams.auth import HeaderAuth
from streams.lookup import LOOKUP_PATH, LookupService

TOKEN = {"x-token": "s3cret"}
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _partition(key: str) -> int:
    return int(key.split(":")[0][-1]) % 4  # LOC0..LOC3 -> partitions 0..3


@dataclass
class Worker:
    partitions: set[int]
    port: int = field(default_factory=_port)
    generation: int = 7
    restoring: str | None = None
    broker: bool = True
    engine: InventoryEngine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = InventoryEngine(
            MemoryStore(),
            stock_topic="stock",
            safety=SafetyStock(),
            debounce_s=60,
            max_delay_s=60,
            reservation_ttl_s=3600,
            partition_for=_partition,
        )
        self.engine.assigned(self.partitions)
        self.engine.recovered(0.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stock(self, key: str, quantity: int) -> None:
        location, sku = key.split(":")
        event = StockEvent(
            eventId=key,
            type="SNAPSHOT",
            locationCode=location,
            channelSkuCode=sku,
            quantity=quantity,
            occurredAt=T0,
        )
        self.engine.apply([Input("stock", _partition(key), 0, event)], 0.0)


@pytest.fixture
async def workers() -> AsyncIterator[tuple[Worker, Worker]]:
    a, b = Worker({0, 1}), Worker({2, 3})
    owners = {a.url: a.partitions, b.url: b.partitions}
    runners = []
    clients = []
    for w in (a, b):
        peers = PeerClient(TOKEN, timeout=1.0)
        clients.append(peers)
        service = LookupService(
            engine=w.engine,
            restored_reason=_reason_of(w),
            broker_reachable=_broker_of(w),
            generation=_generation_of(w),
            owners=lambda: owners,
            own_url=w.url,
            partitions=4,
            peers=peers,
            auth=HeaderAuth([{k: SecretStr(v) for k, v in TOKEN.items()}]),
            max_bytes=100_000,
            body_timeout_s=5,
        )
        aio = web.Application()
        aio.router.add_post(LOOKUP_PATH, service.serve)
        aio.router.add_post(PEER_LOOKUP_PATH, service.serve_peer)
        runner = web.AppRunner(aio)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", w.port).start()
        runners.append(runner)
    for key, qty in (("LOC0:A", 1), ("LOC1:A", 2), ("LOC1:B", 5)):
        a.stock(key, qty)
    for key, qty in (("LOC2:A", 3), ("LOC3:A", 4)):
        b.stock(key, qty)
    yield a, b
    for runner in runners:
        await runner.cleanup()
    for client in clients:
        await client.aclose()


def _reason_of(w: Worker) -> Callable[[], str | None]:
    return lambda: w.restoring


def _broker_of(w: Worker) -> Callable[[], Awaitable[bool]]:
    async def reachable() -> bool:
        return w.broker

    return reachable


def _generation_of(w: Worker) -> Callable[[], int]:
    return lambda: w.generation


async def _search(w: Worker, *skus: str, headers: dict[str, str] = TOKEN) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(w.url + LOOKUP_PATH, json={"channelSkuCodes": skus}, headers=headers)


async def test_either_worker_answers_every_location(workers: tuple[Worker, Worker]) -> None:
    for w in workers:
        r = await _search(w, "A", "B", "Z")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "successList": [
                {
                    "channelSkuCode": "A",
                    "totalQuantity": 10,
                    "inventories": [
                        {"quantity": q, "locationCode": f"LOC{i}"}
                        for i, q in enumerate((1, 2, 3, 4))
                    ],
                },
                {
                    "channelSkuCode": "B",
                    "totalQuantity": 5,
                    "inventories": [{"quantity": 5, "locationCode": "LOC1"}],
                },
            ],
            "failureList": ["Z"],
        }


async def test_unauthorized_and_restoring_are_refused(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    assert (await _search(a, "A", headers={"x-token": "no"})).status_code == 401
    a.restoring = "rebalancing: tables are being restored"
    r = await _search(a, "A")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["errorMessage"] == "lookup unavailable: rebalancing: tables are being restored"
    r = await _search(b, "A")  # the restoring worker refuses its part too
    assert r.status_code == 503
    assert r.json()["errorMessage"].startswith(
        f"lookup incomplete: worker {a.url}: lookup unavailable"
    )


async def test_another_generation_is_refused(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    b.generation = 8  # b saw a newer assignment than a
    r = await _search(a, "A")
    assert r.status_code == 503
    assert "generation 8, asked for 7" in r.json()["errorMessage"]


async def test_a_rebalance_during_a_long_lookup_is_refused(
    workers: tuple[Worker, Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = workers
    monkeypatch.setattr(lookup_module, "SLICE_SKUS", 1)
    real_sleep = asyncio.sleep

    async def rebalance_meanwhile(delay: float) -> None:
        a.engine.suspend()  # a rebalance began between two slices
        await real_sleep(delay)

    monkeypatch.setattr(lookup_module.asyncio, "sleep", rebalance_meanwhile)
    r = await _search(a, "A", "B")
    assert r.status_code == 503
    assert "rebalance began during the lookup" in r.json()["errorMessage"]


async def test_a_silent_peer_gives_503_not_a_partial_list(workers: tuple[Worker, Worker]) -> None:
    a, b = workers

    # Something accepts the connection and hangs up without an answer. (A peer that
    # hangs is tests/integration/test_lookup.py's: a ReadTimeout here trips a CPython
    # 3.11.7 AST bug when pytest later imports hypothesis.)
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    silent = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    service = _service_of(a)
    service.owners = lambda: {a.url: {0, 1}, url: {2, 3}}
    try:
        with pytest.raises(lookup_module.Unavailable, match=f"worker {url}: RemoteProtocolError"):
            await service.search(["A"])
        b.restoring = "down"  # and a worker that answers 503 is named too
        service.owners = lambda: {a.url: {0, 1}, b.url: {2, 3}}
        with pytest.raises(lookup_module.Unavailable, match=f"worker {b.url}: lookup unavail"):
            await service.search(["A"])
    finally:
        await service.peers.aclose()
        silent.close()
        await silent.wait_closed()


def _service_of(w: Worker) -> LookupService:
    return LookupService(
        engine=w.engine,
        restored_reason=lambda: None,
        generation=lambda: w.generation,
        owners=dict,
        own_url=w.url,
        partitions=4,
        peers=PeerClient(TOKEN, timeout=0.5),
        auth=HeaderAuth([{k: SecretStr(v) for k, v in TOKEN.items()}]),
        max_bytes=1000,
        body_timeout_s=1,
    )
