"""The inventory engine: every decision of the inventory agent, and no I/O.

One `InventoryEngine` per worker owns what the agent decides: each key's state (through
a small `StateStore`), the coalescer, when each pending change first happened, and which
partitions are assigned and which of them are restored. Its methods take decoded input
and the time, and return plain data: publications to send and state writes to make.
`streams/inventory.py` decodes, calls it, sends, waits for acks, writes state and counts
metrics; the property tests drive this very class (DESIGN.md "Inventory semantics").

The order of effects the caller keeps (and the engine's API makes natural):
1. `apply(batch)` changes states in memory and names the keys to write;
2. `due(now)` returns publications, computed but not recorded;
3. once the broker acknowledged them, `published(pubs)` records them in the states;
4. the caller writes every named state to the changelog and waits for those acks,
   and only then lets the input's offsets be committed.
A crash between any two steps is repaired by the replay: outputs are absolute and
versioned, and state is only ever ahead of its inputs once those inputs are committed.

Partitions are assigned in two steps: `assigned` (Faust is restoring their tables from
the changelog: keys may briefly hold older states, so nothing of them is published or
written) and `recovered` (restored: keys whose ATP differs from their last publication
are marked, so nothing pending is lost with a partition).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from models.coalescer import Coalescer
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


class StateStore(Protocol):
    """Where key states live (a Faust table in the worker, a dict in tests).

    Only local, synchronous access: the changelog writes are the caller's.
    """

    def get(self, key: str) -> KeyState | None: ...

    def hold(self, key: str, state: KeyState, partition: int) -> None:
        """Keep ``state`` for ``key`` (on ``partition``) in memory."""

    def partition_of(self, key: str) -> int | None:
        """The partition of a key held here, else None."""

    def items_in(self, partitions: Collection[int]) -> Iterator[tuple[str, KeyState, int]]:
        """(key, state, partition) of every key held on ``partitions``, to read: a state
        changed through it must be passed to `hold` (a store may decode on the way)."""

    def drop_partitions(self, partitions: Collection[int]) -> None:
        """Forget the keys of ``partitions`` (revoked: the next owner has them)."""


class MemoryStore:
    """A `StateStore` over dicts."""

    def __init__(self) -> None:
        self.states: dict[str, KeyState] = {}
        self.partitions: dict[str, int] = {}

    def get(self, key: str) -> KeyState | None:
        return self.states.get(key)

    def hold(self, key: str, state: KeyState, partition: int) -> None:
        self.states[key] = state
        self.partitions[key] = partition

    def partition_of(self, key: str) -> int | None:
        return self.partitions.get(key)

    def items_in(self, partitions: Collection[int]) -> Iterator[tuple[str, KeyState, int]]:
        for key, partition in list(self.partitions.items()):
            if partition in partitions:
                yield key, self.states[key], partition

    def drop_partitions(self, partitions: Collection[int]) -> None:
        for key in [k for k, p in self.partitions.items() if p in partitions]:
            del self.partitions[key]
            del self.states[key]


@dataclass(frozen=True, slots=True)
class Input:
    """One decoded message of the stock-events or commands topic."""

    topic: str
    partition: int
    offset: int
    item: StockEvent | InventoryCommand


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input the rules refused: dead-letter it with ``error``."""

    input: Input
    error: DecodeError


@dataclass(frozen=True, slots=True)
class Publication:
    """An update to send; record it with `InventoryEngine.published` once acknowledged."""

    key: str
    partition: int
    update: InventoryUpdate
    since: float | None
    """Oldest ``occurredAt`` (epoch s) among the changes it carries, if known."""
    stockout: bool
    marked: float | None = None
    """When (the engine's monotonic clock) the key was first marked changed, if known."""


@dataclass(frozen=True, slots=True)
class StateWrite:
    """Write ``state`` of ``key`` to changelog ``partition`` (encode it when sending)."""

    key: str
    partition: int
    state: KeyState


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


