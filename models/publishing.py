"""What every stage publishing absolute, versioned, coalesced records shares: no I/O.

A `Publisher` owns keys' states (through a `StateStore`), the coalescer, when each
pending change first happened, and which partitions are assigned and restored. The
inventory engine (`models/engine.py`, one record per location and SKU) and the
consolidation engine (`models/consolidation.py`, one per SKU) are publishers; each says
how a state is measured and published, the rest is here, so both keep the same rules
(DESIGN.md "Debounce and coalesce", "marketplace.inventory"):

1. input changes states in memory and names the keys to write;
2. `due(now)` returns publications, computed but not recorded;
3. once the broker acknowledged them, `published(pubs)` records them in the states;
4. the caller writes every named state to the changelog and waits for those acks,
   and only then lets the input's offsets be committed.

Partitions are assigned in two steps: `assigned` (Faust is restoring their tables: keys
may briefly hold older states, so nothing of them is published or written) and
`recovered` (restored: keys whose state differs from their last publication are marked,
and the first flush of each key publishes even an unchanged figure, since a crash may
have lost the state write recording the last publication).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from models.coalescer import Coalescer
from models.errors import DecodeError
from models.lookup import SkuIndex

S = TypeVar("S")
U = TypeVar("U")


class StateStore(Protocol[S]):
    """Where key states live (a Faust table in the worker, a dict in tests).

    Only local, synchronous access: the changelog writes are the caller's.
    """

    def get(self, key: str) -> S | None: ...

    def hold(self, key: str, state: S, partition: int) -> None:
        """Keep ``state`` for ``key`` (on ``partition``) in memory."""

    def partition_of(self, key: str) -> int | None:
        """The partition of a key held here, else None."""

    def items_in(self, partitions: Collection[int]) -> Iterator[tuple[str, S, int]]:
        """(key, state, partition) of every key held on ``partitions``, to read: a state
        changed through it must be passed to `hold` (a store may decode on the way)."""

    def drop_partitions(self, partitions: Collection[int]) -> None:
        """Forget the keys of ``partitions`` (revoked: the next owner has them)."""

    def find(self, sku: str, partitions: Collection[int]) -> Iterator[tuple[str, S, int]]:
        """(key, state, partition), to read a figure from (a store may leave out what
        dedupe needs), of every ``location:SKU`` key on ``partitions`` that may hold
        ``sku`` (at least those that do; `models.lookup.SkuIndex`): the pre-order lookup."""

    def keys_in(self, partitions: Collection[int]) -> Iterator[str]:
        """Every key held on ``partitions``."""

    def candidates(
        self, partitions: Collection[int], flag: int, basis: str
    ) -> Iterator[tuple[str, S, int]]:
        """Like `items_in`, but a store that keeps each state's `StateWrite.flags` may
        skip the keys whose last write did not carry ``flag``; `PENDING` flags count only
        as computed under ``basis`` (`Publisher.basis`)."""

    def checked(self, flags: Mapping[str, tuple[int, int]], basis: Mapping[int, str]) -> None:
        """Keys checked by `recovered` (key -> (flags, partition)), and the basis their
        partitions' flags are now computed under."""


PENDING = 1
"""`StateWrite.flags`: the state differs from its last publication."""
RESERVED = 2
"""`StateWrite.flags`: the state holds reservation records (expiry must see it)."""
CHECK_CHUNK = 10_000
"""Keys `recovered` checks between two reports to the store."""


