"""The order route table and `plan_order`: one row per event type, every check on input."""

from __future__ import annotations

import json
import math
import typing
from datetime import UTC, datetime
from typing import Any

import pytest

from models.events import DecodeError, OrderEvent, OrderEventType
from models.increff import (
    AddReturnItems,
    CustomerCancellation,
    OutwardOrder,
    UpdateOrderProperties,
)
from models.order_lanes import Lane, Parked, gave_up, retry_at
from models.orders import ROUTES, increff_verdict, plan_order
from tests.fixtures import INCREFF_SAMPLES

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def event(kind: str, payload: dict[str, Any], event_id: str = "e1") -> OrderEvent:
    return OrderEvent.model_validate(
        {"eventId": event_id, "type": kind, "occurredAt": NOW.isoformat(), "payload": payload}
    )


def create(code: str = "ORD-1", qty: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "orderCode": code,
        "locationCode": "WH1",
        "orderItems": [{"channelSkuCode": "A", "orderItemCode": "i1", "quantity": qty}],
        **extra,
    }


def cancel(code: str | None = "ORD-1", qty: int = 1) -> dict[str, Any]:
    body: dict[str, Any] = {
        "locationCode": "WH1",
        "orderItems": [{"channelSkuCode": "A", "orderItemCode": "i1", "cancelledQuantity": qty}],
    }
    if code is not None:
        body["orderCode"] = code
    return body


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((INCREFF_SAMPLES / f"{name}.json").read_text())["request"]
    return data


def test_every_event_type_has_exactly_one_route() -> None:
    assert set(ROUTES) == set(typing.get_args(OrderEventType))
    assert ROUTES["ORDER_PROPERTIES_UPDATED"].body is UpdateOrderProperties
    assert ROUTES["RETURN_ITEMS_ADDED"].body is AddReturnItems
    assert [t for t, r in ROUTES.items() if r.settles] == ["ORDER_CREATED"]
    assert {t: r.effect for t, r in ROUTES.items() if r.effect} == {
        "ORDER_CREATED": "RESERVE",
        "CUSTOMER_CANCELLED": "CANCEL",
    }


class FakeIncreff:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, Any]] = []

    async def create_order(self, order: OutwardOrder) -> None:
        self.calls.append(("create_order", None, order))

    async def cancel_order(self, order_code: str, body: CustomerCancellation) -> None:
        self.calls.append(("cancel_order", order_code, body))

    async def update_order_properties(self, order_code: str, body: UpdateOrderProperties) -> None:
        self.calls.append(("update_order_properties", order_code, body))

    async def create_return(self, body: Any) -> None:
        self.calls.append(("create_return", None, body))

    async def update_return(self, body: Any) -> None:
        self.calls.append(("update_return", None, body))

    async def add_return_items(self, body: Any) -> None:
        self.calls.append(("add_return_items", None, body))

    async def cancel_return_items(self, body: Any) -> None:
        self.calls.append(("cancel_return_items", None, body))


@pytest.mark.parametrize(
    ("kind", "payload", "key"),
    [
        ("ORDER_CREATED", create(), "ORD-1"),
        ("CUSTOMER_CANCELLED", cancel(), "ORD-1"),
        ("ORDER_PROPERTIES_UPDATED", {"locationCode": "WH1", "onHold": True}, "ORD-1"),
        ("RETURN_CREATED", sample("create-return-order"), "100078"),
        ("RETURN_UPDATED", sample("update-return-order"), "retO1"),
        ("RETURN_ITEMS_ADDED", sample("add-items-to-return-order"), None),
    ],
)
async def test_each_route_calls_its_endpoint(
    kind: str, payload: dict[str, Any], key: str | None
) -> None:
    key = key or payload["returnOrderCode"]
    plan = plan_order(event(kind, payload), key)
    api = FakeIncreff()
    await plan.route.call(api, plan.code, plan.body)
    assert api.calls[0][0] == plan.route.endpoint
    assert isinstance(api.calls[0][2], plan.route.body)
    assert plan.code == key


def test_create_reserves_and_settles_per_sku() -> None:
    plan = plan_order(event("ORDER_CREATED", create(qty=3)), "ORD-1")
    assert [(c.type, c.key, c.quantity) for c in plan.commands] == [("RESERVE", "WH1:A", 3)]
    assert plan.ordered == {"i1": 3}
    accept = plan.settle("ACCEPT", NOW)
    assert [(c.type, c.commandId) for c in accept] == [("ACCEPT", "accept:e1:0:ACCEPT")]
    assert plan.settle("RELEASE", NOW)[0].commandId == "release:e1:0:RELEASE"