class InventoryEngine:
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
        """``partition_for(key)`` is Kafka's default partitioner over the topic's
        partitions: an input found elsewhere is refused (its state lives elsewhere)."""
        self.store = store
        self.stock_topic = stock_topic
        self.safety = safety
        self.coalescer = Coalescer(debounce_s, max_delay_s)
        self.reservation_ttl_s = reservation_ttl_s
        self.settle_grace_s = settle_grace_s
        self.partition_for = partition_for
        self.assignment: set[int] = set()
        self.active: set[int] = set()
        """Assigned and restored: the only partitions published from or written."""
        self._since: dict[str, float] = {}
        self._marked: dict[str, float] = {}

    # -- input -----------------------------------------------------------------------

    def apply(self, batch: Sequence[Input], now: float) -> Applied:
        """Apply decoded inputs in order; ``now`` is the coalescer's monotonic time."""
        out = Applied()
        touched: dict[str, int] = {}
        for inp in batch:
            key = inp.item.key
            state = self.store.get(key)
            home = self.store.partition_of(key) if state is not None else None
            if home is None and self.partition_for is not None:
                home = self.partition_for(key)
            if home is not None and home != inp.partition:
                out.rejected.append(Rejection(inp, _wrong_partition(inp, home)))
                continue
            fresh = state is None
            if state is None:
                state = KeyState(location=inp.item.locationCode)
            try:
                outcome, kind = self._apply_one(state, inp)
            except ValueError as exc:  # the rules refuse it; the state is unchanged
                out.rejected.append(Rejection(inp, _refused(exc)))
                continue
            if outcome is Outcome.DUPLICATE:
                out.duplicates[kind] += 1
                continue
            if kind == "stock":
                out.stock[inp.item.type] += 1
            else:
                out.commands[inp.item.type] += 1
            if fresh:
                self.store.hold(key, state, inp.partition)
            occurred = inp.item.occurredAt.timestamp()
            since = self._since.get(key)
            if since is None or occurred < since:
                self._since[key] = occurred
            touched[key] = inp.partition
            self._mark(key, state, now)
        for key, partition in touched.items():
            state = self.store.get(key)
            if state is not None:
                out.writes.append(StateWrite(key, partition, state))
        return out

    def _apply_one(self, state: KeyState, inp: Input) -> tuple[Outcome, str]:
        source = f"{inp.topic}:{inp.partition}"
        item = inp.item
        if isinstance(item, StockEvent):
            return (
                apply_stock_event(
                    state, item, source, inp.offset, settle_after_s=self.settle_grace_s
                ),
                "stock",
            )
        return apply_command(state, item, source, inp.offset), "commands"

    # -- publishing ------------------------------------------------------------------

    def due(self, now: float, wall: datetime, *, everything: bool = False) -> list[Publication]:
        """Publications of the keys due at ``now`` (all pending ones with ``everything``)
        whose ATP differs from their last publication; nothing is recorded yet."""
        keys = self.coalescer.drain() if everything else self.coalescer.due(now)
        out: list[Publication] = []
        for key in keys:
            since = self._since.pop(key, None)
            marked = self._marked.pop(key, None)
            state = self.store.get(key)
            partition = self.store.partition_of(key)
            if state is None or partition not in self.active:
                continue  # revoked meanwhile: the new owner re-marks it
            safety = self._safety_for(key, state)
            quantity = atp(state, safety)
            if not self.coalescer.should_publish(key, quantity, state.last_published_qty):
                continue
            location, sku = parse_inventory_key(key, state.location or None)
            update = build_update(state, location, sku, safety, wall)
            stockout = quantity == 0 and state.last_published_qty != 0
            out.append(Publication(key, partition, update, since, stockout, marked))
        return out

    def published(self, pubs: Iterable[Publication]) -> list[StateWrite]:
        """Record acknowledged publications; returns the state writes that keep them."""
        writes: list[StateWrite] = []
        for pub in pubs:
            state = self.store.get(pub.key)
            if state is None or self.store.partition_of(pub.key) != pub.partition:
                continue
            record_publication(state, pub.update)
            self.coalescer.confirm(pub.key)
            if pub.partition in self.active:
                writes.append(StateWrite(pub.key, pub.partition, state))
        return writes

    def unpublished(self, pubs: Iterable[Publication], now: float) -> None:
        """Sending failed: mark the keys again, so a later flush retries them."""
        for pub in pubs:
            state = self.store.get(pub.key)
            if state is not None and pub.partition in self.active:
                if pub.since is not None:
                    self._since.setdefault(pub.key, pub.since)
                if pub.marked is not None:
                    self._marked.setdefault(pub.key, pub.marked)
                self._mark(pub.key, state, now)

    def next_deadline(self) -> float | None:
        return self.coalescer.next_deadline()

    @property
    def pending(self) -> int:
        """Keys waiting to be published."""
        return len(self.coalescer)

    # -- assignment ------------------------------------------------------------------

    def assigned(self, partitions: Collection[int]) -> None:
        """The new assignment; its partitions are being restored until `recovered`."""
        gone = self.assignment - set(partitions)
        if gone:
            self.revoked(gone)
        self.assignment = set(partitions)
        self.active = set()

    def recovered(self, now: float) -> int:
        """The assignment's tables are restored: publish from them again.

        Marks every key whose ATP differs from its last publication; returns how many.
        """
        self.active = set(self.assignment)
        marked = 0
        for key, state, _ in self.store.items_in(self.active):
            if state.last_published_qty != atp(state, self._safety_for(key, state)):
                self._mark(key, state, now)
                marked += 1
        return marked

    def revoked(self, partitions: Collection[int]) -> None:
        """Partitions taken away: forget their keys, pending changes and states."""
        gone = set(partitions)
        keys = [key for key, _, _ in self.store.items_in(gone)]
        self.coalescer.drop_partition(keys)
        for key in keys:
            self._since.pop(key, None)
            self._marked.pop(key, None)
        self.store.drop_partitions(gone)
        self.assignment -= gone
        self.active -= gone

    def suspend(self) -> None:
        """A rebalance began: nothing is published or written until `recovered`."""
        self.active = set()

    def items_active(self) -> Iterator[tuple[str, KeyState, int]]:
        return self.store.items_in(self.active)

    # -- expiry ----------------------------------------------------------------------

    def expire(self, now_epoch: float, now: float) -> Expired:
        """Close reservations past their TTL on the restored partitions."""
        writes: list[StateWrite] = []
        orders: list[tuple[str, str]] = []
        open_total = 0
        # One key at a time: a store may decode each state on the way (streams/state.py).
        for key, state, partition in self.store.items_in(self.active):
            if not state.reservations:
                continue
            before = _live(state)
            codes = expire_reservations(state, now_epoch, self.reservation_ttl_s)
            if codes or _live(state) != before:
                self.store.hold(key, state, partition)  # changed: keep this very object
                writes.append(StateWrite(key, partition, state))
            if codes:
                orders.extend((key, code) for code in codes)
                self._mark(key, state, now)
            open_total += sum(1 for r in state.reservations.values() if r.open > 0)
        return Expired(writes, orders, open_total)

    # -- helpers ---------------------------------------------------------------------

    def _safety_for(self, key: str, state: KeyState) -> int:
        location, sku = parse_inventory_key(key, state.location or None)
        return self.safety.for_key(location, sku)

    def _mark(self, key: str, state: KeyState, now: float) -> None:
        self._marked.setdefault(key, now)
        quantity = atp(state, self._safety_for(key, state))
        self.coalescer.mark(key, now, quantity, state.last_published_qty)


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


def _wrong_partition(inp: Input, home: int) -> DecodeError:
    return DecodeError(
        f"found on partition {inp.partition}, but Kafka's default partitioner (murmur2) "
        f"puts this key on partition {home}: produce with the default partitioner "
        "(librdkafka: partitioner=murmur2_random)",
        reason="wrong_partition",
    )
