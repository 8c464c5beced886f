"""The pre-order lookup's pure part: the SKU index, the engine's lookup rule, the merge."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.callbacks import BadRequest
from models.engine import Input, InventoryEngine, MemoryStore
from models.events import InventoryCommand, StockEvent, command_id, parse_inventory_key
from models.increff import SearchInventoryResponse
from models.inventory import KeyState, SafetyStock, atp
from models.lookup import (
    MAX_LOOKUP_SKUS,
    LookupIncomplete,
    PartialLookup,
    PeerLookupAnswer,
    SkuIndex,
    merge,
    parse_lookup,
    parse_peer_lookup,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
STOCK, COMMANDS = "stock", "commands"


# --- the index ----------------------------------------------------------------------

codes = st.text(alphabet="ab:", min_size=1, max_size=4)
keys = st.builds(lambda loc, sku: f"{loc}:{sku}", codes, codes)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), keys), max_size=40), sku=codes)
def test_the_index_finds_every_key_of_a_sku_after_any_adds_and_discards(
    ops: list[tuple[bool, str]], sku: str
) -> None:
    index = SkuIndex()
    held: set[str] = set()
    for add, key in ops:
        if add:
            index.add(key)
            held.add(key)
        else:
            index.discard(key)
            held.discard(key)
    found = set(index.candidates(sku))
    assert found == {k for k in held if k.endswith(":" + sku)}
    # Every split of every key is indexed: a key's own (location, SKU) is always found.
    for key in held:
        for at in [i for i, c in enumerate(key) if c == ":"]:
            assert key in set(index.candidates(key[at + 1 :]))
    index.rebuild(held)
    assert set(index.candidates(sku)) == found


def test_a_key_without_a_colon_is_not_indexed_and_discards_are_harmless() -> None:
    index = SkuIndex()
    index.add("nocolon")
    index.discard("never:added")
    assert len(index) == 0
    index.add("W:H:S")
    assert set(index.candidates("H:S")) == set(index.candidates("S")) == {"W:H:S"}
    index.discard("W:H:S")
    assert len(index) == 0


# --- the engine's rule ----------------------------------------------------------------


def stock(n: int, loc: str, sku: str, qty: int, kind: str = "DELTA", **kw: object) -> StockEvent:
    return StockEvent.model_validate(
        {
            "eventId": f"e{n}",
            "type": kind,
            "locationCode": loc,
            "channelSkuCode": sku,
            "quantity": qty,
            "occurredAt": (T0 + timedelta(seconds=n)).isoformat(),
            **kw,
        }
    )


def reserve(n: int, loc: str, sku: str, order: str, qty: int) -> InventoryCommand:
    return InventoryCommand(
        commandId=command_id(f"o{n}", 0, "RESERVE"),
        type="RESERVE",
        orderCode=order,
        locationCode=loc,
        channelSkuCode=sku,
        occurredAt=T0 + timedelta(seconds=n),
        quantity=qty,
    )


def accept(n: int, loc: str, sku: str, order: str) -> InventoryCommand:
    return InventoryCommand(
        commandId=command_id(f"a{n}", 0, "ACCEPT"),
        type="ACCEPT",
        orderCode=order,
        locationCode=loc,
        channelSkuCode=sku,
        occurredAt=T0 + timedelta(seconds=n),
    )


def engine(debounce_s: float = 60.0) -> InventoryEngine:
    e = InventoryEngine(
        MemoryStore(),
        stock_topic=STOCK,
        safety=SafetyStock(default=1, per_location={"W:H": 0}, per_key={"WH2:A": 3}),
        debounce_s=debounce_s,
        max_delay_s=debounce_s,
        reservation_ttl_s=3600,
        partition_for=lambda key: 0 if key.startswith("WH1") else 1,
    )
    e.assigned({0, 1})
    e.recovered(0.0)
    return e


def feed(e: InventoryEngine, *items: StockEvent | InventoryCommand) -> None:
    batch = []
    for offset, item in enumerate(items):
        topic = STOCK if isinstance(item, StockEvent) else COMMANDS
        batch.append(Input(topic, e.partition_for(item.key), offset, item))  # type: ignore[misc]
    assert not e.apply(batch, 0.0).rejected


def test_lookup_answers_the_atp_to_publish_with_reservations_and_safety_stock() -> None:
    e = engine()
    feed(
        e,
        stock(1, "WH1", "A", 10, "SNAPSHOT"),
        stock(2, "WH2", "A", 7, "SNAPSHOT"),
        stock(3, "WH1", "B", 4, "SNAPSHOT"),
        reserve(4, "WH1", "A", "O1", 2),
    )
    # Nothing is published yet (a 60 s debounce): the lookup sees the live state.
    assert e.due(1.0, T0) == []
    found = e.lookup(["A", "B", "C"])
    assert sorted(found["A"]) == [("WH1", 10 - 2 - 1), ("WH2", 7 - 3)]
    assert found["B"] == [("WH1", 3)]
    assert "C" not in found
    # The same function the publication uses.
    (pub,) = [p for p in e.due(0.0, T0, everything=True) if p.key == "WH1:A"]
    assert pub.update.quantity == dict(found["A"])["WH1"]


def test_lookup_splits_keys_by_the_location_the_state_names() -> None:
    e = engine()
    e.partition_for = lambda key: 0
    # Keys "W:H:S" and "X:H:S": each may hold SKU "S" or "H:S".
    feed(e, stock(1, "W:H", "S", 5, "SNAPSHOT"), stock(2, "X", "H:S", 9, "SNAPSHOT"))
    assert e.lookup(["S"]) == {"S": [("W:H", 5)]}  # safety 0 at "W:H"
    assert e.lookup(["H:S"]) == {"H:S": [("X", 8)]}


def test_lookup_answers_only_from_restored_partitions() -> None:
    e = engine()
    feed(e, stock(1, "WH1", "A", 10, "SNAPSHOT"), stock(2, "WH2", "A", 7, "SNAPSHOT"))
    e.suspend()  # a rebalance began
    assert e.lookup(["A"]) == {}
    e.assigned({1})  # partition 0 went to another worker: its keys are forgotten
    e.recovered(0.0)
    assert e.lookup(["A"]) == {"A": [("WH2", 4)]}
    assert list(e.store.find("A", {0, 1})) == [("WH2:A", e.store.get("WH2:A"), 1)]


# --- parsing and merging --------------------------------------------------------------


def test_parse_keeps_each_sku_once_in_order_and_refuses_bad_bodies() -> None:
    assert parse_lookup(b'{"channelSkuCodes": ["B", "A", "B"], "x": 1}') == ["B", "A"]
    for body in (
        b"{",
        b"{}",
        b'{"channelSkuCodes": []}',
        b'{"channelSkuCodes": [""]}',
        b'{"channelSkuCodes": [1]}',
        b'{"channelSkuCodes": "A"}',
        orjson.dumps({"channelSkuCodes": ["x" * 256]}),
    ):
        with pytest.raises(BadRequest):
            parse_lookup(body)
    at_most = orjson.dumps({"channelSkuCodes": [f"S{i}" for i in range(MAX_LOOKUP_SKUS)]})
    assert len(parse_lookup(at_most)) == MAX_LOOKUP_SKUS
    too_many = orjson.dumps({"channelSkuCodes": [f"S{i}" for i in range(MAX_LOOKUP_SKUS + 1)]})
    with pytest.raises(BadRequest, match="1000"):
        parse_lookup(too_many)
    with pytest.raises(BadRequest):
        parse_peer_lookup(b'{"channelSkuCodes": ["A"]}')  # no generation


def part(generation: int, partitions: set[int], found: dict[str, list[tuple[str, int]]]) -> Any:
    return PartialLookup(generation, frozenset(partitions), found, f"w{min(partitions)}")


def test_merge_answers_increffs_shape_over_every_partition() -> None:
    parts = [
        part(3, {0, 2}, {"A": [("WH2", 4)], "B": [("WH1", 0)]}),
        part(3, {1, 3}, {"A": [("WH1", 7)]}),
    ]
    answer = merge(["A", "B", "C"], parts, 4)
    assert answer == {
        "successList": [
            {
                "channelSkuCode": "A",
                "totalQuantity": 11,
                "inventories": [
                    {"quantity": 7, "locationCode": "WH1"},
                    {"quantity": 4, "locationCode": "WH2"},
                ],
            },
            {
                "channelSkuCode": "B",
                "totalQuantity": 0,
                "inventories": [{"quantity": 0, "locationCode": "WH1"}],
            },
        ],
        "failureList": ["C"],
    }
    parsed = SearchInventoryResponse.model_validate(answer)
    assert parsed.to_wire() == answer


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([part(3, {0, 1, 2}, {})], "partition(s) 3"),
        ([part(3, {0, 1}, {}), part(3, {1, 2, 3}, {})], "partition 1 answered by both"),
        ([part(3, {0, 1}, {}), part(4, {2, 3}, {})], "generations [3, 4]"),
    ],
)
def test_merge_refuses_a_partial_answer(parts: list[PartialLookup], message: str) -> None:
    with pytest.raises(LookupIncomplete, match=re.escape(message)):
        merge(["A"], parts, 4)


def test_a_part_survives_the_wire() -> None:
    p = part(5, {1, 3}, {"A": [("W:H", 2)]})
    wire = orjson.loads(orjson.dumps(p.to_wire()))
    back = PartialLookup.from_wire(PeerLookupAnswer.model_validate(wire), "w1")
    assert (back.generation, back.partitions, back.found) == (5, p.partitions, p.found)


# --- the lookup agrees with a scan, whatever the history ----------------------------

LOCS = ["WH1", "WH2", "W:H", "X"]
SKUS = ["A", "H:A", "B"]
op = st.one_of(
    st.tuples(st.just("stock"), st.sampled_from(LOCS), st.sampled_from(SKUS), st.integers(-3, 9)),
    st.tuples(st.just("count"), st.sampled_from(LOCS), st.sampled_from(SKUS), st.integers(0, 9)),
    st.tuples(st.just("accept"), st.sampled_from(LOCS), st.sampled_from(SKUS), st.integers(0, 9)),
    st.tuples(st.just("reserve"), st.sampled_from(LOCS), st.sampled_from(SKUS), st.integers(1, 4)),
    st.tuples(st.just("move"), st.sampled_from([0, 1]), st.booleans(), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(op, max_size=30))
def test_lookup_equals_a_scan_of_every_restored_key(
    ops: list[tuple[str, object, object, int]],
) -> None:
    e = engine()
    e.partition_for = lambda key: len(key) % 2
    for n, (kind, a, b, qty) in enumerate(ops):
        if kind == "stock":
            feed(e, stock(n, str(a), str(b), qty))
        elif kind == "count":  # Increff's ATP push: absorbs the orders it accepted
            feed(e, stock(n, str(a), str(b), qty, "SNAPSHOT", basis="AVAILABLE"))
        elif kind == "accept":  # Increff accepted the order reserved `qty` ops ago
            order = f"O{max(0, n - 1 - qty)}"
            feed(e, accept(n, str(a), str(b), order))
        elif kind == "reserve":
            feed(e, reserve(n, str(a), str(b), f"O{n}", qty))
        else:  # a partition leaves (its keys are dropped) or comes back empty
            partitions = {0, 1} - {int(str(a))} if b else {0, 1}
            e.suspend()
            e.assigned(partitions)
            e.recovered(0.0)
    expected: dict[str, list[tuple[str, int]]] = {}
    for key, state, _ in e.items_active():
        loc, sku = parse_inventory_key(key, state.location)
        safety = e.safety.for_key(loc, sku)
        expected.setdefault(sku, []).append((loc, atp(state, safety)))
        # What the worker's table decodes for a lookup (no dedupe ring) reads the same.
        light = KeyState.from_bytes(state.to_bytes(), dedupe=False)
        assert (light.location, atp(light, safety)) == (loc, atp(state, safety))
    found = e.lookup(SKUS)
    assert {s: sorted(r) for s, r in found.items()} == {s: sorted(r) for s, r in expected.items()}
