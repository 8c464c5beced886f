"""`MockHttpServer`: a real aiohttp server on 127.0.0.1 that records and can be told to fail.

Order of checks for every request: record it, then `set_down` (503), then the auth
headers (401), then scripted failures (`fail_next`), then the route's handler.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RecordedRequest:
    """One request as it arrived; `status` is what the mock answered."""

    seq: int
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes
    status: int | None = None


@dataclass(frozen=True)
class _Failure:
    status: int
    body: Any
    retry_after: float | str | None
    after_apply: bool


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


@dataclass
class _State:
    down: bool = False
    failures: deque[_Failure] = field(default_factory=deque)


class MockHttpServer:
    """Base of the mocks. Subclasses give `_routes()` and `_default_error(status)`."""

    name = "mock"

    def __init__(self, *, auth_headers: Mapping[str, str] | None = None) -> None:
        self.auth_headers = dict(auth_headers or {})
        self.requests: list[RecordedRequest] = []
        self._state = _State()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._port: int | None = None
        self._bodies: dict[int, Any] = {}  # parsed JSON of requests in flight, by id()
        self.latency_s = 0.0
        """Added before every answer: a remote Increff is never 0 ms away."""

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._base_url

    @property
    def port(self) -> int | None:
        """The port of the last start (kept after stop, so a restart can reuse it)."""
        return self._port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host:port` (0 picks a free port); returns the base URL."""
        if self._runner is not None:
            raise RuntimeError(f"{self.name} is already started")
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app.add_routes(self._routes())
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._base_url = f"http://{host}:{self._port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop listening and close connections; safe to call more than once."""
        runner, self._runner = self._runner, None
        self._base_url = None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- scripting ---------------------------------------------------------------------

    def set_down(self, down: bool = True) -> None:
        """While down, every request gets a 503."""
        self._state.down = down

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        body: Any = None,
        retry_after: float | str | None = None,
        after_apply: bool = False,
    ) -> None:
        """Answer the next `n` authorised requests with `status`.

        `body`: a dict/list (sent as JSON), str/bytes (sent as is), or None for the mock's
        default error body. `retry_after`: a `Retry-After` header (seconds or HTTP-date).
        `after_apply`: run the handler first (the change is made) and still fail, like a
        gateway timing out after the backend committed.
        """
        for _ in range(n):
            self._state.failures.append(_Failure(status, body, retry_after, after_apply))

    def reset(self) -> None:
        """Forget recorded requests and scripted failures (state of subclasses is kept)."""
        self.requests.clear()
        self._state = _State()

    async def wait_until(
        self, predicate: Callable[[], bool], within: float = 5.0, interval: float = 0.01
    ) -> None:
        """Wait for `predicate()` to hold; TimeoutError after `within` seconds."""
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: condition not met in {within}s")
            await asyncio.sleep(interval)

    # --- subclass hooks ----------------------------------------------------------------

    def _routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def _default_error(self, status: int) -> Any:
        return {"error": f"HTTP {status}"}

    # --- request pipeline --------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        record = RecordedRequest(
            seq=len(self.requests) + 1,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
            raw=raw,
        )
        self.requests.append(record)
        self._bodies[id(request)] = body
        try:
            response = await self._dispatch(request, handler, raw)
        finally:
            del self._bodies[id(request)]
        record.status = response.status
        return response

    def json_body(self, request: web.Request) -> Any:
        """The parsed JSON body of a request being handled (None when empty or not JSON)."""
        return self._bodies.get(id(request))

    async def _dispatch(
        self, request: web.Request, handler: Handler, raw: bytes
    ) -> web.StreamResponse:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self._state.down:
            return self._failure_response(_Failure(503, None, None, after_apply=False))
        if not self._authorised(request):
            return json_response(self._default_error(401), status=401)
        if raw and self._bodies.get(id(request)) is None:
            return json_response(self._default_error(400), status=400)
        if self._state.failures:
            failure = self._state.failures.popleft()
            if failure.after_apply:
                await handler(request)
            return self._failure_response(failure)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return json_response(self._default_error(exc.status), status=exc.status)

    def _authorised(self, request: web.Request) -> bool:
        return all(
            hmac.compare_digest(request.headers.get(k, "").encode(), v.encode())
            for k, v in self.auth_headers.items()
        )

    def _failure_response(self, failure: _Failure) -> web.Response:
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        body = failure.body if failure.body is not None else self._default_error(failure.status)
        if isinstance(body, str | bytes):
            return web.Response(
                body=body.encode() if isinstance(body, str) else body,
                status=failure.status,
                content_type="text/plain",
                headers=headers,
            )
        return json_response(body, status=failure.status, headers=headers)