def test_cancel_takes_the_order_code_from_the_key_and_cancels() -> None:
    plan = plan_order(event("CUSTOMER_CANCELLED", cancel(code=None, qty=1)), "ORD-1")
    assert plan.code == "ORD-1"
    assert [(c.type, c.cancelledQuantity) for c in plan.commands] == [("CANCEL", 1)]
    assert plan.settle("RELEASE", NOW) == []


@pytest.mark.parametrize(
    ("kind", "payload", "key", "reason"),
    [
        ("ORDER_CREATED", create(), None, "missing key"),
        ("ORDER_CREATED", create(), "OTHER", "does not match orderCode"),
        ("ORDER_CREATED", create(code="X"), "ORD-1", "does not match"),
        ("CUSTOMER_CANCELLED", cancel(code="X"), "ORD-1", "does not match"),
        ("RETURN_UPDATED", sample("update-return-order"), "nope", "returnOrderCode"),
        ("ORDER_CREATED", create(qty=10**30), "ORD-1", "quantity"),
        ("ORDER_CREATED", create(qty=1_000_000_001), "ORD-1", "quantity"),
        ("CUSTOMER_CANCELLED", cancel(qty=10**12), "ORD-1", "cancelledQuantity"),
        ("ORDER_CREATED", create(orderCustomAttributes={"x": 10**30}), "ORD-1", "cannot be sent"),
        ("ORDER_CREATED", create(orderCustomAttributes={"x": math.inf}), "ORD-1", "Infinity"),
        ("ORDER_CREATED", create(orderCustomAttributes={"x": [math.nan]}), "ORD-1", "NaN"),
        ("ORDER_PROPERTIES_UPDATED", {"onHold": True}, "ORD-1", "locationCode"),
    ],
)
def test_bad_events_are_refused_with_a_reason(
    kind: str, payload: dict[str, Any], key: str | None, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        plan_order(event(kind, payload), key)


def test_the_contract_bound_itself_is_accepted() -> None:
    plan = plan_order(event("ORDER_CREATED", create(qty=1_000_000_000)), "ORD-1")
    assert plan.commands[0].encode()  # encodes: no 64-bit overflow anywhere


def test_cancel_beyond_the_ordered_quantity_is_refused() -> None:
    ordered = plan_order(event("ORDER_CREATED", create(qty=2)), "ORD-1").ordered
    assert plan_order(event("CUSTOMER_CANCELLED", cancel(qty=2)), "ORD-1", ordered)
    with pytest.raises(DecodeError, match="exceeds the ordered 2"):
        plan_order(event("CUSTOMER_CANCELLED", cancel(qty=3)), "ORD-1", ordered)
    # an order whose create was never seen: nothing to bound it by
    assert plan_order(event("CUSTOMER_CANCELLED", cancel(qty=3)), "ORD-1", None)


@pytest.mark.parametrize(
    ("status", "code", "retriable", "verdict"),
    [
        (400, "BAD_DATA", False, "final"),
        (500, "BAD_DATA", True, "final"),
        (404, None, False, "final"),
        (401, None, False, "credentials"),
        (403, None, False, "credentials"),
        (500, None, True, "retry"),
        (429, None, True, "retry"),
        (None, None, True, "retry"),
        (None, None, False, "retry"),  # no answer at all is never a verdict on the order
    ],
)
def test_increff_verdicts(
    status: int | None, code: str | None, retriable: bool, verdict: str
) -> None:
    assert increff_verdict(status, code, retriable) == verdict


def parked(at: float, parked_at: float = 0.0) -> Parked:
    return Parked(value="{}", key="K", partition=0, offset=1, parkedAt=parked_at, nextAttemptAt=at)


def test_lane_round_trips_and_knows_what_is_due() -> None:
    lane = Lane(ordered={"i1": 2}, seenAt=5.0, parked=[parked(10.0), parked(0.0)])
    again = Lane.load(lane.dump())
    assert again == lane
    assert not again.due(9.9) and again.due(10.0)  # the head decides, not the earliest
    assert Lane.load(None).head is None
    assert Lane(seenAt=0.0).forgettable(now=100.0, keep_s=50.0)
    assert not lane.forgettable(now=1e9, keep_s=1.0)  # something still waits


def test_retry_times_and_giving_up() -> None:
    assert retry_at(100.0, 30.0, 2.0) == 130.0  # Retry-After wins
    assert retry_at(100.0, None, 2.0) == 102.0
    assert not gave_up(parked(0.0, parked_at=100.0), now=150.0, limit_s=60.0)
    assert gave_up(parked(0.0, parked_at=100.0), now=161.0, limit_s=60.0)
