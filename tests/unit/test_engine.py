"""The inventory engine's own rules: partitions, refusals, assignment, publication order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.engine import Input, InventoryEngine, MemoryStore
from models.events import InventoryCommand, StockEvent
from models.inventory import SafetyStock

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
STOCK = "stock"


def event(
    n: int, qty: int, *, loc: str = "WH1", sku: str = "SKU-1", kind: str = "DELTA"
) -> StockEvent:
    return StockEvent.model_validate(
        {
            "eventId": f"e{n}",
            "type": kind,
            "locationCode": loc,
            "channelSkuCode": sku,
            "quantity": qty,
            "occurredAt": (T0 + timedelta(seconds=n)).isoformat(),
        }
    )


def engine(
    store: MemoryStore | None = None,
    *,
    safety: SafetyStock | None = None,
    debounce_s: float = 0.0,
    max_delay_s: float = 0.0,
    **kw: object,
) -> InventoryEngine:
    """An engine on partitions 0 and 1, restored (safety stock: 1 at location "W:H")."""
    e = InventoryEngine(
        store or MemoryStore(),
        stock_topic=STOCK,
        safety=safety or SafetyStock(per_location={"W:H": 1}),
        debounce_s=debounce_s,
        max_delay_s=max_delay_s,
        reservation_ttl_s=3600,
        partition_for=lambda key: 0,
        **kw,  # type: ignore[arg-type]
    )
    e.assigned({0, 1})
    e.recovered(0.0)
    return e


def test_a_location_code_with_a_colon_is_published_with_its_own_location() -> None:
    e = engine()
    e.apply([Input(STOCK, 0, 0, event(1, 5, loc="W:H", sku="A"))], 0.0)
    (pub,) = e.due(1.0, T0)
    assert (pub.update.locationCode, pub.update.channelSkuCode) == ("W:H", "A")
    assert pub.update.quantity == 4  # the safety stock of location "W:H", not of "W"


def test_one_safety_stock_for_every_key_is_held_back_from_each() -> None:
    e = engine(safety=SafetyStock(default=3))
    e.apply([Input(STOCK, 0, 0, event(1, 5)), Input(STOCK, 0, 1, event(2, 2, loc="W:H"))], 0.0)
    assert {p.key: p.update.quantity for p in e.due(1.0, T0)} == {"WH1:SKU-1": 2, "W:H:SKU-1": 0}


def test_a_drop_to_0_inside_a_batch_publishes_at_once_though_the_batch_ends_above() -> None:
    """The batch's changes are marked once, after it: a key that was out of stock after
    one of them is still due at once, as when each event was marked on its own."""
    e = engine(safety=SafetyStock(), debounce_s=10.0, max_delay_s=30.0)
    e.apply([Input(STOCK, 0, 0, event(1, 5)), Input(STOCK, 0, 1, event(2, 4, sku="B"))], 0.0)
    first = e.due(0.0, T0, everything=True)
    assert {(p.key, p.update.quantity) for p in first} == {("WH1:SKU-1", 5), ("WH1:B", 4)}
    e.published(first)
    batch = [
        Input(STOCK, 0, 2, event(3, -5)),  # SKU-1: 0
        Input(STOCK, 0, 3, event(4, 2)),  # SKU-1: back to 2 within the batch
        Input(STOCK, 0, 4, event(5, -1, sku="B")),  # B: 4 -> 3, never 0
    ]
    e.apply(batch, 1.0)
    assert [(p.key, p.update.quantity) for p in e.due(1.0, T0)] == [("WH1:SKU-1", 2)]


def test_an_event_on_another_partition_than_kafkas_default_is_refused() -> None:
    e = engine()
    out = e.apply([Input(STOCK, 1, 0, event(1, 5))], 0.0)
    assert [r.error.reason for r in out.rejected] == ["wrong_partition"]
    assert "murmur2" in str(out.rejected[0].error)
    assert e.store.get("WH1:SKU-1") is None and not out.writes


def test_on_hand_beyond_64_bits_is_refused_and_the_state_kept() -> None:
    e = engine()
    batch = [Input(STOCK, 0, n, event(n, 1_000_000_000)) for n in range(3)]
    e.apply(batch, 0.0)
    state = e.store.get("WH1:SKU-1")
    assert state is not None
    state.on_hand = 2**62 - 1
    out = e.apply([Input(STOCK, 0, 9, event(9, 1_000_000_000))], 0.0)
    assert [r.error.reason for r in out.rejected] == ["out_of_range"]
    assert state.on_hand == 2**62 - 1
    assert not out.writes


def test_nothing_is_published_while_partitions_are_restored() -> None:
    e = engine()
    e.apply([Input(STOCK, 0, 0, event(1, 5))], 0.0)
    e.suspend()
    e.assigned({0})
    assert e.due(1.0, T0) == []  # restoring
    marked = e.recovered(1.0)
    assert marked == 1
    (pub,) = e.due(2.0, T0)
    assert pub.update.quantity == 5


def test_a_publication_counts_only_once_recorded() -> None:
    e = engine()
    e.apply([Input(STOCK, 0, 0, event(1, 5))], 0.0)
    (pub,) = e.due(1.0, T0)
    state = e.store.get("WH1:SKU-1")
    assert state is not None and state.last_published_qty is None
    e.unpublished([pub], 1.0)  # the send failed: the key is due again
    (again,) = e.due(2.0, T0)
    writes = e.published([again])
    assert [w.key for w in writes] == ["WH1:SKU-1"]
    assert state.last_published_qty == 5 and state.version == again.update.version


def test_revoked_partitions_forget_their_keys_and_pending_changes() -> None:
    store = MemoryStore()
    e = engine(store)
    e.apply([Input(STOCK, 0, 0, event(1, 5))], 0.0)
    assert e.pending == 1
    e.assigned({1})  # partition 0 went to another worker
    assert store.get("WH1:SKU-1") is None
    assert e.pending == 0 and e.due(5.0, T0) == []


def test_a_quantity_beyond_the_contract_is_a_dead_letter_not_a_crash() -> None:
    import pytest

    from models.errors import DecodeError
    from models.events import decode_stock_event

    raw = (
        b'{"eventId":"x","type":"DELTA","locationCode":"WH1","channelSkuCode":"SKU-1",'
        b'"quantity":1000000000000000000000000000000,"occurredAt":"2024-03-01T12:00:00Z"}'
    )
    with pytest.raises(DecodeError) as caught:
        decode_stock_event(b"WH1:SKU-1", raw)
    assert caught.value.reason == "out_of_range"
    with pytest.raises(DecodeError) as bad_json:
        decode_stock_event(b"WH1:SKU-1", b"{not json")
    assert bad_json.value.reason == "invalid_json"


def test_an_absorbed_reservation_expires_silently_but_its_closing_is_written() -> None:
    e = engine()
    placed = T0 - timedelta(hours=2)
    cmds = [
        InventoryCommand(
            commandId=f"c:0:{kind}",
            type=kind,
            orderCode="O1",
            locationCode="WH1",
            channelSkuCode="SKU-1",
            occurredAt=placed,
            quantity=2 if kind == "RESERVE" else None,
        )
        for kind in ("RESERVE", "ACCEPT")
    ]
    snapshot = event(1, 9, kind="SNAPSHOT").model_copy(update={"basis": "AVAILABLE"})
    batch = [Input("commands", 0, n, c) for n, c in enumerate(cmds)]
    e.apply([*batch, Input(STOCK, 0, 0, snapshot)], 0.0)
    out = e.expire(T0.timestamp(), 1.0)
    assert out.orders == []  # in Increff's figure: it held nothing, nothing to alert on
    assert [w.key for w in out.writes] == ["WH1:SKU-1"]
    assert out.writes[0].state.reservations["O1"].closed_at == T0.timestamp()


def test_a_publication_says_when_its_key_was_first_marked() -> None:
    e = engine(safety=SafetyStock(), debounce_s=0.5, max_delay_s=5.0)
    e.apply([Input(STOCK, 0, 0, event(1, 5))], 10.0)
    e.apply([Input(STOCK, 0, 1, event(2, 1))], 10.4)  # still quiet < 0.5 s: one window
    assert e.due(10.6, T0) == []
    (pub,) = e.due(10.9, T0)
    assert pub.marked == 10.0 and pub.update.quantity == 6
