"""`PeerClient`: one worker asking another for its part of a pre-order lookup.

A key's state lives on the worker that owns its partition, so the worker a lookup
reaches asks every other worker of the group (at the URL Faust's assignor advertises
for it) with the same auth headers Increff's callbacks carry. No retries: the lookup
answers 503 at once rather than keep a marketplace's order waiting (DESIGN.md path table).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

import httpx
from pydantic import ValidationError

from connectors.errors import PeerError
from connectors.http import JsonHttpClient, OnRequest, body_snippet, json_object
from connectors.retry import NO_RETRY, Sleep
from models.lookup import PeerLookupAnswer

PEER_LOOKUP_PATH = "/internal/inventories/search-sku"


class PeerClient(JsonHttpClient):
    """Pooled keep-alive connections to the other workers (one client for all of them)."""

    service = "peer"

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        secrets: Iterable[str] = (),
        timeout: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: OnRequest | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(
            base_url="",
            headers=dict(headers),
            secrets=[*headers.values(), *secrets],
            timeout=timeout,
            transport=transport,
            backoff=NO_RETRY,
            on_request=on_request,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            sleep=sleep,
        )

    async def lookup(self, url: str, skus: Sequence[str], generation: int) -> PeerLookupAnswer:
        """What the worker at ``url`` holds of ``skus`` in ``generation``; `ConnectorError`."""
        body = {"channelSkuCodes": list(skus), "generation": generation}
        response = await self._request("peer_lookup", "POST", url + PEER_LOOKUP_PATH, body)
        try:
            return PeerLookupAnswer.model_validate_json(response.content)
        except ValidationError:
            raise PeerError(
                "answered with an unreadable body", status=response.status_code, endpoint=url
            ) from None

    def _error(self, response: httpx.Response, endpoint: str) -> PeerError:
        data = json_object(response)
        message = data.get("errorMessage") if data is not None else None
        if not isinstance(message, str) or not message:
            message = body_snippet(response) or response.reason_phrase or "error"
        return PeerError(
            self._scrub(message),
            retriable=response.status_code >= 500,
            status=response.status_code,
            endpoint=endpoint,
        )
