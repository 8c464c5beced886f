"""`MockIncreff`: Increff's order, inventory-search and returns APIs, for tests and the demo.

Behaves as Increff documents it: auth headers checked (401), bodies validated (400
`{"code": "BAD_DATA", ...}`), create / cancel / update idempotent (a repeat answers 200
and changes nothing). `applied` lists each change actually made, in order, so a test
can tell "retried" from "applied twice".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from invsync.mocks.server import MockHttpServer, json_response
from models.increff import (
    AddReturnItems,
    CancelReturnItems,
    CreateReturnOrder,
    CustomerCancellation,
    OutwardOrder,
    OutwardOrderList,
    SearchInventoryRequest,
    UpdateOrderProperties,
    UpdateReturnOrder,
)

M = TypeVar("M", bound=BaseModel)

DEFAULT_CANCEL_RETURN_ITEMS_PATH = "/return/cancel-items"


@dataclass(frozen=True)
class Applied:
    """A change the mock made: `operation` on `code` (orderCode or returnOrderCode)."""

    operation: str
    code: str


class IncreffReject(Exception):
    """Raised inside a handler to answer with Increff's error body."""

    def __init__(self, status: int, code: str, message: str, description: str | None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.description = status, code, message, description


class MockIncreff(MockHttpServer):
    """Fake Increff. `success_key="sucessList"` answers search like the published sample."""

    name = "MockIncreff"

    def __init__(
        self,
        *,
        username: str = "invsync-user",
        password: str = "invsync-pass",  # noqa: S107 - a test double's default
        domain: str | None = "invsync-domain",
        cancel_return_items_path: str = DEFAULT_CANCEL_RETURN_ITEMS_PATH,
        success_key: str = "successList",
    ) -> None:
        headers = {"authUsername": username, "authPassword": password}
        if domain is not None:
            headers["authDomainName"] = domain
        super().__init__(auth_headers=headers)
        self.cancel_return_items_path = cancel_return_items_path
        self.success_key = success_key
        self.orders: dict[str, dict[str, Any]] = {}
        self.cancellations: dict[str, dict[str, int]] = {}
        """orderCode -> orderItemCode -> absolute cancelled quantity."""
        self.properties: dict[str, dict[str, Any]] = {}
        self.returns: dict[str, dict[str, Any]] = {}
        self.return_updates: dict[str, dict[str, Any]] = {}
        self.return_items_added: dict[str, dict[str, dict[str, Any]]] = {}
        self.return_items_cancelled: dict[str, set[str]] = {}
        self.inventory: dict[str, dict[str, tuple[int, str]]] = {}
        """channelSkuCode -> locationCode -> (quantity, locationType), served by search."""
        self.applied: list[Applied] = []
        self._rejects: dict[str, IncreffReject] = {}

    # --- scripting ---------------------------------------------------------------------

    def reject(
        self,
        order_code: str,
        *,
        status: int = 400,
        code: str = "BAD_DATA",
        message: str = "Input validation failed",
        description: str | None = None,
    ) -> None:
        """Answer every call about `order_code` (or a returnOrderCode) with this error."""
        self._rejects[order_code] = IncreffReject(status, code, message, description)

    def unreject(self, order_code: str) -> None:
        self._rejects.pop(order_code, None)

    def set_inventory(
        self, sku: str, location: str, quantity: int, location_type: str = "Warehouse"
    ) -> None:
        self.inventory.setdefault(sku, {})[location] = (quantity, location_type)

    def count(self, operation: str, code: str) -> int:
        """How many times `operation` changed state for `code`."""
        return self.applied.count(Applied(operation, code))

    # --- routes ------------------------------------------------------------------------

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.post("/orders/outward", self._wrap(self._create_order)),
            web.post("/orders/outward/list", self._wrap(self._create_orders_bulk)),
            web.put("/orders/{orderCode}/cancel", self._wrap(self._cancel_order)),
            web.put("/orders/{orderCode}", self._wrap(self._update_order)),
            web.post("/inventories/search-sku", self._wrap(self._search)),
            web.post("/return/return-orders", self._wrap(self._create_return)),
            web.post("/return/update-return-order", self._wrap(self._update_return)),
            web.put("/return/update-return-order/item", self._wrap(self._add_return_items)),
            web.put(self.cancel_return_items_path, self._wrap(self._cancel_return_items)),
        ]

    def _default_error(self, status: int) -> Any:
        messages = {
            400: "Input validation failed",
            401: "Unauthorized",
            404: "Not found",
            503: "Service unavailable",
        }
        code = "BAD_DATA" if status == 400 else f"HTTP_{status}"
        return {"code": code, "message": messages.get(status, "Error"), "description": None}

    def _wrap(self, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def run(request: web.Request) -> web.Response:
            try:
                result = handler(request)
            except IncreffReject as exc:
                body = {"code": exc.code, "message": exc.message, "description": exc.description}
                return json_response(body, status=exc.status)
            if result is None:
                return web.Response(status=200)  # Increff answers "Empty Body, 200"
            return json_response(result)

        return run

    def _parse(self, request: web.Request, model: type[M]) -> M:
        try:
            return model.model_validate(self.json_body(request))
        except ValidationError as exc:
            detail = ", ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise IncreffReject(400, "BAD_DATA", "Input validation failed", f"[{detail}]") from None

    def _check(self, code: str) -> None:
        if code in self._rejects:
            raise self._rejects[code]

    def _apply(self, operation: str, code: str) -> None:
        self.applied.append(Applied(operation, code))

    # --- handlers (synchronous: state changes are atomic within the event loop) --------

    def _create_order(self, request: web.Request) -> None:
        self._create(self._parse(request, OutwardOrder))

    def _create_orders_bulk(self, request: web.Request) -> None:
        orders = self._parse(request, OutwardOrderList).outwardOrderClientFormList
        for order in orders:
            self._check(order.orderCode)
        for order in orders:
            self._create(order)

    def _create(self, order: OutwardOrder) -> None:
        self._check(order.orderCode)
        if order.orderCode not in self.orders:
            self.orders[order.orderCode] = order.to_wire()
            self._apply("create_order", order.orderCode)

    def _cancel_order(self, request: web.Request) -> None:
        order_code = request.match_info["orderCode"]
        self._check(order_code)
        body = self._parse(request, CustomerCancellation)
        current = self.cancellations.setdefault(order_code, {})
        wanted = {i.orderItemCode: i.cancelledQuantity for i in body.orderItems}
        if any(current.get(k) != v for k, v in wanted.items()):
            current.update(wanted)
            self._apply("cancel_order", order_code)

    def _update_order(self, request: web.Request) -> None:
        order_code = request.match_info["orderCode"]
        self._check(order_code)
        body = self._parse(request, UpdateOrderProperties).to_wire()
        body.pop("orderCode", None)
        current = self.properties.setdefault(order_code, {})
        if any(current.get(k) != v for k, v in body.items()):
            current.update(body)
            self._apply("update_order_properties", order_code)

    def _search(self, request: web.Request) -> dict[str, Any]:
        skus = self._parse(request, SearchInventoryRequest).channelSkuCodes
        found, missing = [], []
        for sku in skus:
            if sku not in self.inventory:
                missing.append(sku)
                continue
            locations = self.inventory[sku]
            found.append(
                {
                    "channelSkuCode": sku,
                    "channelSerialNo": sku,
                    "totalQuantity": sum(q for q, _ in locations.values()),
                    "inventories": [
                        {"quantity": q, "locationCode": loc, "locationType": t}
                        for loc, (q, t) in locations.items()
                    ],
                }
            )
        return {self.success_key: found, "failureList": missing}

    def _create_return(self, request: web.Request) -> None:
        body = self._parse(request, CreateReturnOrder)
        self._check(body.returnOrderCode)
        if body.returnOrderCode not in self.returns:
            self.returns[body.returnOrderCode] = body.to_wire()
            self._apply("create_return", body.returnOrderCode)

    def _update_return(self, request: web.Request) -> None:
        body = self._parse(request, UpdateReturnOrder)
        self._check(body.returnOrderCode)
        wire = body.to_wire()
        if self.return_updates.get(body.returnOrderCode) != wire:
            self.return_updates[body.returnOrderCode] = wire
            self._apply("update_return", body.returnOrderCode)

    def _add_return_items(self, request: web.Request) -> None:
        body = self._parse(request, AddReturnItems)
        self._check(body.returnOrderCode)
        items = self.return_items_added.setdefault(body.returnOrderCode, {})
        new = {i.channelReturnItemCode: i.to_wire() for i in body.returnLineItems}
        if any(k not in items for k in new):
            items.update(new)
            self._apply("add_return_items", body.returnOrderCode)

    def _cancel_return_items(self, request: web.Request) -> None:
        body = self._parse(request, CancelReturnItems)
        self._check(body.returnOrderCode)
        cancelled = self.return_items_cancelled.setdefault(body.returnOrderCode, set())
        new = {i.itemCode for i in body.orderItems} - cancelled
        if new:
            cancelled |= new
            self._apply("cancel_return_items", body.returnOrderCode)
