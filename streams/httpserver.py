"""The worker's HTTP server (Faust's aiohttp driver), hardened for Increff's callbacks.

Faust builds an aiohttp application and runner; `harden` adjusts both before the
worker starts them, so that every answer from every layer keeps the contract
(DESIGN.md "Orders and callbacks"):

- parser errors (a malformed request line or header), unknown paths, wrong methods and
  unexpected failures answer `{"hasError": true, "errorMessage": ...}` as JSON;
- aiohttp's own error logging never carries request bytes: a malformed header line may
  hold a callback token, and aiohttp logs the parser's message (which quotes the line)
  at ERROR and echoes it in its 400 body;
- a request head must arrive within `header_timeout_s` of the connection opening (or
  of the previous answer on a kept-alive connection): aiohttp's keep-alive timer closes
  a connection still waiting for a whole head, so it is set to that timeout.

These reach into aiohttp internals (`AppRunner._make_server`,
`RequestHandler.handle_error`), checked against the aiohttp version here; the Faust side
(its web driver's runner) is in `streams/faustcompat.py` with Faust's other internals.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import aiohttp
import faust
from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from models.callbacks import error_body
from streams import faustcompat

log = logging.getLogger(__name__)

_TESTED = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")

_MESSAGES = {
    400: "malformed request",
    404: "unknown path",
    405: "method not allowed",
    408: "request timed out",
    413: "body too large",
    417: "unsupported Expect header",
    500: "internal error",
}


def error_response(status: int, message: str | None = None) -> web.Response:
    """The contract's error body, as JSON."""
    text = message or _MESSAGES.get(status) or HTTPStatus(status).phrase.lower()
    return web.Response(status=status, body=error_body(text), content_type="application/json")


def _frames(exc: BaseException) -> str:
    """Where it failed, without the exception's message (which may quote input)."""
    return "".join(traceback.format_tb(exc.__traceback__)).rstrip()


class _Protocol(RequestHandler):
    """aiohttp's per-connection handler, with errors that quote nothing of the request."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        kind = type(exc).__name__ if exc is not None else "-"
        if status >= 500 and exc is not None:
            log.error("HTTP %d: %s\n%s", status, kind, _frames(exc))
        else:
            log.info("HTTP %d from %s: %s", status, request.remote, kind)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        response = error_response(status)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        kind = type(exc).__name__ if isinstance(exc, BaseException) else "-"
        text = str(args[0]) if args else "aiohttp error"
        log.error("%s (%s)", text.split("%", 1)[0].strip(), kind)


class _Server(Server):
    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer of every route (404, 405, 500, ...) as the contract's body."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - logged (frames, not the message) and answered
        kind = type(exc).__name__
        log.error("%s %s failed: %s\n%s", request.method, request.path, kind, _frames(exc))  # noqa: TRY400
        return error_response(500)


async def defer_expect(request: web.Request) -> None:
    """Leave `Expect: 100-continue` to the route, which answers it only after auth."""


class BodyRefused(Exception):
    """The body was not read whole: too large, too slow, cut off or undecodable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: web.Request, *, limit: int, timeout_s: float) -> bytes:
    """The whole body, however the network splits it, or `BodyRefused`.

    Stops reading as soon as more than `limit` bytes (decoded) arrived, chunked or not;
    a declared Content-Length above the limit is refused before reading anything.
    Answers `Expect: 100-continue` (the caller has already checked auth).
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyRefused(413, f"body larger than {limit} bytes")
    expect = request.headers.get("Expect")
    if expect is not None:
        if expect.lower() != "100-continue":
            raise BodyRefused(417, "unsupported Expect header")
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer proper has not started
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyRefused(408, "body not received in time") from None
    except (RequestPayloadError, HttpProcessingError, OSError) as exc:
        # Cut off (client gone, short of its Content-Length) or undecodable (bad gzip).
        log.info("callback body unreadable: %s", type(exc).__name__)
        raise BodyRefused(400, "incomplete or undecodable body") from None
    return b"".join(chunks)


def harden(app: faust.App, *, header_timeout_s: float) -> web.Application:
    """Install the above on the app's web server; returns the aiohttp application."""
    if not aiohttp.__version__.startswith(_TESTED) or not hasattr(web.AppRunner, "_make_server"):
        raise RuntimeError(f"streams.httpserver is untested with aiohttp {aiohttp.__version__}")
    aio: web.Application = faustcompat.aiohttp_web_driver(app).web_app
    aio.middlewares.append(json_errors)
    # lingering_time: how long an unread body (after a 401/413) is read and dropped so the
    # client sees the answer before the connection closes.
    faustcompat.replace_web_runner(
        app, _Runner(aio, access_log=None, keepalive_timeout=header_timeout_s, lingering_time=2.0)
    )
    return aio
