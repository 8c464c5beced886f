"""`MarketplaceInventoryClient`: pushes absolute ATP to the marketplace's Client URL.

The body is Increff's location-wise ATP shape `{locationCode, inventories[{channelSkuCode,
quantity}]}`, at most 200 SKUs per call and location. The answer `{successList,
failureList}` is read per SKU: a 200 naming SKUs in `failureList` is a partial failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr, ValidationError

from connectors.errors import ConnectorError, MarketplaceError
from connectors.http import JsonHttpClient, OnRequest, body_snippet, json_object
from connectors.retry import Backoff, Sleep, is_retriable_status, parse_retry_after
from models.increff import AtpInventoryItem, LocationAtpInventory, SkuListResponse

log = logging.getLogger("connectors")

MAX_SKUS_PER_CALL = 200


@dataclass(frozen=True, slots=True)
class PushResult:
    """Which SKUs the marketplace took. `errors` holds the call failures (if any) that
    made SKUs fail as a whole batch; SKUs named in a `failureList` fail without one."""

    location_code: str
    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    errors: tuple[ConnectorError, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.failed


class MarketplaceInventoryClient(JsonHttpClient):
    """PUTs inventory to one marketplace URL; `headers` are its auth (kept out of errors/logs).

    `push` never raises a ConnectorError: a batch that fails after retries is reported in
    the result. When a batch fails with a retriable error (the marketplace is down or
    overloaded), the later batches of that push are not tried and are reported failed.
    """

    service = "marketplace"

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str | SecretStr] | None = None,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
        on_request: OnRequest | None = None,
        limits: httpx.Limits | None = None,
        method: str = "PUT",
        chunk_size: int = MAX_SKUS_PER_CALL,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not 1 <= chunk_size <= MAX_SKUS_PER_CALL:
            raise ValueError(f"chunk_size must be 1..{MAX_SKUS_PER_CALL}")
        plain = {
            k: v.get_secret_value() if isinstance(v, SecretStr) else v
            for k, v in (headers or {}).items()
        }
        super().__init__(
            base_url="",
            headers=plain,
            secrets=plain.values(),
            timeout=timeout,
            transport=transport,
            backoff=backoff or Backoff(),
            on_request=on_request,
            limits=limits,
            sleep=sleep,
        )
        self._url = url
        self._method = method
        self._chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"MarketplaceInventoryClient(url={self._url!r})"

    async def push(self, location_code: str, items: Iterable[tuple[str, int]]) -> PushResult:
        """Send absolute quantities of `(channelSkuCode, quantity)` for one location.

        A SKU given twice keeps its last quantity. Raises ValueError (before any call) on a
        negative or non-integer quantity.
        """
        latest: dict[str, int] = {}
        for sku, qty in items:
            latest.pop(sku, None)
            latest[sku] = qty
        inventories = [AtpInventoryItem(channelSkuCode=s, quantity=q) for s, q in latest.items()]
        succeeded: list[str] = []
        failed: list[str] = []
        errors: list[ConnectorError] = []
        for start in range(0, len(inventories), self._chunk_size):
            chunk = inventories[start : start + self._chunk_size]
            skus = [i.channelSkuCode for i in chunk]
            if errors and errors[-1].retriable:
                failed.extend(skus)  # the marketplace is down: don't hammer it
                continue
            body = LocationAtpInventory(locationCode=location_code, inventories=chunk)
            try:
                rejected = await self._push_chunk(body)
            except ConnectorError as exc:
                log.warning(
                    "marketplace push of %d SKUs at %s failed: %s", len(skus), location_code, exc
                )
                errors.append(exc)
                failed.extend(skus)
                continue
            for sku in skus:
                (failed if sku in rejected else succeeded).append(sku)
        return PushResult(location_code, tuple(succeeded), tuple(failed), tuple(errors))

    async def _push_chunk(self, body: LocationAtpInventory) -> set[str]:
        """The SKUs of `body` the marketplace put in its failureList."""
        response = await self._request("push_inventory", self._method, self._url, body.to_wire())
        data = json_object(response)
        if data is None:
            return set()  # 200 with no body counts as success
        if data.get("hasError") is True:
            raise self._error(response, "push_inventory")
        try:
            answer = SkuListResponse.model_validate(data)
        except ValidationError:
            return set()
        return set(answer.failureList)

    def _error(self, response: httpx.Response, endpoint: str) -> MarketplaceError:
        status = response.status_code
        retriable = is_retriable_status(status)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if retriable else None
        data = json_object(response)
        message = data.get("errorMessage") if data is not None else None
        if not isinstance(message, str) or not message:
            message = body_snippet(response) or response.reason_phrase or "error"
        return MarketplaceError(
            self._scrub(message),
            retriable=retriable,
            retry_after=retry_after,
            status=status,
            endpoint=endpoint,
        )
