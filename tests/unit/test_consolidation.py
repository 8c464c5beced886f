"""Consolidated ATP per SKU (models/consolidation.py): the newest record per location,
summed and published like a per-location key. The property test drives the engine the
worker runs through any order, duplication, crash and rebalance of its input."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.consolidation import (
    ConsolidatedUpdate,
    ConsolidationEngine,
    Held,
    LocationRecord,
    SkuState,
    StateWrite,
    decode_location_record,
    take,
)
from models.errors import DecodeError
from models.events import InventoryUpdate
from models.publishing import MemoryStore

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WALL = T0 + timedelta(hours=1)


def record(sku: str, loc: str, qty: int, version: int, at: float = 0.0) -> InventoryUpdate:
    return InventoryUpdate(
        locationCode=loc,
        channelSkuCode=sku,
        quantity=qty,
        onHand=qty,
        reserved=0,
        version=version,
        asOf=T0 + timedelta(seconds=at),
        publishedAt=T0,
    )


def partition_of(sku: str) -> int:
    return 0 if sku < "M" else 1


def engine(
    store: MemoryStore[SkuState] | None = None, debounce: float = 0.5
) -> ConsolidationEngine:
    e = ConsolidationEngine(
        store if store is not None else MemoryStore(),
        debounce_s=debounce,
        max_delay_s=5.0,
        partition_for=partition_of,
    )
    e.assigned({0, 1})
    e.recovered(0.0)
    return e


def feed(e: ConsolidationEngine, *updates: InventoryUpdate, now: float = 0.0) -> Any:
    batch = [LocationRecord(partition_of(u.channelSkuCode), n, u) for n, u in enumerate(updates)]
    return e.apply(batch, now)


def flush(
    e: ConsolidationEngine, now: float, *, everything: bool = False
) -> list[ConsolidatedUpdate]:
    pubs = e.due(now, WALL + timedelta(seconds=now), everything=everything)
    e.published(pubs)
    return [p.update for p in pubs]


def test_only_a_higher_version_replaces_what_a_location_holds() -> None:
    state = SkuState()
    assert take(state, record("A", "WH1", 5, 10))
    assert not take(state, record("A", "WH1", 7, 10))  # the same version again
    assert not take(state, record("A", "WH1", 7, 9))  # a losing worker's late record
    assert take(state, record("A", "WH1", 2, 11))
    assert state.quantities() == {"WH1": 2}


def test_a_sku_in_several_locations_is_published_once_with_the_sum() -> None:
    e = engine()
    applied = feed(
        e, record("A", "WH1", 5, 10, 1), record("A", "WH2", 3, 20, 3), record("A", "W:H", 0, 30, 2)
    )
    assert applied.records == {"newer": 3}
    assert [(w.key, w.partition) for w in applied.writes] == [("A", 0)]
    assert flush(e, 0.4) == []  # within the debounce
    [update] = flush(e, 0.6)
    assert (update.channelSkuCode, update.quantity) == ("A", 8)
    assert update.locations == {"WH1": 5, "WH2": 3, "W:H": 0}
    assert update.asOf == T0 + timedelta(seconds=3)
    assert update.version == int((WALL + timedelta(seconds=0.6)).timestamp() * 1_000_000)
    assert orjson.loads(update.encode())["locations"] == {"WH1": 5, "WH2": 3, "W:H": 0}


def test_stale_and_repeated_records_change_nothing() -> None:
    e = engine()
    feed(e, record("A", "WH1", 5, 10), record("A", "WH2", 3, 20))
    flush(e, 1.0)
    applied = feed(e, record("A", "WH1", 9, 9), record("A", "WH2", 3, 20), now=1.0)
    assert applied.records == {"stale": 2} and applied.writes == []
    assert e.pending == 0


def test_a_drop_to_zero_is_published_at_once_other_changes_wait() -> None:
    e = engine(debounce=10.0)
    feed(e, record("A", "WH1", 2, 1), record("A", "WH2", 1, 1))
    flush(e, 20.0)
    feed(e, record("A", "WH1", 0, 2), now=20.0)  # total 1: waits
    assert flush(e, 20.1) == []
    feed(e, record("A", "WH2", 0, 2), now=20.2)  # total 0: at once
    [update] = flush(e, 20.2)
    assert (update.quantity, update.locations) == (0, {"WH1": 0, "WH2": 0})


def test_a_move_between_locations_is_published_a_round_trip_is_not() -> None:
    e = engine(debounce=0.0)
    feed(e, record("A", "WH1", 3, 1), record("A", "WH2", 1, 1))
    flush(e, 0.0)
    feed(e, record("A", "WH1", 2, 2), record("A", "WH2", 2, 2), now=1.0)
    [moved] = flush(e, 1.0)
    assert (moved.quantity, moved.locations) == (4, {"WH1": 2, "WH2": 2})
    feed(e, record("A", "WH1", 3, 3), record("A", "WH1", 2, 4), now=2.0)  # +1 -1
    assert flush(e, 2.0) == []


def test_versions_increase_even_when_the_clock_does_not() -> None:
    e = engine(debounce=0.0)
    versions = []
    for n in range(3):
        feed(e, record("A", "WH1", n + 1, n + 1))
        versions += [u.version for u in flush(e, 0.0)]
    assert versions == sorted(set(versions)) and len(versions) == 3


def test_a_record_on_another_partition_than_its_sku_is_refused() -> None:
    e = engine()
    [(refused, error)] = e.apply([LocationRecord(1, 0, record("A", "WH1", 1, 1))], 0.0).rejected
    assert refused.update.channelSkuCode == "A" and error.reason == "wrong_partition"


def test_after_an_assignment_a_touched_sku_is_published_even_if_unchanged() -> None:
    """The state may say "published 5" while that publication's successor was lost."""
    store: MemoryStore[SkuState] = MemoryStore()
    store.hold("A", SkuState({"WH1": Held(5, 1, 0.0)}, {"WH1": 5}, 100), 0)
    e = engine(store, debounce=0.0)
    assert e.pending == 0  # equal to its last publication: not marked on recovery
    feed(e, record("A", "WH1", 6, 2), record("A", "WH1", 5, 3))
    [update] = flush(e, 0.0)
    assert update.quantity == 5 and update.version > 100


