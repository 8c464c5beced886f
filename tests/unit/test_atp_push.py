"""The consolidated ATP push (`PUT /increff/inventory/consolidated`): per-location
`AVAILABLE` snapshots, exactly as the location-wise push makes them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from models.atp import NO_BREAKDOWN, plan_consolidated_inventory, plan_inventory
from streams import callbacks as cb
from streams.callbacks import CallbackHandler
from tests.unit.test_callbacks import HEADERS, NOW, FakePorts, body_of, call, dumps, sample

ID = re.compile(r"^increff-atp:[0-9a-f]{16}:\d+:[0-9a-f]{32}$")


@pytest.fixture
def ports() -> FakePorts:
    return FakePorts()


@pytest.fixture
def handler(ports: FakePorts) -> CallbackHandler:
    return CallbackHandler(
        ports,
        required_headers=[{k: SecretStr(v) for k, v in HEADERS.items()}],
        max_bytes=64 * 1024,
        clock=lambda: NOW,
    )


def item(sku: str, location: str | None, quantity: Any, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"channelSkuCode": sku, "quantity": quantity, **extra}
    if location is not None:
        out["locationCode"] = location
    return out


async def test_sample_becomes_one_available_snapshot_per_item(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    response = await call(
        handler, cb.CONSOLIDATED_INVENTORY, sample("consolidated-atp-inventory.json")
    )
    assert response.status == 200
    answer = body_of(response)
    assert [i["channelSkuCode"] for i in answer["successList"]] == ["302", "301"]
    assert answer["successList"][0]["consolidatedQuantity"] == 36  # echoed, not applied
    assert answer["failureList"] == []
    assert [(e.key, e.quantity, e.type, e.basis, e.reason) for e in ports.snapshots] == [
        ("loc1:302", 30, "SNAPSHOT", "AVAILABLE", "INCREFF_ATP"),
        ("loc1:301", 30, "SNAPSHOT", "AVAILABLE", "INCREFF_ATP"),
    ]
    assert all(ID.match(e.eventId) and e.occurredAt == NOW for e in ports.snapshots)
    assert ports.updates == [] and ports.commands == []


async def test_a_sku_in_several_locations_gives_a_snapshot_at_each(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = {
        "consolidationType": "ALL",
        "inventories": [
            item("S1", "WH1", 4, consolidatedQuantity="9", listingId=7, consolidationType="ALL"),
            item("S1", "WH2", 5, consolidatedQuantity=9, listingId=7, consolidationType="ALL"),
            item("S1", "STORE-3", 0, consolidatedQuantity=9, listingId="L-7"),
        ],
    }
    response = await call(handler, cb.CONSOLIDATED_INVENTORY, body)
    assert response.status == 200
    assert {e.key: e.quantity for e in ports.snapshots} == {
        "WH1:S1": 4,
        "WH2:S1": 5,
        "STORE-3:S1": 0,
    }


async def test_consolidated_quantity_is_informational(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    """A total that disagrees with the items (Increff's covers locations a push need not
    list) changes nothing: the location's own quantity is applied."""
    body = {"inventories": [item("S1", "WH1", 30, consolidatedQuantity=26)]}
    assert (await call(handler, cb.CONSOLIDATED_INVENTORY, body)).status == 200
    assert [e.quantity for e in ports.snapshots] == [30]


