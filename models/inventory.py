"""Per-key inventory state and the rules that change it (DESIGN.md "Inventory semantics").

Plain slotted dataclasses, not pydantic: this runs for every event at ≥20,000/s.
Every rule is deterministic in its inputs (event times, never the wall clock), so a
replay after a crash rebuilds exactly the state that one clean pass gives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from models.events import InventoryCommand, InventoryUpdate, StockEvent, inventory_key

RING_SIZE = 32
"""Recent eventIds kept per key: catches producer re-sends; offsets catch replays."""

MAX_COMMAND_IDS = 16
"""Command ids kept per reservation (reserve, accept, a few cancels, release)."""

_FORMAT = 3
"""Format 3 adds the base's time and absorption cutoff and each reservation's picks since
the base; 2 added the location code. Formats 1 and 2 are still read."""

MAX_ON_HAND = 2**62
"""On-hand stays well inside 64 bits, so every output encodes; beyond it, refused."""


class Outcome(StrEnum):
    """What a rule did; the value is a ready-made metrics label."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    # A command for an order with no reservation at this key: counted, state unchanged.
    UNMATCHED = "unmatched"


@dataclass(slots=True)
class Reservation:
    """One order's hold on one key. ``open`` is derived; call :meth:`refresh` after changes.

    ``quantity`` 0 means no RESERVE yet: a record left by a pick or release that came first.
    ``picked`` counts every unit picked (over-picks too), so the open quantity is the same
    whatever order picks and cancels arrive in; ``picked_after`` is the part picked after
    the current base (it left on-hand unless the base absorbed the reservation).
    """

    quantity: int
    reserved_at: float
    cancelled: int = 0
    picked: int = 0
    accepted_at: float | None = None
    closed_at: float | None = None
    command_ids: list[str] = field(default_factory=list)
    picked_after: int = 0
    open: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        if self.closed_at is not None:
            self.open = 0
        else:
            self.open = max(0, self.quantity - self.cancelled - self.picked)

    def close(self, at: float) -> None:
        if self.closed_at is None:
            self.closed_at = at
        self.open = 0


@dataclass(slots=True)
class KeyState:
    """Everything a key needs to apply events idempotently and publish absolutely."""

    on_hand: int = 0
    reservations: dict[str, Reservation] = field(default_factory=dict)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RING_SIZE))
    offsets: dict[str, int] = field(default_factory=dict)
    last_published_qty: int | None = None
    version: int = 0
    as_of: float = 0.0
    location: str = ""
    """The key's locationCode (a location code may contain ':', so the key cannot say)."""
    base_at: float | None = None
    """occurredAt of the SNAPSHOT on-hand is based on: events not after it are in it."""
    absorb_before: float | None = None
    """An AVAILABLE base excludes orders Increff accepted before this; None: ON_HAND."""
    _recent_set: set[str] = field(default_factory=set, repr=False, compare=False)

    def seen(self, event_id: str) -> bool:
        return event_id in self._recent_set

    def remember(self, event_id: str) -> None:
        ring = self.recent
        if len(ring) == ring.maxlen:
            self._recent_set.discard(ring[0])
        ring.append(event_id)
        self._recent_set.add(event_id)

    def to_bytes(self) -> bytes:
        """Compact positional JSON: this is written to the changelog on every change."""
        reservations = {code: _reservation_row(r) for code, r in self.reservations.items()}
        head = [_FORMAT, self.on_hand, reservations, list(self.recent), self.offsets]
        tail = [self.last_published_qty, self.version, self.as_of, self.location]
        return orjson.dumps([*head, *tail, self.base_at, self.absorb_before])

    @classmethod
    def from_bytes(cls, data: bytes, *, dedupe: bool = True) -> KeyState:
        """Decode a state. ``dedupe=False`` leaves out the eventId ring and the source
        offsets (a third of the cost): a state to read ATP from, never to apply events
        to or write back (the pre-order lookup)."""
        raw: list[Any] = orjson.loads(data)
        if raw[0] == 1:
            raw.append("")
        if raw[0] in (1, 2):
            # No base known: every later event counts, as it did; nothing is absorbed.
            raw.extend([None, None])
        elif raw[0] != _FORMAT:
            raise ValueError(f"unknown KeyState format {raw[0]!r}")
        _, on_hand, reservations, recent, offsets, last_pub, version, as_of, location = raw[:9]
        state = cls(
            on_hand=on_hand,
            # Positional, in field order; format 2 lists lack picked_after (0).
            reservations={code: Reservation(*r) for code, r in reservations.items()},
            offsets=offsets if dedupe else {},
            last_published_qty=last_pub,
            version=version,
            as_of=as_of,
            location=location,
            base_at=raw[9],
            absorb_before=raw[10],
        )
        if dedupe:
            for event_id in recent:
                state.remember(event_id)
        return state