class MemoryStore(Generic[S]):
    """A `StateStore` over dicts."""

    def __init__(self) -> None:
        self.states: dict[str, S] = {}
        self.partitions: dict[str, int] = {}
        self.index = SkuIndex()

    def get(self, key: str) -> S | None:
        return self.states.get(key)

    def hold(self, key: str, state: S, partition: int) -> None:
        if key not in self.states:
            self.index.add(key)
        self.states[key] = state
        self.partitions[key] = partition

    def partition_of(self, key: str) -> int | None:
        return self.partitions.get(key)

    def items_in(self, partitions: Collection[int]) -> Iterator[tuple[str, S, int]]:
        for key, partition in list(self.partitions.items()):
            if partition in partitions:
                yield key, self.states[key], partition

    def drop_partitions(self, partitions: Collection[int]) -> None:
        for key in [k for k, p in self.partitions.items() if p in partitions]:
            del self.partitions[key]
            del self.states[key]
            self.index.discard(key)

    def find(self, sku: str, partitions: Collection[int]) -> Iterator[tuple[str, S, int]]:
        for key in self.index.candidates(sku):
            partition = self.partitions[key]
            if partition in partitions:
                yield key, self.states[key], partition

    def keys_in(self, partitions: Collection[int]) -> Iterator[str]:
        return (k for k, p in list(self.partitions.items()) if p in partitions)

    def candidates(
        self, partitions: Collection[int], flag: int, basis: str
    ) -> Iterator[tuple[str, S, int]]:
        return self.items_in(partitions)

    def checked(self, flags: Mapping[str, tuple[int, int]], basis: Mapping[int, str]) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Publication(Generic[U]):
    """A record to send; record it with `Publisher.published` once acknowledged."""

    key: str
    partition: int
    update: U
    since: float | None
    """Oldest source time (epoch s) among the changes it carries, if known."""
    stockout: bool
    marked: float | None = None
    """When (the publisher's monotonic clock) the key was first marked changed, if known."""


@dataclass(frozen=True, slots=True)
class StateWrite(Generic[S]):
    """Write ``state`` of ``key`` to changelog ``partition`` (encode it when sending).

    ``flags`` (`PENDING`, `RESERVED`) describe the state as written: a store that keeps
    them lets `recovered` (and the inventory's expiry) visit only the keys they concern."""

    key: str
    partition: int
    state: S
    flags: int = 0