async def test_items_without_a_location_or_a_quantity_fail_alone(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = {
        "inventories": [
            item("ok", "WH1", 3),
            item("no-location", None, 3, consolidatedQuantity=3),
            item("empty-location", "", 3),
            {"channelSkuCode": "only-total", "locationCode": "WH1", "consolidatedQuantity": 3},
            item("neg", "WH1", -1),
            item("over", "WH1", 1_000_000_001),
            "not-an-object",
        ]
    }
    response = await call(handler, cb.CONSOLIDATED_INVENTORY, body)
    assert response.status == 200
    answer = body_of(response)
    assert [i["channelSkuCode"] for i in answer["successList"]] == ["ok"]
    assert [(i["channelSkuCode"], i.get("locationCode")) for i in answer["failureList"]] == [
        ("no-location", None),
        ("empty-location", ""),
        ("only-total", "WH1"),
        ("neg", "WH1"),
        ("over", "WH1"),
        ("", None),
    ]
    assert [e.key for e in ports.snapshots] == ["WH1:ok"]


async def test_the_body_location_stands_for_items_without_their_own(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = {"locationCode": "WH9", "inventories": [item("a", None, 1), item("b", "WH1", 2)]}
    assert (await call(handler, cb.CONSOLIDATED_INVENTORY, body)).status == 200
    assert [e.key for e in ports.snapshots] == ["WH9:a", "WH1:b"]


@pytest.mark.parametrize(
    "items",
    [
        [item("S1", None, 5, consolidatedQuantity=5)],
        [{"channelSkuCode": "S1", "locationCode": "WH1", "consolidatedQuantity": 5}],
        ["x", 3],
    ],
)
async def test_no_per_location_breakdown_at_all_is_400(
    handler: CallbackHandler, ports: FakePorts, items: list[Any]
) -> None:
    response = await call(handler, cb.CONSOLIDATED_INVENTORY, {"inventories": items})
    assert response.status == 400
    assert body_of(response) == {"hasError": True, "errorMessage": NO_BREAKDOWN}
    assert ports.snapshots == []


@pytest.mark.parametrize(
    "body", [{}, {"inventories": {}}, [], {"inventories": [], "locationCode": 5}]
)
async def test_bad_envelope_is_400(handler: CallbackHandler, body: Any) -> None:
    response = await call(handler, cb.CONSOLIDATED_INVENTORY, body)
    assert response.status == 400 and body_of(response)["hasError"] is True


async def test_wrong_auth_is_401_and_publishes_nothing(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    body = sample("consolidated-atp-inventory.json")
    response = await call(handler, cb.CONSOLIDATED_INVENTORY, body, headers={"authUsername": "x"})
    assert response.status == 401
    assert ports.snapshots == []


async def test_a_retry_is_answered_from_memory_a_later_push_applies(ports: FakePorts) -> None:
    now = [NOW]
    handler = CallbackHandler(
        ports, required_headers=[], max_bytes=10_000, atp_window_s=300, clock=lambda: now[0]
    )
    body = sample("consolidated-atp-inventory.json")
    first = await call(handler, cb.CONSOLIDATED_INVENTORY, body, headers={})
    now[0] = NOW + timedelta(seconds=299)
    assert await call(handler, cb.CONSOLIDATED_INVENTORY, body, headers={}) == first
    assert len(ports.snapshots) == 2
    now[0] = NOW + timedelta(seconds=300)  # Increff's next periodic push: applies again
    await call(handler, cb.CONSOLIDATED_INVENTORY, body, headers={})
    assert len(ports.snapshots) == 4
    assert not {e.eventId for e in ports.snapshots[:2]} & {e.eventId for e in ports.snapshots[2:]}


async def test_the_two_pushes_do_not_share_remembered_answers(
    handler: CallbackHandler, ports: FakePorts
) -> None:
    """The same bytes are valid for both routes; each answers in its own shape."""
    body = {"locationCode": "WH1", "inventories": [{"channelSkuCode": "S1", "quantity": 2}]}
    wise = await call(handler, cb.INVENTORY, body)
    consolidated = await call(handler, cb.CONSOLIDATED_INVENTORY, body)
    assert body_of(wise) == {"successList": ["S1"], "failureList": []}
    assert body_of(consolidated)["successList"] == [{"channelSkuCode": "S1", "quantity": 2}]
    # Same figure, same bytes, same window: the same event, dropped by the key's ring.
    assert len({e.eventId for e in ports.snapshots}) == 1


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["WH1", "WH2", "S:3"]),
            st.sampled_from(["A", "B"]),
            st.integers(0, 10**9),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_each_item_is_the_snapshot_a_location_wise_push_of_it_makes(
    rows: list[tuple[str, str, int]],
) -> None:
    """The consolidated push is the location-wise push per location (ids aside, which
    carry the body's digest)."""
    body = dumps({"inventories": [item(s, loc, q) for loc, s, q in rows]})
    events, answer = plan_consolidated_inventory(body, NOW)
    assert len(answer.successList) == len(rows) and not answer.failureList
    for (loc, sku, qty), event in zip(rows, events, strict=True):
        wise = dumps(
            {"locationCode": loc, "inventories": [{"channelSkuCode": sku, "quantity": qty}]}
        )
        [twin] = plan_inventory(wise, NOW)[0]
        assert event.model_dump(exclude={"eventId"}) == twin.model_dump(exclude={"eventId"})
        assert event.eventId.rsplit(":", 1)[1] == twin.eventId.rsplit(":", 1)[1]
