"""`MockMarketplace`: the marketplace's inventory Client URL, for tests and the demo.

Takes Increff's location-wise ATP body (`PUT /inventory` by default, at most 200 SKUs a
call), answers `{successList, failureList}`, records every quantity in arrival order
and keeps the latest per (location, SKU). A request whose client hung up before it was
handled (see `latency_s`) is not applied, as a server that aborts on disconnect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from invsync.mocks.server import MockHttpServer, json_response
from models.increff import LocationAtpInventory


@dataclass(frozen=True)
class ReceivedQuantity:
    """One pushed quantity: `seq` is its arrival order over all calls; `accepted` is False
    when the mock put the SKU in its failureList."""

    seq: int
    location_code: str
    channel_sku_code: str
    quantity: int
    accepted: bool


class MockMarketplace(MockHttpServer):
    """Fake marketplace inventory endpoint. `auth_headers` (optional) must be present."""

    name = "MockMarketplace"

    def __init__(
        self,
        *,
        path: str = "/inventory",
        method: str = "PUT",
        auth_headers: Mapping[str, str] | None = None,
        max_skus_per_call: int = 200,
    ) -> None:
        super().__init__(auth_headers=auth_headers)
        self.path = path
        self.method = method
        self.max_skus_per_call = max_skus_per_call
        self.received: list[ReceivedQuantity] = []
        self.latest: dict[tuple[str, str], int] = {}
        self.calls = 0
        """Inventory calls the handler accepted for processing (valid body, not failed)."""
        self._failing_skus: set[str] = set()
        self.aborted = 0
        """Inventory calls dropped because the client closed the connection first."""

    def fail_skus(self, skus: Iterable[str]) -> None:
        """Put these SKUs in failureList (200 answer, quantity not applied) until cleared."""
        self._failing_skus |= set(skus)

    def clear_failing_skus(self) -> None:
        self._failing_skus.clear()

    def quantity(self, location_code: str, sku: str) -> int | None:
        return self.latest.get((location_code, sku))

    def _routes(self) -> list[web.RouteDef]:
        return [web.route(self.method, self.path, self._inventory)]

    def _default_error(self, status: int) -> Any:
        return {"hasError": True, "errorMessage": f"mock marketplace: HTTP {status}"}

    async def _inventory(self, request: web.Request) -> web.Response:
        try:
            body = LocationAtpInventory.model_validate(self.json_body(request))
        except ValidationError as exc:
            message = f"invalid body: {exc.error_count()} error(s)"
            return json_response({"hasError": True, "errorMessage": message}, status=400)
        if len(body.inventories) > self.max_skus_per_call:
            message = f"at most {self.max_skus_per_call} SKUs per call"
            return json_response({"hasError": True, "errorMessage": message}, status=400)
        transport = request.transport
        if transport is None or transport.is_closing():
            self.aborted += 1
            return json_response({"hasError": True, "errorMessage": "client went away"}, 499)
        self.calls += 1
        success: list[str] = []
        failure: list[str] = []
        for item in body.inventories:
            accepted = item.channelSkuCode not in self._failing_skus
            self.received.append(
                ReceivedQuantity(
                    len(self.received) + 1,
                    body.locationCode,
                    item.channelSkuCode,
                    item.quantity,
                    accepted,
                )
            )
            if accepted:
                self.latest[(body.locationCode, item.channelSkuCode)] = item.quantity
                success.append(item.channelSkuCode)
            else:
                failure.append(item.channelSkuCode)
        return json_response({"successList": success, "failureList": failure})
