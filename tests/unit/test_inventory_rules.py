"""Inventory rules: dedupe, stock events, reservations and their releases, ATP, versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from models.events import InventoryCommand, StockEvent, command_id
from models.inventory import (
    MAX_COMMAND_IDS,
    RING_SIZE,
    KeyState,
    Outcome,
    Reservation,
    SafetyStock,
    apply_command,
    apply_stock_event,
    atp,
    build_update,
    expire_reservations,
    next_version,
    record_publication,
    reserved,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
S = "warehouse.stock-events/0"
C = "invsync.commands/0"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(
    event_id: str,
    quantity: int,
    kind: str = "DELTA",
    *,
    minute: float = 0,
    order: str | None = None,
) -> StockEvent:
    return StockEvent.model_validate(
        {
            "eventId": event_id,
            "type": kind,
            "locationCode": "WH1",
            "channelSkuCode": "SKU-1",
            "quantity": quantity,
            "occurredAt": at(minute),
            "orderCode": order,
        }
    )


def cmd(kind: str, order: str, *, n: int = 0, minute: float = 0, **extra: Any) -> InventoryCommand:
    return InventoryCommand.model_validate(
        {
            "commandId": command_id(f"{order}-ev{n}", 0, kind),  # type: ignore[arg-type]
            "type": kind,
            "orderCode": order,
            "locationCode": "WH1",
            "channelSkuCode": "SKU-1",
            "occurredAt": at(minute),
            **extra,
        }
    )


class Feed:
    """Applies events and commands at increasing offsets, like one partition would."""

    def __init__(self, state: KeyState | None = None) -> None:
        self.state = state or KeyState()
        self.offset = 0

    def stock(self, event: StockEvent) -> Outcome:
        self.offset += 1
        return apply_stock_event(self.state, event, S, self.offset)

    def command(self, command: InventoryCommand) -> Outcome:
        self.offset += 1
        return apply_command(self.state, command, C, self.offset)


# --- stock events and dedupe --------------------------------------------------------


def test_delta_adds_and_snapshot_sets() -> None:
    f = Feed()
    assert f.stock(ev("a", 10)) is Outcome.APPLIED
    assert f.stock(ev("b", -3)) is Outcome.APPLIED
    assert f.state.on_hand == 7
    assert f.stock(ev("c", 4, "SNAPSHOT", minute=1)) is Outcome.APPLIED
    assert f.state.on_hand == 4
    assert f.stock(ev("d", -6, minute=2)) is Outcome.APPLIED
    assert f.state.on_hand == -2
    assert atp(f.state, 0) == 0


def test_repeated_event_id_is_dropped_even_at_a_new_offset() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    assert f.stock(ev("a", 10)) is Outcome.DUPLICATE
    assert f.state.on_hand == 10
    assert f.state.offsets[S] == 2  # the duplicate's offset is still consumed


def test_offset_at_or_below_the_stored_one_is_a_replay() -> None:
    state = KeyState()
    assert apply_stock_event(state, ev("a", 5), S, 7) is Outcome.APPLIED
    assert apply_stock_event(state, ev("b", 5), S, 7) is Outcome.DUPLICATE
    assert apply_stock_event(state, ev("c", 5), S, 3) is Outcome.DUPLICATE
    assert apply_stock_event(state, ev("d", 5), "warehouse.stock-events/1", 3) is Outcome.APPLIED
    assert state.on_hand == 10
    assert state.offsets == {S: 7, "warehouse.stock-events/1": 3}


def test_ring_forgets_the_oldest_ids() -> None:
    f = Feed()
    for i in range(RING_SIZE + 1):
        f.stock(ev(f"id-{i}", 1))
    assert len(f.state.recent) == RING_SIZE
    assert f.stock(ev(f"id-{RING_SIZE}", 1)) is Outcome.DUPLICATE
    assert f.stock(ev("id-0", 1)) is Outcome.APPLIED  # fell out of the ring
    assert f.state.on_hand == RING_SIZE + 2


def test_as_of_is_the_latest_event_time() -> None:
    f = Feed()
    f.stock(ev("a", 1, minute=5))
    f.stock(ev("b", 1, minute=2))
    assert f.state.as_of == at(5).timestamp()


# --- reservations ------------------------------------------------------------------


def reserve(f: Feed, order: str, qty: int, *, minute: float = 0) -> None:
    assert f.command(cmd("RESERVE", order, quantity=qty, minute=minute)) is Outcome.APPLIED


def test_reserve_holds_stock_and_is_idempotent() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    reserve(f, "O1", 3)
    assert (reserved(f.state), atp(f.state, 0)) == (3, 7)
    assert f.command(cmd("RESERVE", "O1", quantity=3)) is Outcome.DUPLICATE
    # Same order re-sent under another event id: still one reservation.
    assert f.command(cmd("RESERVE", "O1", n=9, quantity=5)) is Outcome.DUPLICATE
    assert reserved(f.state) == 3
    assert f.state.reservations["O1"].reserved_at == T0.timestamp()


def test_cancel_is_absolute_and_never_shrinks() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    reserve(f, "O1", 5)
    assert f.command(cmd("CANCEL", "O1", n=1, cancelledQuantity=2)) is Outcome.APPLIED
    assert reserved(f.state) == 3
    assert f.command(cmd("CANCEL", "O1", n=2, cancelledQuantity=3)) is Outcome.APPLIED
    assert reserved(f.state) == 2
    # An older cancel arriving late (new id) cannot undo the newer one.
    assert f.command(cmd("CANCEL", "O1", n=3, cancelledQuantity=1)) is Outcome.APPLIED
    assert reserved(f.state) == 2
    assert f.command(cmd("CANCEL", "O1", n=2, cancelledQuantity=3)) is Outcome.DUPLICATE
    assert f.command(cmd("CANCEL", "O1", n=4, cancelledQuantity=9)) is Outcome.APPLIED
    assert reserved(f.state) == 0
    assert atp(f.state, 0) == 10


def test_release_closes_fully_and_blocks_a_late_reserve() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    reserve(f, "O1", 4)
    assert f.command(cmd("RELEASE", "O1", n=1, minute=1)) is Outcome.APPLIED
    assert reserved(f.state) == 0
    assert f.state.reservations["O1"].closed_at == at(1).timestamp()
    assert f.command(cmd("RESERVE", "O1", n=2, quantity=4)) is Outcome.DUPLICATE
    assert reserved(f.state) == 0


def test_commands_for_unknown_orders() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    assert f.command(cmd("CANCEL", "O1", cancelledQuantity=1)) is Outcome.UNMATCHED
    assert f.command(cmd("ACCEPT", "O1")) is Outcome.UNMATCHED
    assert "O1" not in f.state.reservations
    assert f.command(cmd("RELEASE", "O2")) is Outcome.UNMATCHED
    assert f.state.reservations["O2"].closed_at is not None  # tombstone
    # The late RESERVE is recorded (an ACCEPT may follow it) but holds nothing.
    assert f.command(cmd("RESERVE", "O2", n=1, quantity=3)) is Outcome.APPLIED
    assert f.command(cmd("RESERVE", "O2", n=2, quantity=3)) is Outcome.DUPLICATE
    assert (f.state.reservations["O2"].quantity, reserved(f.state)) == (3, 0)
    assert atp(f.state, 0) == 10


def test_command_offset_replay_is_a_duplicate() -> None:
    state = KeyState()
    apply_command(state, cmd("RESERVE", "O1", quantity=2), C, 5)
    assert apply_command(state, cmd("RESERVE", "O2", quantity=2), C, 5) is Outcome.DUPLICATE
    assert list(state.reservations) == ["O1"]


def test_command_ids_are_bounded_but_keep_the_reserve_id() -> None:
    f = Feed()
    reserve(f, "O1", 100)
    for n in range(1, MAX_COMMAND_IDS + 5):
        f.command(cmd("CANCEL", "O1", n=n, cancelledQuantity=n))
    ids = f.state.reservations["O1"].command_ids
    assert len(ids) == MAX_COMMAND_IDS
    assert ids[0].endswith(":RESERVE")
    assert reserved(f.state) == 100 - (MAX_COMMAND_IDS + 4)


def test_accept_then_later_available_snapshot_absorbs_the_reservation() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    reserve(f, "O1", 3)
    reserve(f, "O2", 2)
    assert f.command(cmd("ACCEPT", "O1", n=1, minute=1)) is Outcome.APPLIED
    assert f.command(cmd("ACCEPT", "O1", n=2, minute=7)) is Outcome.APPLIED
    assert f.state.reservations["O1"].accepted_at == at(1).timestamp()  # first accept wins
    # A snapshot from the moment of the acceptance does not count the order yet.
    f.stock(snap("s1", 10, "AVAILABLE", minute=1))
    assert (f.state.on_hand, reserved(f.state)) == (10, 5)
    # Increff's later ATP already subtracts O1: keeping it would subtract it twice.
    f.stock(snap("s2", 7, "AVAILABLE", minute=2))
    assert (f.state.on_hand, reserved(f.state)) == (7, 2)
    assert f.state.reservations["O1"].open == 3  # absorbed, not closed
    assert atp(f.state, 0) == 5


def test_settle_after_leaves_a_grace_period() -> None:
    f = Feed()
    reserve(f, "O1", 3)
    f.command(cmd("ACCEPT", "O1", n=1, minute=1))
    f.offset += 1
    s = snap("s", 9, "AVAILABLE", minute=1.5)
    apply_stock_event(f.state, s, S, f.offset, settle_after_s=60)
    assert reserved(f.state) == 3
    f.offset += 1
    t = snap("t", 9, "AVAILABLE", minute=2.5)
    apply_stock_event(f.state, t, S, f.offset, settle_after_s=60)
    assert reserved(f.state) == 0


def test_negative_delta_with_order_releases_what_it_picked() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    reserve(f, "O1", 3)
    f.stock(ev("p1", -2, order="O1"))
    assert (f.state.on_hand, reserved(f.state), atp(f.state, 0)) == (8, 1, 7)
    f.stock(ev("p2", -5, order="O1"))  # over-pick releases only what is open
    assert (f.state.on_hand, reserved(f.state), atp(f.state, 0)) == (3, 0, 3)
    assert f.state.reservations["O1"].picked == 2 + 5


def test_other_events_with_order_release_fully() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    reserve(f, "O1", 3)
    reserve(f, "O2", 4)
    f.stock(ev("r", 1, order="O1"))
    f.stock(ev("s", 9, "SNAPSHOT", minute=1, order="O2"))
    assert reserved(f.state) == 0
    assert f.state.on_hand == 9
    f.stock(ev("x", -1, minute=2, order="NOPE"))  # unknown order: stock still moves
    assert f.state.on_hand == 8


def test_cancel_and_pick_combine() -> None:
    f = Feed()
    reserve(f, "O1", 5)
    f.stock(ev("p", -2, order="O1"))
    f.command(cmd("CANCEL", "O1", n=1, cancelledQuantity=2))
    assert f.state.reservations["O1"].open == 1


# --- expiry -----------------------------------------------------------------------


def test_expiry_reports_open_reservations_and_forgets_tombstones() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    reserve(f, "OLD", 2, minute=0)
    reserve(f, "NEW", 3, minute=50)
    reserve(f, "GONE", 1, minute=0)
    f.command(cmd("CANCEL", "GONE", n=1, cancelledQuantity=1))
    now = at(60).timestamp()
    assert expire_reservations(f.state, now, ttl_s=3600) == ["OLD"]
    assert reserved(f.state) == 3
    assert f.state.reservations["OLD"].closed_at == now
    assert f.state.reservations["GONE"].closed_at == now  # held nothing: closed silently
    assert expire_reservations(f.state, now + 1, ttl_s=3600, tombstone_s=10) == []
    assert set(f.state.reservations) == {"OLD", "GONE", "NEW"}
    assert expire_reservations(f.state, now + 10, ttl_s=3600, tombstone_s=10) == []
    assert set(f.state.reservations) == {"NEW"}


# --- ATP and safety stock ---------------------------------------------------------


def test_atp_subtracts_reservations_and_safety_stock() -> None:
    f = Feed()
    f.stock(ev("a", 10))
    reserve(f, "O1", 3)
    assert atp(f.state, 0) == 7
    assert atp(f.state, 2) == 5
    assert atp(f.state, 8) == 0


def test_safety_stock_overrides() -> None:
    policy = SafetyStock(default=2, per_location={"WH2": 5}, per_key={"WH2:S9": 0, "WH1:S1": 1})
    assert policy.for_key("WH1", "S0") == 2
    assert policy.for_key("WH1", "S1") == 1
    assert policy.for_key("WH2", "S0") == 5
    assert policy.for_key("WH2", "S9") == 0
    assert SafetyStock().for_key("X", "Y") == 0
    with pytest.raises(ValueError, match=">= 0"):
        SafetyStock(per_location={"WH1": -1})


# --- versions and publication -------------------------------------------------------


def test_next_version_is_a_hybrid_clock() -> None:
    assert next_version(0, 1_000) == 1_000
    assert next_version(1_000, 1_000) == 1_001
    assert next_version(5_000, 1_000) == 5_001


def test_build_update_bumps_version_and_records_quantity_only_when_told() -> None:
    f = Feed()
    f.stock(ev("a", 10, minute=1))
    reserve(f, "O1", 3)
    first = build_update(f.state, "WH1", "SKU-1", 1, at(2))
    assert (first.quantity, first.onHand, first.reserved) == (6, 10, 3)
    assert first.asOf == at(1)
    assert first.publishedAt == at(2)
    assert first.version == int(at(2).timestamp() * 1_000_000)
    # Not acknowledged yet: the state does not say "published".
    assert (f.state.last_published_qty, f.state.version) == (None, 0)
    record_publication(f.state, first)
    again = build_update(f.state, "WH1", "SKU-1", 1, at(2))
    record_publication(f.state, again)
    assert again.version == first.version + 1
    assert (f.state.last_published_qty, f.state.version) == (6, again.version)
    # A state that lost its last write (stale version) still moves forward with time.
    stale = KeyState(on_hand=10, version=first.version - 1)
    later = build_update(stale, "WH1", "SKU-1", 0, at(2) + timedelta(milliseconds=1))
    assert later.version > again.version


# --- serialization ------------------------------------------------------------------


def test_state_round_trips_through_bytes() -> None:
    f = Feed()
    for i in range(RING_SIZE + 3):
        f.stock(ev(f"id-{i}", 1, minute=i))
    reserve(f, "O1", 3)
    reserve(f, "O2", 2)
    f.command(cmd("ACCEPT", "O1", n=1, minute=2))
    f.command(cmd("CANCEL", "O2", n=1, cancelledQuantity=1))
    f.command(cmd("RELEASE", "O3", n=1))
    build_update(f.state, "WH1", "SKU-1", 0, at(100))
    data = f.state.to_bytes()
    back = KeyState.from_bytes(data)
    assert back == f.state
    assert back.to_bytes() == data
    assert back.recent.maxlen == RING_SIZE
    assert back.seen(f"id-{RING_SIZE + 2}") and not back.seen("id-0")
    assert back.reservations["O2"].open == 1
    assert back.reservations["O3"].open == 0
    # The restored state behaves the same: ring dedupe and offsets survive.
    assert apply_stock_event(back, ev(f"id-{RING_SIZE}", 1), S, 10_000) is Outcome.DUPLICATE
    assert apply_stock_event(back, ev("fresh", 1), S, f.offset) is Outcome.DUPLICATE
    assert isinstance(orjson.loads(data), list)


def test_unknown_state_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown KeyState format"):
        KeyState.from_bytes(b"[99]")


def test_reservation_open_is_derived() -> None:
    r = Reservation(quantity=5, reserved_at=0.0, cancelled=1, picked=1)
    assert r.open == 3
    r.close(1.0)
    r.close(2.0)
    assert (r.open, r.closed_at) == (0, 1.0)


def test_a_pick_that_overtakes_its_reservation_is_remembered() -> None:
    from datetime import UTC, datetime

    from models.events import InventoryCommand, StockEvent
    from models.inventory import KeyState, apply_command, apply_stock_event, atp

    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    state = KeyState()
    snap = StockEvent(
        eventId="s",
        type="SNAPSHOT",
        locationCode="W",
        channelSkuCode="A",
        quantity=10,
        occurredAt=at,
    )
    pick = StockEvent(
        eventId="p",
        type="DELTA",
        locationCode="W",
        channelSkuCode="A",
        quantity=-2,
        occurredAt=at + timedelta(seconds=1),
        orderCode="O1",
    )
    reserve = InventoryCommand(
        commandId="o:0:RESERVE",
        type="RESERVE",
        orderCode="O1",
        locationCode="W",
        channelSkuCode="A",
        occurredAt=at,
        quantity=3,
    )
    apply_stock_event(state, snap, "s:0", 1)
    apply_stock_event(state, pick, "s:0", 2)
    assert atp(state, 0) == 8  # picked, nothing reserved yet
    apply_command(state, reserve, "c:0", 1)
    assert atp(state, 0) == 7  # 3 ordered, 2 already picked: 1 still held
    assert apply_command(state, reserve, "c:0", 2).value == "duplicate"
    assert atp(state, 0) == 7
    restored = KeyState.from_bytes(state.to_bytes())
    assert atp(restored, 0) == 7


# --- snapshots: basis, absorption, interleaving --------------------------------------


def snap(event_id: str, quantity: int, basis: str | None, *, minute: float) -> StockEvent:
    return ev(event_id, quantity, "SNAPSHOT", minute=minute).model_copy(update={"basis": basis})


def test_accept_after_an_available_snapshot_is_absorbed_by_time_not_arrival() -> None:
    """The repro of issue 9 item 8: one set of messages, two interleavings, 8 vs 6."""
    stock = [ev("a", 10, minute=0), snap("s", 8, "AVAILABLE", minute=10)]
    commands = [cmd("RESERVE", "O1", quantity=2, minute=1), cmd("ACCEPT", "O1", n=1, minute=5)]
    commands_first = Feed()
    for c in commands:
        commands_first.command(c)
    for e in stock:
        commands_first.stock(e)
    accept_last = Feed()
    accept_last.command(commands[0])
    for e in stock:
        accept_last.stock(e)
    accept_last.command(commands[1])
    assert atp(commands_first.state, 0) == 8  # Increff's 8 already excludes O1's 2
    assert atp(accept_last.state, 0) == 8


def accepted(f: Feed, order: str, qty: int, *, minute: float) -> None:
    reserve(f, order, qty, minute=minute)
    assert f.command(cmd("ACCEPT", order, n=1, minute=minute)) is Outcome.APPLIED


def test_atp_is_base_minus_counted_unpicked_reservations_minus_safety() -> None:
    f = Feed()
    f.stock(snap("s", 20, "AVAILABLE", minute=5))
    accepted(f, "IN", 3, minute=1)  # in Increff's figure
    accepted(f, "OUT", 4, minute=6)  # accepted after it: still counted
    reserve(f, "NEW", 2, minute=7)  # not accepted yet: counted
    f.stock(ev("p", -1, minute=8, order="NEW"))  # 1 of NEW picked
    assert (f.state.on_hand, reserved(f.state)) == (19, 4 + 1)
    assert atp(f.state, 2) == 19 - 5 - 2


def test_on_hand_snapshot_keeps_every_unpicked_reservation_counted() -> None:
    f = Feed()
    accepted(f, "O1", 3, minute=1)
    reserve(f, "O2", 2, minute=1)
    f.stock(ev("p", -1, minute=2, order="O1"))
    f.stock(snap("s", 10, None, minute=3))  # no basis: ON_HAND
    assert (f.state.on_hand, reserved(f.state), atp(f.state, 0)) == (10, 2 + 2, 6)
    f.stock(snap("t", 10, "ON_HAND", minute=4))
    assert atp(f.state, 0) == 6


def test_on_hand_snapshot_counts_again_what_an_available_one_absorbed() -> None:
    f = Feed()
    accepted(f, "O1", 3, minute=1)
    f.stock(snap("a", 7, "AVAILABLE", minute=2))
    assert (reserved(f.state), atp(f.state, 0)) == (0, 7)
    f.stock(ev("p", -1, minute=3, order="O1"))  # absorbed: changes nothing
    assert (f.state.on_hand, atp(f.state, 0)) == (7, 7)
    f.stock(snap("h", 9, "ON_HAND", minute=4))  # holds O1's 2 unpicked units
    assert (f.state.on_hand, reserved(f.state), atp(f.state, 0)) == (9, 2, 7)


def test_available_snapshot_absorbs_only_orders_accepted_before_it() -> None:
    f = Feed()
    accepted(f, "EARLY", 3, minute=1)
    accepted(f, "SAME", 2, minute=2)
    reserve(f, "OPEN", 1, minute=1)  # never accepted
    f.stock(snap("a", 10, "AVAILABLE", minute=2))
    assert reserved(f.state) == 2 + 1  # strictly before: SAME and OPEN still count
    accepted(f, "LATER", 4, minute=3)
    assert reserved(f.state) == 2 + 1 + 4


def test_pick_of_an_absorbed_reservation_changes_nothing() -> None:
    f = Feed()
    accepted(f, "O1", 3, minute=1)
    f.stock(snap("a", 7, "AVAILABLE", minute=2))
    f.stock(ev("p", -3, minute=3, order="O1"))
    assert (f.state.on_hand, reserved(f.state), atp(f.state, 0)) == (7, 0, 7)
    assert f.state.reservations["O1"].open == 0  # ended: a later ON_HAND count sees it gone
    f.stock(snap("h", 7, "ON_HAND", minute=4))
    assert atp(f.state, 0) == 7


def test_pick_of_a_counted_reservation_lowers_on_hand_and_reservation_together() -> None:
    f = Feed()
    f.stock(snap("s", 10, "ON_HAND", minute=0))
    accepted(f, "O1", 3, minute=1)
    assert atp(f.state, 0) == 7
    f.stock(ev("p", -2, minute=2, order="O1"))
    assert (f.state.on_hand, reserved(f.state), atp(f.state, 0)) == (8, 1, 7)


def test_pick_naming_no_known_reservation_lowers_on_hand() -> None:
    f = Feed()
    f.stock(snap("s", 10, "AVAILABLE", minute=0))
    f.stock(ev("p", -2, minute=1, order="GHOST"))
    assert (f.state.on_hand, atp(f.state, 0)) == (8, 8)
    # CANCEL and ACCEPT before any RESERVE are unmatched, whatever came first.
    assert f.command(cmd("ACCEPT", "GHOST", minute=0)) is Outcome.UNMATCHED
    assert f.command(cmd("CANCEL", "GHOST", n=1, cancelledQuantity=1)) is Outcome.UNMATCHED
    assert atp(f.state, 0) == 8


def test_stock_events_not_after_the_base_are_already_in_it() -> None:
    f = Feed()
    reserve(f, "O1", 3)
    f.stock(snap("s", 10, "ON_HAND", minute=5))
    f.stock(ev("late", 4, minute=4))  # happened before the count
    f.stock(ev("tie", -1, minute=5))  # at the count's moment: in it too
    f.stock(snap("old", 50, "ON_HAND", minute=5))  # not after the base: not a new base
    assert (f.state.on_hand, atp(f.state, 0)) == (10, 7)
    f.stock(ev("p", -2, minute=3, order="O1"))  # a pick among them still ends it
    assert (f.state.on_hand, reserved(f.state), atp(f.state, 0)) == (10, 1, 9)
    f.stock(ev("new", 1, minute=6))
    assert f.state.on_hand == 11


def test_pick_before_its_accept_arrives_is_given_back_to_an_available_base() -> None:
    """The pick lowered on-hand; the late ACCEPT shows the base already excluded it."""
    stock = [snap("a", 7, "AVAILABLE", minute=2), ev("p", -3, minute=3, order="O1")]
    commands = [cmd("RESERVE", "O1", quantity=3), cmd("ACCEPT", "O1", n=1, minute=1)]
    f = Feed()
    f.command(commands[0])
    for e in stock:
        f.stock(e)
    assert (f.state.on_hand, atp(f.state, 0)) == (4, 4)
    f.command(commands[1])
    assert (f.state.on_hand, atp(f.state, 0)) == (7, 7)
    g = Feed()
    for c in commands:
        g.command(c)
    for e in stock:
        g.stock(e)
    assert (g.state.on_hand, reserved(g.state)) == (7, 0)


def test_expiry_of_an_absorbed_reservation_is_silent() -> None:
    f = Feed()
    accepted(f, "IN", 3, minute=0)
    reserve(f, "OPEN", 2, minute=0)
    f.stock(snap("a", 7, "AVAILABLE", minute=1))
    now = at(60).timestamp()
    assert expire_reservations(f.state, now, ttl_s=60) == ["OPEN"]
    assert f.state.reservations["IN"].closed_at == now


def test_format_2_state_is_still_read() -> None:
    reservation = [5, T0.timestamp(), 1, 2, None, None, ["o:0:RESERVE"]]
    old = orjson.dumps([2, 9, {"O1": reservation}, ["e1"], {S: 3}, 7, 11, 0.0, "WH1"])
    state = KeyState.from_bytes(old)
    assert (state.on_hand, reserved(state), state.base_at, state.absorb_before) == (
        9,
        2,
        None,
        None,
    )
    assert state.reservations["O1"].picked_after == 0
    assert orjson.loads(state.to_bytes())[0] == 3
    assert KeyState.from_bytes(state.to_bytes()) == state


def test_format_3_keeps_the_base_and_picks_since_it() -> None:
    f = Feed()
    accepted(f, "O1", 3, minute=1)
    f.stock(snap("a", 7, "AVAILABLE", minute=2))
    f.offset += 1
    apply_stock_event(f.state, snap("b", 7, "AVAILABLE", minute=3), S, f.offset, settle_after_s=90)
    reserve(f, "O2", 2, minute=2)
    f.stock(ev("p", -1, minute=4, order="O2"))
    back = KeyState.from_bytes(f.state.to_bytes())
    assert back == f.state
    assert (back.base_at, back.absorb_before) == (at(3).timestamp(), at(1.5).timestamp())
    assert back.reservations["O2"].picked_after == 1
    assert atp(back, 0) == atp(f.state, 0) == 6 - 1