class Publisher(Generic[S, U]):
    """Key states, coalescing and assignment of one worker's stage (module docstring).

    A subclass says what a state publishes: `_quantity` (the figure whose drop to 0 is a
    stock-out, published at once), `_last_quantity` (that figure as last published),
    `_differs` (the state is not what was last published), `_publication` and `_record`.
    """

    def __init__(
        self,
        store: StateStore[S],
        *,
        debounce_s: float,
        max_delay_s: float,
        partition_for: Callable[[str], int] | None = None,
    ) -> None:
        """``partition_for(key)`` is Kafka's default partitioner over the input topic's
        partitions: an input found elsewhere is refused (its state lives elsewhere)."""
        self.store = store
        self.partition_for = partition_for
        self.coalescer = Coalescer(debounce_s, max_delay_s)
        self.assignment: set[int] = set()
        self.active: set[int] = set()
        """Assigned and restored: the only partitions published from or written."""
        self._since: dict[str, float] = {}
        self._marked: dict[str, float] = {}
        self.basis = ""
        """What `PENDING` flags are computed under (a subclass names its settings)."""

    # -- what a state publishes (the subclass's) ----------------------------------------

    def _quantity(self, key: str, state: S) -> int:
        raise NotImplementedError

    def _last_quantity(self, state: S) -> int | None:
        raise NotImplementedError

    def _differs(self, key: str, state: S) -> bool:
        raise NotImplementedError

    def _publication(
        self,
        key: str,
        state: S,
        partition: int,
        wall: datetime,
        since: float | None,
        marked: float | None,
    ) -> Publication[U] | None:
        """The publication of a due key, or None when it would repeat the last one
        (never for a key not yet confirmed by this instance)."""
        raise NotImplementedError

    def _record(self, state: S, update: U) -> None:
        """Note an acknowledged publication in the key's state."""
        raise NotImplementedError

    # -- publishing ----------------------------------------------------------------------

    def due(self, now: float, wall: datetime, *, everything: bool = False) -> list[Publication[U]]:
        """Publications of the keys due at ``now`` (all pending ones with ``everything``);
        nothing is recorded yet."""
        keys = self.coalescer.drain() if everything else self.coalescer.due(now)
        out: list[Publication[U]] = []
        for key in keys:
            since = self._since.pop(key, None)
            marked = self._marked.pop(key, None)
            state = self.store.get(key)
            partition = self.store.partition_of(key)
            if state is None or partition is None or partition not in self.active:
                continue  # revoked meanwhile: the new owner re-marks it
            pub = self._publication(key, state, partition, wall, since, marked)
            if pub is not None:
                out.append(pub)
        return out

    def published(self, pubs: Iterable[Publication[U]]) -> list[StateWrite[S]]:
        """Record acknowledged publications; returns the state writes that keep them."""
        writes: list[StateWrite[S]] = []
        for pub in pubs:
            state = self.store.get(pub.key)
            if state is None or self.store.partition_of(pub.key) != pub.partition:
                continue
            self._record(state, pub.update)
            self.coalescer.confirm(pub.key)
            if pub.partition in self.active:
                writes.append(
                    StateWrite(pub.key, pub.partition, state, self._flags(pub.key, state))
                )
        return writes

    def unpublished(self, pubs: Iterable[Publication[U]], now: float) -> None:
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

    # -- assignment ----------------------------------------------------------------------

    def assigned(self, partitions: Collection[int]) -> None:
        """The new assignment; its partitions are being restored until `recovered`."""
        gone = self.assignment - set(partitions)
        if gone:
            self.revoked(gone)
        self.assignment = set(partitions)
        self.active = set()

    def recovered(self, now: float) -> int:
        """The assignment's tables are restored: publish from them again.

        Marks every key whose state differs from its last publication; returns how many.
        A store that keeps flags hands over only the keys that may (`candidates`).
        """
        self.active = set(self.assignment)
        marked = 0
        checked: dict[str, tuple[int, int]] = {}
        for key, state, partition in self.store.candidates(self.active, PENDING, self.basis):
            flags = self._flags(key, state)
            if flags & PENDING:
                self._mark(key, state, now)
                marked += 1
            checked[key] = (flags, partition)
            if len(checked) >= CHECK_CHUNK:
                self.store.checked(checked, {})
                checked = {}
        self.store.checked(checked, dict.fromkeys(self.active, self.basis))
        return marked

    def revoked(self, partitions: Collection[int]) -> None:
        """Partitions taken away: forget their keys, pending changes and states."""
        gone = set(partitions)
        keys = list(self.store.keys_in(gone))
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

    def items_active(self) -> Iterator[tuple[str, S, int]]:
        return self.store.items_in(self.active)

    # -- helpers -------------------------------------------------------------------------

    def misplaced(self, key: str, held: bool, partition: int) -> DecodeError | None:
        """Why an input of ``key`` found on ``partition`` cannot apply here (its state
        lives on the partition it is ``held`` on, else on its default partition), or None."""
        home = self.store.partition_of(key) if held else None
        if home is None and self.partition_for is not None:
            home = self.partition_for(key)
        if home is not None and home != partition:
            return wrong_partition(partition, home)
        return None

    def _note(
        self, key: str, since: float | None, state: S, now: float, *, reached_zero: bool = False
    ) -> None:
        """A change applied to ``key``: keep its oldest source time and mark it.

        ``reached_zero``: the changes noted at once (a batch's, all at ``now``) took the
        key's figure to 0 on the way, which marks it as a drop to 0 would, whatever the
        figure is now."""
        if since is not None:
            held = self._since.get(key)
            if held is None or since < held:
                self._since[key] = since
        self._mark(key, state, now, 0 if reached_zero else None)

    def _flags(self, key: str, state: S) -> int:
        """`StateWrite.flags` of a state (a subclass may add its own)."""
        return PENDING if self._differs(key, state) else 0

    def _mark(self, key: str, state: S, now: float, quantity: int | None = None) -> None:
        """Mark ``key`` changed; ``quantity``: the figure to judge a drop to 0 by, if not
        the state's now."""
        self._marked.setdefault(key, now)
        figure = self._quantity(key, state) if quantity is None else quantity
        self.coalescer.mark(key, now, figure, self._last_quantity(state))


def wrong_partition(found: int, home: int) -> DecodeError:
    """An input on another partition than Kafka's default partitioner gives its key."""
    return DecodeError(
        f"found on partition {found}, but Kafka's default partitioner (murmur2) "
        f"puts this key on partition {home}: produce with the default partitioner "
        "(librdkafka: partitioner=murmur2_random)",
        reason="wrong_partition",
    )