def _reservation_row(r: Reservation) -> list[Any]:
    """A reservation's fields in declaration order (``Reservation(*row)`` reads it back)."""
    return [
        r.quantity,
        r.reserved_at,
        r.cancelled,
        r.picked,
        r.accepted_at,
        r.closed_at,
        r.command_ids,
        r.picked_after,
    ]


@dataclass(frozen=True, slots=True)
class SafetyStock:
    """Units held back from ATP: a default, overridden per location, then per key."""

    default: int = 0
    per_location: Mapping[str, int] = field(default_factory=dict)
    per_key: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = [self.default, *self.per_location.values(), *self.per_key.values()]
        if any(v < 0 for v in values):
            raise ValueError("safety stock must be >= 0")

    def for_key(self, location_code: str, channel_sku_code: str) -> int:
        if self.per_key:
            value = self.per_key.get(inventory_key(location_code, channel_sku_code))
            if value is not None:
                return value
        return self.per_location.get(location_code, self.default)


def _replayed(state: KeyState, source: str, offset: int) -> bool:
    """Skip offsets at or below the last applied one of this source, else record it.

    ``source`` should name the topic and partition: offsets only order within one.
    """
    last = state.offsets.get(source)
    if last is not None and offset <= last:
        return True
    state.offsets[source] = offset
    return False


def absorbed(state: KeyState, r: Reservation) -> bool:
    """Does the current base already exclude this reservation (DESIGN.md "Reservations
    and snapshots")? Decided from times alone, so arrival order cannot change it."""
    cutoff = state.absorb_before
    return cutoff is not None and r.accepted_at is not None and r.accepted_at < cutoff


def _new_base(state: KeyState, event: StockEvent, at: float, settle_after_s: float) -> None:
    state.on_hand = event.quantity
    state.base_at = at
    state.absorb_before = at - settle_after_s if event.basis == "AVAILABLE" else None
    for r in state.reservations.values():
        r.picked_after = 0


def apply_stock_event(
    state: KeyState,
    event: StockEvent,
    source: str,
    offset: int,
    *,
    settle_after_s: float = 0.0,
    at: float | None = None,
) -> Outcome:
    """Apply a DELTA or SNAPSHOT once (DESIGN.md "Reservations and snapshots").

    ``at`` is ``event.occurredAt.timestamp()`` when the caller has it already (the
    engine computes it once per event: it costs more than the rest of a DELTA's rule).

    A SNAPSHOT replaces the base. Basis ``AVAILABLE`` (Increff's ATP push) absorbs
    the reservations Increff accepted more than ``settle_after_s`` before its
    ``occurredAt``; ``ON_HAND`` (the default) absorbs none. An event not after the
    base's ``occurredAt`` is already in the base: it leaves on-hand alone.

    An event naming an ``orderCode`` is that order's movement at this key: a negative
    DELTA (a pick) ends that much of the reservation and lowers on-hand unless the base
    absorbed the reservation; any other event naming it closes the reservation. If the
    order's RESERVE has not arrived yet, the movement is remembered for it.
    """
    if event.type == "DELTA" and abs(state.on_hand + event.quantity) > MAX_ON_HAND:
        raise ValueError(f"on-hand would leave the range +-{MAX_ON_HAND}")
    if _replayed(state, source, offset):
        return Outcome.DUPLICATE
    if state.seen(event.eventId):
        return Outcome.DUPLICATE
    state.remember(event.eventId)
    if at is None:
        at = event.occurredAt.timestamp()
    fresh = state.base_at is None or at > state.base_at
    if event.type == "SNAPSHOT" and fresh:
        _new_base(state, event, at, settle_after_s)
    if event.orderCode is None:
        if event.type == "DELTA" and fresh:
            state.on_hand += event.quantity
    else:
        r = state.reservations.get(event.orderCode)
        if r is None:
            # The movement overtook its reservation (stock events and reservation
            # commands travel different topics): remember it for the RESERVE.
            r = state.reservations[event.orderCode] = Reservation(quantity=0, reserved_at=at)
        if event.type == "DELTA" and event.quantity < 0:
            r.picked -= event.quantity
            if fresh:
                r.picked_after -= event.quantity
                if not absorbed(state, r):
                    state.on_hand += event.quantity
            r.refresh()
        else:
            if event.type == "DELTA" and fresh:
                state.on_hand += event.quantity
            r.close(at)
    state.as_of = max(state.as_of, at)
    return Outcome.APPLIED


