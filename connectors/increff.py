"""`IncreffClient`: the Increff Standard APIs we call (`/work/shared/increff-api.md`).

Every call retries network errors, 5xx and 429 (honouring `Retry-After`) with
exponential backoff and full jitter, and never retries another 4xx, nor Increff's
`BAD_DATA` whatever its status: that answer is final for the payload. Increff
treats a repeated create / cancel / update with the same body as a no-op, which is
what makes the retries safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError

from connectors.errors import IncreffError
from connectors.http import JsonHttpClient, OnRequest, body_snippet, json_object
from connectors.retry import Backoff, Sleep, is_retriable_status, parse_retry_after
from models.increff import (
    AddReturnItems,
    CancelReturnItems,
    CreateReturnOrder,
    CustomerCancellation,
    OutwardOrder,
    OutwardOrderList,
    SearchInventoryRequest,
    SearchInventoryResponse,
    UpdateOrderProperties,
    UpdateReturnOrder,
)

CANCEL_RETURN_ITEMS_PATH = "/return/cancel-items"
"""Increff has not published this path (increff-api.md: "path not found"); set the real one
per environment through `IncreffClient(cancel_return_items_path=...)`."""


class IncreffClient(JsonHttpClient):
    """Async client for Increff's order, inventory and returns APIs (one connection pool).

    `domain=None` leaves out `authDomainName` (Increff's older API had only two headers).
    `on_request(endpoint, status, seconds)` is called after every attempt, for metrics.
    """

    service = "increff"

    def __init__(
        self,
        base_url: str,
        username: str,
        password: SecretStr,
        domain: str | None = None,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
        on_request: OnRequest | None = None,
        limits: httpx.Limits | None = None,
        cancel_return_items_path: str = CANCEL_RETURN_ITEMS_PATH,
        cancel_return_items_method: str = "PUT",
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        secret = password.get_secret_value()
        headers = {"authUsername": username, "authPassword": secret}
        if domain is not None:
            headers["authDomainName"] = domain
        super().__init__(
            base_url=base_url,
            headers=headers,
            secrets=headers.values(),
            timeout=timeout,
            transport=transport,
            backoff=backoff or Backoff(),
            on_request=on_request,
            limits=limits,
            sleep=sleep,
        )
        self._cancel_return_items = (cancel_return_items_method, cancel_return_items_path)

    async def create_order(self, order: OutwardOrder) -> None:
        """`POST /orders/outward`. Creation is asynchronous at Increff: 200 means accepted."""
        await self._request("create_order", "POST", "/orders/outward", order.to_wire())

    async def create_orders_bulk(self, orders: Sequence[OutwardOrder] | OutwardOrderList) -> None:
        """`POST /orders/outward/list`."""
        if not isinstance(orders, OutwardOrderList):
            orders = OutwardOrderList(outwardOrderClientFormList=list(orders))
        await self._request("create_orders_bulk", "POST", "/orders/outward/list", orders.to_wire())

    async def cancel_order(self, order_code: str, body: CustomerCancellation) -> None:
        """`PUT /orders/{orderCode}/cancel`; quantities are absolute, so replays are safe."""
        self._same_code(order_code, body.orderCode)
        wire = _without(body.to_wire(), "orderCode")
        await self._request("cancel_order", "PUT", f"/orders/{_seg(order_code)}/cancel", wire)

    async def update_order_properties(self, order_code: str, body: UpdateOrderProperties) -> None:
        """`PUT /orders/{orderCode}`."""
        self._same_code(order_code, body.orderCode)
        wire = _without(body.to_wire(), "orderCode")
        await self._request("update_order_properties", "PUT", f"/orders/{_seg(order_code)}", wire)

    async def search_inventory(
        self, channel_sku_codes: Sequence[str] | SearchInventoryRequest
    ) -> SearchInventoryResponse:
        """`POST /inventories/search-sku`."""
        if not isinstance(channel_sku_codes, SearchInventoryRequest):
            channel_sku_codes = SearchInventoryRequest(channelSkuCodes=list(channel_sku_codes))
        endpoint = "search_inventory"
        response = await self._request(
            endpoint, "POST", "/inventories/search-sku", channel_sku_codes.to_wire()
        )
        try:
            return SearchInventoryResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise IncreffError(
                f"unreadable response: {exc.error_count()} validation error(s)",
                status=response.status_code,
                endpoint=endpoint,
            ) from None

    async def create_return(self, body: CreateReturnOrder) -> None:
        """`POST /return/return-orders`."""
        await self._request("create_return", "POST", "/return/return-orders", body.to_wire())

    async def update_return(self, body: UpdateReturnOrder) -> None:
        """`POST /return/update-return-order`."""
        await self._request("update_return", "POST", "/return/update-return-order", body.to_wire())

    async def add_return_items(self, body: AddReturnItems) -> None:
        """`PUT /return/update-return-order/item`."""
        await self._request(
            "add_return_items", "PUT", "/return/update-return-order/item", body.to_wire()
        )

    async def cancel_return_items(self, body: CancelReturnItems) -> None:
        """Cancel return items: method and path from the constructor (unpublished by Increff)."""
        method, path = self._cancel_return_items
        await self._request("cancel_return_items", method, path, body.to_wire())

    @staticmethod
    def _same_code(order_code: str, in_body: str | None) -> None:
        if not order_code:
            raise ValueError("order_code must not be empty")
        if in_body is not None and in_body != order_code:
            raise ValueError("order_code and body.orderCode differ")

    def _error(self, response: httpx.Response, endpoint: str) -> IncreffError:
        status = response.status_code
        retriable = is_retriable_status(status)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if retriable else None
        code = description = message = None
        data = json_object(response)
        if data is not None:  # Increff's {code, message, description}, or Assure's {errorMessage}
            code, description = _text(data, "code"), _text(data, "description")
            message = _text(data, "message") or _text(data, "errorMessage")
        if code == "BAD_DATA":  # a verdict on the payload, even when Increff says 500
            retriable, retry_after = False, None
        if message is None:
            message = body_snippet(response) if data is None else ""
        message = message or response.reason_phrase or "error"
        scrub = self._scrub
        return IncreffError(
            scrub(message),
            code=scrub(code) if code else None,
            description=scrub(description) if description else None,
            retriable=retriable,
            retry_after=retry_after,
            status=status,
            endpoint=endpoint,
        )


def _seg(value: str) -> str:
    """One URL path segment: `/`, `?`, `#` and the rest are percent-encoded."""
    return quote(value, safe="")


def _text(data: Mapping[str, Any], key: str) -> str | None:
    """A field of an error body as text, whatever JSON scalar Increff put there."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def _without(wire: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in wire.items() if k != key}