def test_a_restored_sku_that_differs_from_its_publication_is_marked() -> None:
    store: MemoryStore[SkuState] = MemoryStore()
    store.hold("A", SkuState({"WH1": Held(5, 1, 0.0)}, {"WH1": 4}, 100), 0)
    store.hold("B", SkuState({"WH1": Held(5, 1, 0.0)}, {"WH1": 5}, 100), 0)
    e = engine(store, debounce=0.0)
    assert [u.channelSkuCode for u in flush(e, 0.0)] == ["A"]


def test_state_bytes_round_trip() -> None:
    state = SkuState({"WH1": Held(5, 7, 1.5), "W:H": Held(0, 9, 2.0)}, {"WH1": 5}, 12)
    assert SkuState.from_bytes(state.to_bytes()) == state
    with pytest.raises(ValueError, match="format"):
        SkuState.from_bytes(b"[9, {}, null, 0]")


def test_records_are_checked_against_their_key() -> None:
    value = record("A", "WH1", 1, 1).encode()
    assert decode_location_record(b"WH1:A", value, by_sku=False).quantity == 1
    assert decode_location_record(b"A", value, by_sku=True).locationCode == "WH1"
    for key, by_sku in ((b"A", False), (b"WH1:A", True), (None, True)):
        with pytest.raises(DecodeError) as info:
            decode_location_record(key, value, by_sku=by_sku)
        assert info.value.reason == "key_mismatch"
    with pytest.raises(DecodeError, match="tombstone"):
        decode_location_record(b"A", None, by_sku=True)
    with pytest.raises(DecodeError):
        decode_location_record(b"A", b'{"quantity": -1}', by_sku=True)


# --- property: any delivery of the per-location records ends at the newest ones -------

SKUS = ["A", "B", "Q"]
LOCATIONS = ["WH1", "WH2", "W:H"]


@dataclass
class Sent:
    sku: str
    version: int
    quantity: int
    locations: dict[str, int]
    lost: bool = False


@dataclass
class Entry:
    incarnation: int
    position: int
    data: bytes
    sent: int | None