def apply_command(state: KeyState, cmd: InventoryCommand, source: str, offset: int) -> Outcome:
    """Apply a reservation command once (by source offset and by ``commandId``).

    RESERVE is also idempotent by orderCode: the first one gives the reservation its
    quantity, even one a pick or release already recorded (a closed one stays closed,
    holding nothing). CANCEL is absolute and only grows, so an old cancel replayed
    after a newer one changes nothing. CANCEL and ACCEPT before the RESERVE are
    unmatched. A RELEASE for an unknown order leaves a closed tombstone, so a late
    RESERVE cannot resurrect an order that Increff rejected. An ACCEPT that puts the
    reservation under an AVAILABLE base gives back what its picks took from on-hand:
    that base already excluded them.
    """
    if _replayed(state, source, offset):
        return Outcome.DUPLICATE
    at = cmd.occurredAt.timestamp()
    r = state.reservations.get(cmd.orderCode)
    if cmd.type == "RESERVE":
        if cmd.quantity is None:  # the model refuses this; keeps mypy and -O honest
            raise ValueError("RESERVE without quantity")
        if r is None:
            state.reservations[cmd.orderCode] = Reservation(
                quantity=cmd.quantity, reserved_at=at, command_ids=[cmd.commandId]
            )
        elif r.quantity == 0:
            # A pick or release came first: take the order, keep what they did.
            r.quantity = cmd.quantity
            r.reserved_at = at
            r.command_ids.insert(0, cmd.commandId)
            r.refresh()
        else:
            return Outcome.DUPLICATE
    elif r is None:
        if cmd.type == "RELEASE":
            tomb = Reservation(quantity=0, reserved_at=at, command_ids=[cmd.commandId])
            tomb.close(at)
            state.reservations[cmd.orderCode] = tomb
        return Outcome.UNMATCHED
    else:
        if cmd.commandId in r.command_ids:
            return Outcome.DUPLICATE
        if r.quantity == 0 and cmd.type != "RELEASE":
            return Outcome.UNMATCHED  # not reserved yet: as if unknown, whatever came first
        r.command_ids.append(cmd.commandId)
        if len(r.command_ids) > MAX_COMMAND_IDS:
            del r.command_ids[1]  # keep the RESERVE id, drop the oldest after it
        if cmd.type == "CANCEL":
            if cmd.cancelledQuantity is None:
                raise ValueError("CANCEL without cancelledQuantity")
            r.cancelled = max(r.cancelled, cmd.cancelledQuantity)
            r.refresh()
        elif cmd.type == "RELEASE":
            r.close(at)
        elif r.accepted_at is None:  # ACCEPT
            r.accepted_at = at
            if absorbed(state, r):
                state.on_hand += r.picked_after
    state.as_of = max(state.as_of, at)
    return Outcome.APPLIED


def expire_reservations(
    state: KeyState, now: float, ttl_s: float, *, tombstone_s: float = 3600.0
) -> list[str]:
    """Close reservations older than ``ttl_s``; return the orders that still held stock.

    The caller counts and alerts on what is returned: an expiry means a release was
    lost somewhere. A reservation the base absorbed holds no stock (its order is in
    Increff's figure), so it closes silently. Closed reservations are forgotten
    ``tombstone_s`` after closing; until then they keep replays of their RESERVE from
    reserving again.
    """
    expired: list[str] = []
    forget: list[str] = []
    for code, r in state.reservations.items():
        if r.closed_at is None:
            if r.reserved_at + ttl_s <= now:
                if r.open > 0 and not absorbed(state, r):
                    expired.append(code)
                r.close(now)
        elif r.closed_at + tombstone_s <= now:
            forget.append(code)
    for code in forget:
        del state.reservations[code]
    return expired


def reserved(state: KeyState) -> int:
    """Units reserved, not yet picked, that the base still counts."""
    if not state.reservations:
        return 0
    if state.absorb_before is None:
        return sum(r.open for r in state.reservations.values())
    return sum(r.open for r in state.reservations.values() if not absorbed(state, r))


def atp(state: KeyState, safety_stock: int) -> int:
    """Available to promise; never negative, whatever the accounting says."""
    return max(0, state.on_hand - reserved(state) - safety_stock)


def next_version(prev: int, now_us: int) -> int:
    """Hybrid-logical-clock version: above the last one and at least the clock.

    If a crash loses the state write of a publication, the restored ``prev`` is
    stale, but the clock has moved on, so the next version still beats the lost one
    (unless more than one publication per key per microsecond was lost).
    """
    return max(prev + 1, now_us)


def build_update(
    state: KeyState,
    location_code: str,
    channel_sku_code: str,
    safety_stock: int,
    now: datetime,
) -> InventoryUpdate:
    """The message publishing ``state`` now; ``state`` is left as it is.

    Call :func:`record_publication` once the broker acknowledged the message: a state
    that says "published" while the message was lost would leave the key stale for good.
    """
    return InventoryUpdate(
        locationCode=location_code,
        channelSkuCode=channel_sku_code,
        quantity=atp(state, safety_stock),
        onHand=state.on_hand,
        reserved=reserved(state),
        version=next_version(state.version, int(now.timestamp() * 1_000_000)),
        asOf=datetime.fromtimestamp(state.as_of, UTC),
        publishedAt=now,
    )


def record_publication(state: KeyState, update: InventoryUpdate) -> None:
    """Note an acknowledged publication: its version and the quantity consumers now hold."""
    state.version = max(state.version, update.version)
    state.last_published_qty = update.quantity
