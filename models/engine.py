"""The inventory engine: every decision of the inventory agent, and no I/O.

One `InventoryEngine` per worker owns what the agent decides: each key's state (through
a small `StateStore`), the coalescer, when each pending change first happened, and which
partitions are assigned and which of them are restored. Its methods take decoded input
and the time, and return plain data: publications to send and state writes to make.
`streams/inventory.py` decodes, calls it, sends, waits for acks, writes state and counts
metrics; the property tests drive this very class (DESIGN.md "Inventory semantics").

The order of effects the caller keeps, and the two-step assignment, are those of every
`models.publishing.Publisher`: `apply(batch)` changes states and names the keys to write,
`due(now)` returns publications, `published(pubs)` records the acknowledged ones, and the
caller writes every named state before the input's offsets may be committed. A crash
between any two steps is repaired by the replay: outputs are absolute and versioned, and
state is only ever ahead of its inputs once those inputs are committed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from models import publishing
from models.errors import DecodeError
from models.events import InventoryCommand, InventoryUpdate, StockEvent, parse_inventory_key
from models.inventory import (
    KeyState,
    Outcome,
    SafetyStock,
    apply_command,
    apply_stock_event,
    atp,
    build_update,
    expire_reservations,
    record_publication,
)
from models.lookup import Found

Publication: TypeAlias = publishing.Publication[InventoryUpdate]
StateWrite: TypeAlias = publishing.StateWrite[KeyState]
StateStore: TypeAlias = publishing.StateStore[KeyState]
MemoryStore: TypeAlias = publishing.MemoryStore[KeyState]


@dataclass(slots=True)
class Input:
    """One decoded message of the stock-events or commands topic (not frozen: a frozen
    dataclass's ``__init__`` costs a third of the fast decode, once per event)."""

    topic: str
    partition: int
    offset: int
    item: StockEvent | InventoryCommand


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input the rules refused: dead-letter it with ``error``."""

    input: Input
    error: DecodeError


@dataclass(slots=True)
class Applied:
    """What `InventoryEngine.apply` did with a batch."""

    writes: list[StateWrite] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    stock: Counter[str] = field(default_factory=Counter)
    """Stock events applied, by type."""
    commands: Counter[str] = field(default_factory=Counter)
    """Commands applied or unmatched, by type."""
    duplicates: Counter[str] = field(default_factory=Counter)
    """Inputs skipped as repeats, by kind (``stock``, ``commands``)."""


@dataclass(slots=True)
class Expired:
    writes: list[StateWrite]
    orders: list[tuple[str, str]]
    """(key, orderCode) of each reservation that expired still holding stock."""
    open_reservations: int


class InventoryEngine(publishing.Publisher[KeyState, InventoryUpdate]):
    """Key state, coalescing and assignment of one worker (see the module docstring)."""

    def __init__(
        self,
        store: StateStore,
        *,
        stock_topic: str,
        safety: SafetyStock,
        debounce_s: float,
        max_delay_s: float,
        reservation_ttl_s: float,
        settle_grace_s: float = 0.0,
        partition_for: Callable[[str], int] | None = None,
    ) -> None:
        super().__init__(
            store, debounce_s=debounce_s, max_delay_s=max_delay_s, partition_for=partition_for
        )
        self.stock_topic = stock_topic
        self.safety = safety
        self.basis = _basis(safety)
        self._flat_safety: int | None = (
            None if safety.per_key or safety.per_location else safety.default
        )
        """The one safety stock of every key when nothing is overridden."""
        self._sources: dict[tuple[str, int], str] = {}
        self.reservation_ttl_s = reservation_ttl_s
        self.settle_grace_s = settle_grace_s

    # -- input -----------------------------------------------------------------------

    def apply(self, batch: Sequence[Input], now: float) -> Applied:
        """Apply decoded inputs in order; ``now`` is the coalescer's monotonic time.

        Each changed key is marked once, after the batch (every mark of a batch has the
        same ``now``): per event only its source time and whether its ATP was 0 after it
        are kept, which is all the coalescer's marks of each event would have kept."""
        out = Applied()
        touched: dict[str, int] = {}
        first_at: dict[str, float] = {}
        zeroed: set[str] = set()
        flat = self._flat_safety
        for inp in batch:
            item = inp.item
            key = item.key
            state = self.store.get(key)
            if touched.get(key) != inp.partition:  # else applied on this partition already
                misplaced = self.misplaced(key, state is not None, inp.partition)
                if misplaced is not None:
                    out.rejected.append(Rejection(inp, misplaced))
                    continue
            fresh = state is None
            if state is None:
                state = KeyState(location=item.locationCode)
            at = item.occurredAt.timestamp()
            try:
                outcome, kind = self._apply_one(state, inp, at)
            except ValueError as exc:  # the rules refuse it; the state is unchanged
                out.rejected.append(Rejection(inp, _refused(exc)))
                continue
            if outcome is Outcome.DUPLICATE:
                out.duplicates[kind] += 1
                continue
            if kind == "stock":
                out.stock[item.type] += 1
            else:
                out.commands[item.type] += 1
            if fresh:
                self.store.hold(key, state, inp.partition)
            touched[key] = inp.partition
            oldest = first_at.get(key)
            if oldest is None or at < oldest:
                first_at[key] = at
            if atp(state, flat if flat is not None else self._safety_for(key, state)) == 0:
                zeroed.add(key)
        for key, partition in touched.items():
            state = self.store.get(key)
            if state is not None:
                self._note(key, first_at[key], state, now, reached_zero=key in zeroed)
                flags = self._flags(key, state)
                out.writes.append(publishing.StateWrite(key, partition, state, flags))
        return out

    def _apply_one(self, state: KeyState, inp: Input, at: float) -> tuple[Outcome, str]:
        source = self._sources.get((inp.topic, inp.partition))
        if source is None:
            source = self._sources[inp.topic, inp.partition] = f"{inp.topic}:{inp.partition}"
        item = inp.item
        if isinstance(item, StockEvent):
            outcome = apply_stock_event(
                state, item, source, inp.offset, settle_after_s=self.settle_grace_s, at=at
            )
            return outcome, "stock"
        return apply_command(state, item, source, inp.offset), "commands"

    # -- what a key publishes ----------------------------------------------------------

    def _quantity(self, key: str, state: KeyState) -> int:
        return atp(state, self._safety_for(key, state))

    def _last_quantity(self, state: KeyState) -> int | None:
        return state.last_published_qty

    def _differs(self, key: str, state: KeyState) -> bool:
        return state.last_published_qty != self._quantity(key, state)

    def _publication(
        self,
        key: str,
        state: KeyState,
        partition: int,
        wall: datetime,
        since: float | None,
        marked: float | None,
    ) -> Publication | None:
        safety = self._safety_for(key, state)
        quantity = atp(state, safety)
        if not self.coalescer.should_publish(key, quantity, state.last_published_qty):
            return None
        location, sku = parse_inventory_key(key, state.location or None)
        update = build_update(state, location, sku, safety, wall)
        stockout = quantity == 0 and state.last_published_qty != 0
        return publishing.Publication(key, partition, update, since, stockout, marked)

    def _record(self, state: KeyState, update: InventoryUpdate) -> None:
        record_publication(state, update)

    # -- the pre-order lookup --------------------------------------------------------

    def lookup(self, skus: Iterable[str]) -> Found:
        """The ATP `due` would publish now, of every location of each SKU held on the
        restored partitions (changes still in the coalescing window included)."""
        found: Found = {}
        for sku in skus:
            for key, state, _ in self.store.find(sku, self.active):
                location, held = parse_inventory_key(key, state.location or None)
                if held == sku:
                    found.setdefault(sku, []).append((location, self._quantity(key, state)))
        return found

    # -- expiry ----------------------------------------------------------------------

    def expire(self, now_epoch: float, now: float) -> Expired:
        """Close reservations past their TTL on the restored partitions."""
        writes: list[StateWrite] = []
        orders: list[tuple[str, str]] = []
        open_total = 0
        # One key at a time: a store may decode each state on the way (streams/state.py).
        candidates = self.store.candidates(self.active, publishing.RESERVED, self.basis)
        for key, state, partition in candidates:
            if not state.reservations:
                continue
            before = _live(state)
            codes = expire_reservations(state, now_epoch, self.reservation_ttl_s)
            if codes or _live(state) != before:
                self.store.hold(key, state, partition)  # changed: keep this very object
                flags = self._flags(key, state)
                writes.append(publishing.StateWrite(key, partition, state, flags))
            if codes:
                orders.extend((key, code) for code in codes)
                self._mark(key, state, now)
            open_total += sum(1 for r in state.reservations.values() if r.open > 0)
        return Expired(writes, orders, open_total)

    # -- helpers ---------------------------------------------------------------------

    def _flags(self, key: str, state: KeyState) -> int:
        return super()._flags(key, state) | (publishing.RESERVED if state.reservations else 0)

    def _safety_for(self, key: str, state: KeyState) -> int:
        if self._flat_safety is not None:
            return self._flat_safety
        location, sku = parse_inventory_key(key, state.location or None)
        return self.safety.for_key(location, sku)


def _basis(safety: SafetyStock) -> str:
    """A short, stable name of the safety-stock settings."""
    parts = (safety.default, sorted(safety.per_location.items()), sorted(safety.per_key.items()))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _live(state: KeyState) -> tuple[int, int]:
    """(records, unclosed records): a change in either is a state to write."""
    unclosed = sum(1 for r in state.reservations.values() if r.closed_at is None)
    return len(state.reservations), unclosed


def _refused(exc: ValueError) -> DecodeError:
    if isinstance(exc, DecodeError):
        return exc
    if isinstance(exc, OverflowError) or "range" in str(exc):
        return DecodeError(str(exc), reason="out_of_range")
    return DecodeError(str(exc), reason="unapplicable")