@dataclass
class Sim:
    """The consolidation agent as `streams/consolidation.py` runs it: apply, publish,
    wait for acks, record, write state; offsets committed only after that."""

    rng: random.Random
    debounce: float
    now: float = 0.0
    log: list[InventoryUpdate] = field(default_factory=list)
    position: int = 0
    committed: int = 0
    incarnation: int = 0
    changelog: dict[str, list[Entry]] = field(default_factory=dict)
    wire: list[Sent] = field(default_factory=list)
    engine: ConsolidationEngine = field(init=False)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        store: MemoryStore[SkuState] = MemoryStore()
        for sku, entries in self.changelog.items():
            if entries:
                store.hold(sku, SkuState.from_bytes(entries[-1].data), partition_of(sku))
        self.engine = ConsolidationEngine(
            store, debounce_s=self.debounce, max_delay_s=1.0, partition_for=partition_of
        )
        self.engine.assigned({0, 1})
        self.engine.recovered(self.now)

    def flush(self, writes: list[StateWrite], *, everything: bool = False) -> None:
        wall = WALL + timedelta(seconds=self.now)
        pubs = self.engine.due(self.now, wall, everything=everything)
        sent: dict[str, int] = {}
        for p in pubs:
            u = p.update
            self.wire.append(Sent(u.channelSkuCode, u.version, u.quantity, u.locations))
            sent[p.key] = len(self.wire) - 1
        for w in {w.key: w for w in [*writes, *self.engine.published(pubs)]}.values():
            entry = Entry(self.incarnation, self.position, w.state.to_bytes(), sent.get(w.key))
            self.changelog.setdefault(w.key, []).append(entry)

    def process_next(self) -> None:
        update = self.log[self.position]
        self.position += 1
        inp = LocationRecord(partition_of(update.channelSkuCode), self.position, update)
        self.flush(self.engine.apply([inp], self.now).writes)

    def crash(self, fraction: float) -> None:
        """Commit somewhere up to here, lose a random tail of later writes, restart."""
        self.committed += int(fraction * (self.position - self.committed))
        for entries in self.changelog.values():
            durable = sum(
                1
                for e in entries
                if e.incarnation < self.incarnation or e.position <= self.committed
            )
            keep = self.rng.randint(durable, len(entries))
            for lost in entries[keep:]:
                if lost.sent is not None and self.rng.random() < 0.5:
                    self.wire[lost.sent].lost = True
            del entries[keep:]
        self.incarnation += 1
        self.now += 1.0
        self.restart()
        caught_up, self.position = self.position, self.committed
        while self.position < caught_up:
            self.process_next()


histories = st.lists(
    st.tuples(st.sampled_from(SKUS), st.sampled_from(LOCATIONS), st.integers(0, 9)),
    min_size=1,
    max_size=25,
)
deliveries = st.lists(
    st.one_of(
        st.tuples(st.just("next"), st.integers(0, 10**6)),
        st.tuples(st.just("again"), st.integers(0, 10**6)),
        st.tuples(st.just("tick"), st.sampled_from([0.0, 0.2, 0.6, 2.0])),
        st.tuples(st.just("crash"), st.floats(0.0, 1.0)),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, deliveries, st.sampled_from([0.0, 0.5]), st.integers(0, 2**32 - 1))
def test_any_delivery_ends_at_the_sum_of_the_newest_records(
    history: list[tuple[str, str, int]], ops: list[tuple[Any, ...]], debounce: float, seed: int
) -> None:
    """The per-location stage's records (versions increasing per location) arrive in any
    order, repeated, across crashes: the newest consolidated record of each SKU holds
    each location's newest quantity and their sum, and a SKU's versions increase."""
    records = [record(s, loc, q, version=n + 1, at=n) for n, (s, loc, q) in enumerate(history)]
    pending = list(records)
    sim = Sim(random.Random(seed), debounce)
    for op in ops:
        if op[0] == "next" and pending:
            sim.log.append(pending.pop(op[1] % len(pending)))  # any order
            sim.process_next()
        elif op[0] == "again" and sim.log:
            sim.log.append(sim.log[op[1] % len(sim.log)])  # a replay or a late duplicate
            sim.process_next()
        elif op[0] == "tick":
            sim.now += op[1]
            sim.flush([])
        elif op[0] == "crash":
            sim.crash(op[1])
    for rest in pending:
        sim.log.append(rest)
        sim.process_next()
    sim.now += 0.001
    sim.flush([], everything=True)

    newest: dict[str, dict[str, InventoryUpdate]] = {}
    for r in records:
        held = newest.setdefault(r.channelSkuCode, {}).get(r.locationCode)
        if held is None or r.version > held.version:
            newest[r.channelSkuCode][r.locationCode] = r
    for sku, by_location in newest.items():
        want = {loc: r.quantity for loc, r in by_location.items()}
        delivered = [s for s in sim.wire if s.sku == sku and not s.lost]
        assert delivered, f"{sku}: never published"
        latest = max(delivered, key=lambda s: s.version)
        assert (latest.locations, latest.quantity) == (want, sum(want.values())), sku
        versions = [s.version for s in sim.wire if s.sku == sku]
        assert versions == sorted(set(versions)), f"{sku}: versions not strictly increasing"
