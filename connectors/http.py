"""Plumbing shared by the HTTP connectors: one pooled client, retries, metrics, safe errors.

`map_httpx_errors` is the one place where httpx's exceptions become ours. Every piece
of outside text that ends up in one of our errors goes through `scrub` first, so the
credentials a client sends can never be echoed back into a log line.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from connectors.errors import ConnectorError, TransportError
from connectors.retry import Backoff, Sleep, with_retries

log = logging.getLogger("connectors")

OnRequest = Callable[[str, int | None, float], None]
"""Metrics hook: (endpoint name, HTTP status or None when no response, seconds)."""

DEFAULT_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10)
_SNIPPET = 300


class Scrubber:
    """Replaces known secret values with `***` in any text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


@contextmanager
def map_httpx_errors(endpoint: str, scrub: Callable[[str], str]) -> Iterator[None]:
    """Turn httpx's exceptions into ours (`raise ... from exc`)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransportError(f"timed out ({type(exc).__name__})", endpoint=endpoint) from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        msg = scrub(f"{type(exc).__name__}: {exc}")
        raise TransportError(msg, retriable=False, endpoint=endpoint) from exc
    except httpx.TransportError as exc:
        raise TransportError(scrub(f"{type(exc).__name__}: {exc}"), endpoint=endpoint) from exc
    except httpx.HTTPError as exc:
        raise ConnectorError(scrub(f"{type(exc).__name__}: {exc}"), endpoint=endpoint) from exc


def body_snippet(response: httpx.Response) -> str:
    """The start of a response body for an error message ("" when empty)."""
    text = response.content[:_SNIPPET].decode("utf-8", "replace").strip()
    return text + ("..." if len(response.content) > _SNIPPET else "")


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is empty or not a JSON object."""
    try:
        data = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


class JsonHttpClient:
    """Base of the connectors: JSON over one pooled `httpx.AsyncClient`, with retries."""

    service = "http"

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        secrets: Iterable[str],
        timeout: float | httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None,
        backoff: Backoff,
        on_request: OnRequest | None,
        limits: httpx.Limits | None,
        sleep: Sleep,
    ) -> None:
        self._scrub = Scrubber(secrets)
        self._backoff = backoff
        self._on_request = on_request
        self._sleep = sleep
        self._closed = False
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Accept": "application/json", **headers},
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            transport=transport,
            limits=limits or DEFAULT_LIMITS,
            follow_redirects=False,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close the connection pool; safe to call more than once."""
        if not self._closed:
            self._closed = True
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"{type(self).__name__} was never closed", ResourceWarning, stacklevel=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self._http.base_url)!r})"

    async def _request(
        self,
        endpoint: str,
        method: str,
        url: str,
        body: Any = None,
        *,
        backoff: Backoff | None = None,
    ) -> httpx.Response:
        """Send `body` as JSON, retrying per `backoff`; a 2xx response or our error."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        content = orjson.dumps(body) if body is not None else None

        def log_retry(attempt: int, exc: ConnectorError, wait: float) -> None:
            log.warning(
                "%s %s attempt %d failed (%s); retrying in %.2fs",
                self.service,
                endpoint,
                attempt,
                exc,
                wait,
            )

        async def attempt() -> httpx.Response:
            return await self._attempt(endpoint, method, url, content)

        return await with_retries(
            attempt, backoff or self._backoff, sleep=self._sleep, on_retry=log_retry
        )

    async def _attempt(
        self, endpoint: str, method: str, url: str, content: bytes | None
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if content is not None else None
        started = time.perf_counter()
        status: int | None = None
        try:
            with map_httpx_errors(endpoint, self._scrub):
                response = await self._http.request(method, url, content=content, headers=headers)
            status = response.status_code
        finally:
            self._observe(endpoint, status, time.perf_counter() - started)
        if response.is_success:
            return response
        raise self._error(response, endpoint)

    def _observe(self, endpoint: str, status: int | None, seconds: float) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(endpoint, status, seconds)
        except Exception:
            log.exception("%s on_request hook failed", self.service)

    def _error(self, response: httpx.Response, endpoint: str) -> ConnectorError:
        """The error for a non-2xx response; subclasses parse their service's body."""
        raise NotImplementedError


__all__ = [
    "DEFAULT_LIMITS",
    "JsonHttpClient",
    "OnRequest",
    "Scrubber",
    "body_snippet",
    "json_object",
    "map_httpx_errors",
]
