"""`POST /inventories/search-sku` on every worker: the pre-order lookup (DESIGN.md paths).

The worker a lookup reaches answers for the partitions it restored (`InventoryEngine.
lookup`, no HTTP hop) and asks every other worker of the group, at the URL Faust's
assignor advertises for it, for theirs (`POST /internal/inventories/search-sku`, same
auth); `models.lookup.merge` answers only when those parts cover every partition once,
from one group generation. Otherwise — a worker unreachable or slow, a rebalance, tables
still being restored — it answers 503 with the contract's error body: never a silently
partial list, never a half-restored table.

Auth, body limits and errors are the callbacks' (`streams/web.py`): headers checked on
the request head, the whole body read however the network splits it, large bodies
parsed in a thread, and a long SKU list computed in slices so the loop keeps serving
the inventory agent between them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import faust
import orjson
from aiohttp import web

from connectors.errors import ConnectorError
from connectors.peers import PEER_LOOKUP_PATH, PeerClient
from models.callbacks import CallbackError, error_body
from models.engine import InventoryEngine
from models.lookup import (
    LookupIncomplete,
    PartialLookup,
    merge,
    parse_lookup,
    parse_peer_lookup,
)
from streams import faustcompat
from streams.auth import HeaderAuth
from streams.callbacks import OFF_LOOP_BYTES
from streams.httpserver import BodyRefused, defer_expect, read_body
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

LOOKUP_PATH = "/inventories/search-sku"
SLICE_SKUS = 100
"""SKUs computed between two yields to the event loop (a few ms each)."""
RETRY_AFTER_S = "1"


class Unavailable(CallbackError):
    """The lookup cannot be answered whole now: 503, with a reason and `Retry-After`."""

    status = 503


class LookupService:
    """Answers the public lookup (gathering from peers) and the peers' internal one."""

    def __init__(
        self,
        *,
        engine: InventoryEngine,
        restored_reason: Callable[[], str | None],
        broker_reachable: Callable[[], Awaitable[bool]] | None = None,
        generation: Callable[[], int],
        owners: Callable[[], Mapping[str, Collection[int]]],
        own_url: str,
        partitions: int,
        peers: PeerClient,
        auth: HeaderAuth,
        max_bytes: int,
        body_timeout_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.restored_reason = restored_reason
        self.broker_reachable = broker_reachable
        self.generation = generation
        self.owners = owners
        self.own_url = own_url
        self.partitions = partitions
        self.peers = peers
        self.auth = auth
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s
        self.metrics = metrics

    # -- the answers -------------------------------------------------------------------

    async def search(self, skus: Sequence[str]) -> dict[str, Any]:
        """Increff's search answer for ``skus`` over every partition; `Unavailable`."""
        await self._require_ready()
        generation = self.generation()
        others = [url for url, held in self.owners().items() if held and url != self.own_url]
        jobs = [self.local(skus, generation), *(self._ask(url, skus, generation) for url in others)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        parts: list[PartialLookup] = []
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, LookupIncomplete | Unavailable):
                    raise Unavailable(str(result)) from None
                raise result
            parts.append(result)
        try:
            return merge(skus, parts, self.partitions)
        except LookupIncomplete as exc:
            raise Unavailable(str(exc)) from None

    async def local(self, skus: Sequence[str], generation: int) -> PartialLookup:
        """What this worker's restored partitions hold of ``skus``, all from ``generation``."""
        await self._require_ready()
        if generation != self.generation():
            raise Unavailable(
                f"lookup incomplete: {self.own_url} is in group generation "
                f"{self.generation()}, asked for {generation} (rebalancing); retry"
            )
        engine = self.engine
        active = frozenset(engine.active)
        found = engine.lookup(skus[:SLICE_SKUS])
        for start in range(SLICE_SKUS, len(skus), SLICE_SKUS):
            await asyncio.sleep(0)  # the agent's batches and timers run between slices
            found.update(engine.lookup(skus[start : start + SLICE_SKUS]))
        if (
            self.generation() != generation
            or frozenset(engine.active) != active
            or self.restored_reason() is not None
        ):
            raise Unavailable("lookup incomplete: a rebalance began during the lookup; retry")
        return PartialLookup(generation, active, found, self.own_url)

    async def _ask(self, url: str, skus: Sequence[str], generation: int) -> PartialLookup:
        try:
            answer = await self.peers.lookup(url, skus, generation)
        except ConnectorError as exc:
            log.warning("lookup: worker %s did not answer: %s", url, exc.message)
            raise Unavailable(f"lookup incomplete: worker {url}: {exc.message}") from None
        return PartialLookup.from_wire(answer, url)

    async def _require_ready(self) -> None:
        """As `/ready`: tables restored, and the broker reachable (a worker cut off from it
        may hold partitions the group already gave to another)."""
        reason = self.restored_reason()
        check = self.broker_reachable
        if reason is None and check is not None and not await check():
            reason = "broker unreachable"
        if reason is not None:
            raise Unavailable(f"lookup unavailable: {reason}")

    # -- HTTP --------------------------------------------------------------------------

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """`POST /inventories/search-sku`."""

        async def run(body: bytes) -> bytes:
            skus = await self._off_loop(parse_lookup, body)
            return orjson.dumps(await self.search(skus))

        return await self._serve(request, LOOKUP_PATH, run)

    async def serve_peer(self, request: web.Request) -> web.StreamResponse:
        """`POST /internal/inventories/search-sku`: this worker's part, for a peer."""

        async def run(body: bytes) -> bytes:
            asked = await self._off_loop(parse_peer_lookup, body)
            part = await self.local(asked.channelSkuCodes, asked.generation)
            return orjson.dumps(part.to_wire())

        return await self._serve(request, PEER_LOOKUP_PATH, run)

    async def _serve(
        self, request: web.Request, path: str, run: Callable[[bytes], Awaitable[bytes]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await self._respond(request, run)
        except Exception:
            self._count(path, 500, started)
            raise  # streams.httpserver.json_errors logs where (not the input) and answers
        self._count(path, response.status, started)
        return response

    async def _respond(
        self, request: web.Request, run: Callable[[bytes], Awaitable[bytes]]
    ) -> web.Response:
        try:
            body = await self._admit(request)
            answer = await run(body)
        except CallbackError as exc:
            response = web.Response(
                status=exc.status, body=error_body(str(exc)), content_type="application/json"
            )
            if exc.status == 503:
                response.headers["Retry-After"] = RETRY_AFTER_S
            if exc.status in (400, 408) and isinstance(exc.__cause__, BodyRefused):
                response.force_close()  # the rest of the body will never be read
            return response
        return web.Response(status=200, body=answer, content_type="application/json")

    async def _admit(self, request: web.Request) -> bytes:
        """The whole body once auth (on the head) and readiness allow; else `CallbackError`."""
        if not self.auth(request.headers):
            raise CallbackError("unauthorized", status=401)
        await self._require_ready()  # before reading anything
        try:
            return await read_body(request, limit=self.max_bytes, timeout_s=self.body_timeout_s)
        except BodyRefused as exc:
            raise CallbackError(str(exc), status=exc.status) from exc

    def _count(self, path: str, status: int, started: float) -> None:
        if self.metrics is not None:
            self.metrics.callbacks.labels(path, str(status)).inc()
            self.metrics.callback_latency.labels(path).observe(time.perf_counter() - started)

    @staticmethod
    async def _off_loop(parse: Callable[[bytes], T], body: bytes) -> T:
        if len(body) <= OFF_LOOP_BYTES:
            return parse(body)
        return await asyncio.to_thread(parse, body)


def install_lookup(
    app: faust.App,
    settings: Settings,
    metrics: Metrics,
    *,
    engine: InventoryEngine,
    restored_reason: Callable[[], str | None],
    broker_reachable: Callable[[], Awaitable[bool]],
    changelog: str,
) -> LookupService:
    """Serve the lookup and its peer path on the app's web server (hardened by
    `streams.web.install_callbacks`, which must run first)."""
    auth = HeaderAuth(settings.callback_headers)
    peers = PeerClient(auth.credentials(), timeout=settings.lookup_peer_timeout_s)
    service = LookupService(
        engine=engine,
        restored_reason=restored_reason,
        broker_reachable=broker_reachable,
        generation=lambda: int(app.consumer_generation_id),
        owners=lambda: faustcompat.partition_owners(app, changelog),
        own_url=faustcompat.own_url(app),
        partitions=settings.topic_partitions,
        peers=peers,
        auth=auth,
        max_bytes=settings.callback_max_bytes,
        body_timeout_s=settings.callback_body_timeout_s,
        metrics=metrics,
    )
    aio = faustcompat.aiohttp_web_driver(app).web_app
    aio.router.add_route("POST", LOOKUP_PATH, service.serve, expect_handler=defer_expect)
    aio.router.add_route("POST", PEER_LOOKUP_PATH, service.serve_peer, expect_handler=defer_expect)

    async def close_peers(sender: Any, **kwargs: Any) -> None:
        await peers.aclose()

    shutdown: Any = app.on_before_shutdown  # Faust's signal type rejects async handlers
    shutdown.connect(close_peers)
    return service
