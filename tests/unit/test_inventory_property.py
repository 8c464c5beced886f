"""Property: duplicates, replays, crashes and any flush timing end where one clean pass does.

A small simulated agent drives the real rules and coalescer over a generated log of
stock events and reservation commands. Crashes rewind the consumer to a committed
position and restore each key's state from a random point of its changelog at or
after that position (writes after the commit may be lost), and lose the in-memory
coalescer. Outputs are delivered before the state write that records them, so a
lost state write may or may not have lost its output too.

At the end, what a consumer of ``marketplace.inventory`` holds for each key (the
highest version) must equal a naive dict-based recomputation over the
de-duplicated log, and each key's versions must strictly increase.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import inventory
from models.engine import Input, InventoryEngine, MemoryStore, StateWrite
from models.events import InventoryCommand, StockEvent, command_id
from models.inventory import KeyState, SafetyStock

KEYS = [("L1", "A"), ("L1", "B"), ("L2", "A")]
ORDERS = ["O1", "O2"]
SMALL_RING = 4
"""A ring this small makes replays beyond it rely on the stored offsets."""
RESEND_WINDOW = 3
"""Re-sends repeat one of the last few messages: producer retries, within the ring."""
SAFETY = SafetyStock(default=1, per_location={"L2": 0}, per_key={"L1:B": 2})
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
STOCK, COMMANDS = "stock/0", "commands/0"

Message = tuple[str, int, StockEvent | InventoryCommand]  # source, offset, payload


def key_of(i: int) -> str:
    return f"{KEYS[i][0]}:{KEYS[i][1]}"


def safety(key: str) -> int:
    location, sku = key.split(":")
    return SAFETY.for_key(location, sku)


# --- the naive reference ------------------------------------------------------------


def reference(log: list[Message]) -> dict[str, tuple[int, int]]:
    """(on_hand, reserved) per key after one pass, each eventId counted once.

    Computed per topic, then combined: each topic on its own (Kafka keeps each one's
    order), so the answer cannot depend on how the two interleaved (DESIGN.md
    "Reservations and snapshots").
    """
    keys = {msg.key for _, _, msg in log}
    return {key: _reference_key(key, log) for key in keys}


def _reference_key(key: str, log: list[Message]) -> tuple[int, int]:
    # Stock alone: the last base (a SNAPSHOT after the previous one), what moved after
    # it, and per order all units picked and those picked after the base.
    base_at: float | None = None
    cutoff: float | None = None  # an AVAILABLE base absorbs orders accepted before this
    on_hand = 0
    picked: dict[str, int] = {}
    picked_after: dict[str, int] = {}
    closed: set[str] = set()
    seen: set[str] = set()
    for _, _, msg in log:
        if not isinstance(msg, StockEvent) or msg.key != key or msg.eventId in seen:
            continue
        seen.add(msg.eventId)
        t = msg.occurredAt.timestamp()
        fresh = base_at is None or t > base_at
        if msg.type == "SNAPSHOT" and fresh:
            base_at, on_hand, picked_after = t, msg.quantity, {}
            cutoff = t if msg.basis == "AVAILABLE" else None
        code = msg.orderCode
        if code is not None and msg.type == "DELTA" and msg.quantity < 0:
            picked[code] = picked.get(code, 0) - msg.quantity
            if fresh:
                picked_after[code] = picked_after.get(code, 0) - msg.quantity
        else:
            if code is not None:
                closed.add(code)
            if msg.type == "DELTA" and fresh:
                on_hand += msg.quantity
    # Commands alone: the first RESERVE; CANCEL (largest) and ACCEPT (first) after it.
    quantity: dict[str, int] = {}
    cancelled: dict[str, int] = {}
    accepted: dict[str, float] = {}
    for _, _, msg in log:
        if not isinstance(msg, InventoryCommand) or msg.key != key:
            continue
        code = msg.orderCode
        if msg.type == "RESERVE":
            quantity.setdefault(code, msg.quantity or 0)
        elif msg.type == "RELEASE":
            closed.add(code)
        elif code in quantity and msg.type == "CANCEL":
            cancelled[code] = max(cancelled.get(code, 0), msg.cancelledQuantity or 0)
        elif code in quantity and msg.type == "ACCEPT":
            accepted.setdefault(code, msg.occurredAt.timestamp())

    def absorbed(code: str) -> bool:
        return cutoff is not None and code in accepted and accepted[code] < cutoff

    held = 0
    for code in set(quantity) | set(picked) | closed:
        if absorbed(code):
            continue
        on_hand -= picked_after.get(code, 0)
        if code not in closed:
            held += max(0, quantity.get(code, 0) - cancelled.get(code, 0) - picked.get(code, 0))
    return on_hand, held


# --- the worker: the engine the worker runs, over a simulated log and changelog -----


@dataclass
class Write:
    incarnation: int
    position: int
    data: bytes
    publication: int | None = None  # index into Sim.wire


@dataclass
class Publication:
    key: str
    version: int
    quantity: int
    lost: bool = False


def partition_of(key: str) -> int:
    return 0 if key.startswith("L1:") else 1


@dataclass
class Sim:
    """One worker running `InventoryEngine` as `streams.inventory` does: apply, publish,
    wait for acks, record, write state; offsets committed only after that."""

    debounce: float
    max_delay: float
    rng: random.Random
    now: float = 1_700_000_000.0
    log: list[Message] = field(default_factory=list)
    position: int = 0
    committed: int = 0
    incarnation: int = 0
    changelog: dict[str, list[Write]] = field(default_factory=dict)
    wire: list[Publication] = field(default_factory=list)
    engine: InventoryEngine = field(init=False)
    store: MemoryStore = field(init=False)
    published_while_restoring: int = 0

    def __post_init__(self) -> None:
        self.restart()

    @property
    def states(self) -> dict[str, KeyState]:
        return self.store.states

    def restart(self) -> None:
        """A new incarnation: restore every key's newest changelog record, then assign."""
        self.store = MemoryStore()
        self.engine = InventoryEngine(
            self.store,
            stock_topic=STOCK.split("/")[0],
            safety=SAFETY,
            debounce_s=self.debounce,
            max_delay_s=self.max_delay,
            reservation_ttl_s=10**9,
            partition_for=partition_of,
        )
        self.engine.assigned({0, 1})
        for key, writes in self.changelog.items():
            if writes:
                self.store.hold(key, KeyState.from_bytes(writes[-1].data), partition_of(key))
        self.engine.recovered(self.now)

    def write(self, writes: list[StateWrite], publications: dict[str, int]) -> None:
        """One record per key, as `StateTable.write` sends (the last state wins)."""
        for w in {w.key: w for w in writes}.values():
            entry = Write(
                self.incarnation, self.position, w.state.to_bytes(), publications.get(w.key)
            )
            self.changelog.setdefault(w.key, []).append(entry)

    def flush(self, writes: list[StateWrite] | None = None, *, everything: bool = False) -> None:
        wall = datetime.fromtimestamp(self.now, UTC)
        pubs = self.engine.due(self.now, wall, everything=everything)
        sent: dict[str, int] = {}
        for pub in pubs:
            self.wire.append(Publication(pub.key, pub.update.version, pub.update.quantity))
            sent[pub.key] = len(self.wire) - 1
        self.write([*(writes or []), *self.engine.published(pubs)], sent)

    def process_next(self) -> None:
        source, offset, msg = self.log[self.position]
        self.position += 1
        topic = source.split("/")[0]
        inp = Input(topic, partition_of(msg.key), offset, msg)
        applied = self.engine.apply([inp], self.now)
        assert not applied.rejected, applied.rejected
        self.flush(applied.writes)

    def send(self, source: str, msg: StockEvent | InventoryCommand) -> None:
        offset = sum(1 for s, _, _ in self.log if s == source)
        self.log.append((source, offset, msg))
        self.process_next()

    def crash(self, commit_fraction: float) -> None:
        """Commit somewhere up to here, lose a random tail of later writes, restart."""
        span = self.position - self.committed
        self.committed += int(commit_fraction * span)
        for writes in self.changelog.values():
            durable = sum(
                1
                for w in writes
                if w.incarnation < self.incarnation or w.position <= self.committed
            )
            keep = self.rng.randint(durable, len(writes))
            for lost in writes[keep:]:
                if lost.publication is not None and self.rng.random() < 0.5:
                    self.wire[lost.publication].lost = True
            del writes[keep:]
        self.incarnation += 1
        self.now += 1.0
        self.restart()
        caught_up = self.position
        self.position = self.committed
        while self.position < caught_up:
            self.process_next()
        check_lookup(self)

    def rebalance(self, partition: int, ticks: list[float]) -> None:
        """The partition is revoked and comes back: Faust replays its changelog into the
        store record by record (keys briefly hold older states) while timers tick."""
        self.engine.suspend()
        self.engine.assigned({0, 1} - {partition})
        self.engine.assigned({0, 1})
        queues = {k: list(ws) for k, ws in self.changelog.items() if partition_of(k) == partition}
        replay: list[tuple[str, Write]] = []
        while queues:  # keys interleave at random; each key's records stay in order
            key = self.rng.choice(sorted(queues))
            replay.append((key, queues[key].pop(0)))
            if not queues[key]:
                del queues[key]
        for n, (key, w) in enumerate(replay):
            self.store.hold(key, KeyState.from_bytes(w.data), partition)
            if n < len(ticks):
                self.now += ticks[n]
                before = len(self.wire)
                self.flush()
                self.published_while_restoring += len(self.wire) - before
        self.engine.recovered(self.now)


# --- generated scenarios ------------------------------------------------------------

minutes = st.integers(min_value=0, max_value=5)
# Most traffic on one key, so reservations, picks and cancels meet often.
key_index = st.sampled_from([0, 0, 0, 1, 2])
stock_op = st.tuples(
    st.just("stock"),
    key_index,
    st.sampled_from(["DELTA", "SNAPSHOT"]),
    st.integers(-5, 8),
    st.one_of(st.none(), st.sampled_from(ORDERS)),
    minutes,
    st.sampled_from([None, "ON_HAND", "AVAILABLE"]),  # a SNAPSHOT's basis
)
command_op = st.tuples(
    st.just("command"),
    key_index,
    st.sampled_from(["RESERVE", "CANCEL", "RELEASE", "ACCEPT"]),
    st.sampled_from(ORDERS),
    st.integers(1, 5),
    minutes,
)
resend_op = st.tuples(st.just("resend"), st.integers(0, 10_000))
tick_op = st.tuples(st.just("tick"), st.sampled_from([0.0, 0.1, 0.3, 0.6, 2.0, 6.0]))
crash_op = st.tuples(st.just("crash"), st.floats(0.0, 1.0))
rebalance_op = st.tuples(
    st.just("rebalance"),
    st.sampled_from([0, 1]),
    st.lists(st.sampled_from([0.0, 0.3, 2.0, 6.0]), max_size=4),
)
OP_WEIGHTS = {"stock": 4, "command": 4, "tick": 3, "resend": 1, "crash": 1, "rebalance": 1}
OP_STRATEGIES: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "stock": stock_op,
    "command": command_op,
    "tick": tick_op,
    "resend": resend_op,
    "crash": crash_op,
    "rebalance": rebalance_op,
}
ops = st.lists(
    st.sampled_from([kind for kind, w in OP_WEIGHTS.items() for _ in range(w)]).flatmap(
        OP_STRATEGIES.__getitem__
    ),
    min_size=20,
    max_size=90,
)


@contextmanager
def small_ring() -> Iterator[None]:
    with mock.patch.object(inventory, "RING_SIZE", SMALL_RING):
        yield


def build(op: tuple[Any, ...], n: int) -> tuple[str, StockEvent | InventoryCommand]:
    if op[0] == "stock":
        _, k, kind, qty, order, minute, *rest = op
        location, sku = KEYS[k]
        event = StockEvent(
            eventId=f"e{n}",
            type=kind,
            locationCode=location,
            channelSkuCode=sku,
            quantity=abs(qty) if kind == "SNAPSHOT" else qty,
            occurredAt=T0 + timedelta(minutes=minute),
            basis=rest[0] if rest and kind == "SNAPSHOT" else None,
            orderCode=order,
        )
        return STOCK, event
    _, k, kind, order, qty, minute = op
    location, sku = KEYS[k]
    command = InventoryCommand(
        commandId=command_id(f"oe{n}", 0, kind),
        type=kind,
        orderCode=order,
        locationCode=location,
        channelSkuCode=sku,
        occurredAt=T0 + timedelta(minutes=minute),
        quantity=qty if kind == "RESERVE" else None,
        cancelledQuantity=qty - 1 if kind == "CANCEL" else None,
    )
    return COMMANDS, command


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=ops,
    debounce=st.sampled_from([0.0, 0.5]),
    max_delay=st.sampled_from([0.0, 1.0, 5.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_final_publication_matches_one_clean_pass(
    scenario: list[tuple[Any, ...]], debounce: float, max_delay: float, seed: int
) -> None:
    sim = Sim(debounce, max_delay, random.Random(seed))
    with small_ring():
        for n, op in enumerate(scenario):
            if op[0] in ("stock", "command"):
                sim.send(*build(op, n))
            elif op[0] == "resend" and sim.log:
                recent = sim.log[-RESEND_WINDOW:]
                source, _, msg = recent[op[1] % len(recent)]
                sim.send(source, msg)
            elif op[0] == "tick":
                sim.now += op[1]
                sim.flush()
            elif op[0] == "crash":
                sim.crash(op[1])
            elif op[0] == "rebalance":
                sim.rebalance(op[1], op[2])
        finish(sim)
    check(sim)


def finish(sim: Sim) -> None:
    """Force-flush whatever is still pending, as a clean shutdown would."""
    sim.now += 0.001
    sim.flush(everything=True)


def check_lookup(sim: Sim) -> None:
    """The pre-order lookup answers the ATP of one clean pass over everything consumed,
    published or not (the engine's own state, after crashes and rebalances)."""
    wanted: dict[str, list[tuple[str, int]]] = {}
    for key, (on_hand, held) in reference(sim.log[: sim.position]).items():
        location, sku = key.split(":")
        wanted.setdefault(sku, []).append((location, max(0, on_hand - held - safety(key))))
    found = sim.engine.lookup(["A", "B", "C"])
    assert {s: sorted(r) for s, r in found.items()} == {s: sorted(r) for s, r in wanted.items()}


def check(sim: Sim) -> None:
    assert sim.published_while_restoring == 0, "published from a table being restored"
    check_lookup(sim)
    expected = reference(sim.log)
    for key, (on_hand, held) in expected.items():
        want = max(0, on_hand - held - safety(key))
        delivered = [p for p in sim.wire if p.key == key and not p.lost]
        state = sim.states.get(key)
        if not delivered:
            assert (on_hand, held) == (0, 0), f"{key}: changed but never published"
            continue
        latest = max(delivered, key=lambda p: p.version)
        assert latest.quantity == want, f"{key}: consumer sees {latest.quantity}, want {want}"
        assert state is not None
        assert (state.on_hand, state.last_published_qty) == (on_hand, want)
        versions = [p.version for p in sim.wire if p.key == key]
        assert versions == sorted(set(versions)), f"{key}: versions not strictly increasing"


class Scripted(random.Random):
    """Keeps outputs; loses every write after the commit, or (``keep_writes``) none."""

    def __init__(self, *, keep_writes: bool = False) -> None:
        super().__init__(0)
        self.keep_writes = keep_writes

    def randint(self, a: int, b: int) -> int:
        return b if self.keep_writes else a

    def random(self) -> float:
        return 0.99


def test_lost_publication_write_is_republished() -> None:
    """Published 2, lost that state write; the replay ends back at the stored 4.

    The stored last-published quantity (4) equals the ATP again, yet the consumer
    holds 2: only the first-flush-after-assignment rule sends 4 again.
    """
    sim = Sim(debounce=0.5, max_delay=5.0, rng=Scripted())
    sim.send(*build(("stock", 0, "DELTA", 5, None, 0), 0))  # ATP 4 (safety 1)
    sim.now += 1.0
    sim.flush()
    sim.send(*build(("stock", 0, "DELTA", -2, None, 0), 1))
    sim.now += 1.0
    sim.flush()
    sim.send(*build(("stock", 0, "DELTA", 2, None, 0), 2))
    assert [(p.quantity, p.lost) for p in sim.wire] == [(4, False), (2, False)]
    sim.crash(0.34)  # commit after the first message only
    assert sim.committed == 1
    assert sim.states["L1:A"].last_published_qty == 4
    finish(sim)
    assert [p.quantity for p in sim.wire] == [4, 2, 4]
    check(sim)


def test_replay_beyond_the_ring_relies_on_offsets() -> None:
    sim = Sim(debounce=0.0, max_delay=0.0, rng=Scripted(keep_writes=True))
    with small_ring():
        for n in range(3 * SMALL_RING):
            sim.send(*build(("stock", 0, "DELTA", 1, None, 0), n))
        sim.crash(0.0)  # nothing committed: everything is replayed
        finish(sim)
    assert sim.states["L1:A"].on_hand == 3 * SMALL_RING
    check(sim)


def test_reference_model_sanity() -> None:
    """The reference itself must count duplicates once, absorb only what an AVAILABLE
    snapshot says, and not care which topic came first."""
    log: list[Message] = [
        (STOCK, 0, build(("stock", 0, "DELTA", 8, None, 0), 0)[1]),
        (STOCK, 1, build(("stock", 0, "DELTA", 8, None, 0), 0)[1]),  # same eventId
        (COMMANDS, 0, build(("command", 0, "RESERVE", "O1", 3, 1), 1)[1]),
        (COMMANDS, 1, build(("command", 0, "ACCEPT", "O1", 1, 2), 2)[1]),
        (COMMANDS, 2, build(("command", 0, "RESERVE", "O2", 2, 2), 3)[1]),
        (STOCK, 2, build(("stock", 0, "SNAPSHOT", 6, None, 3, "AVAILABLE"), 4)[1]),
        (STOCK, 3, build(("stock", 0, "DELTA", -1, "O2", 4), 5)[1]),  # a pick of O2
        (STOCK, 4, build(("stock", 0, "DELTA", -3, "O1", 4), 6)[1]),  # absorbed: nothing
    ]
    assert reference(log) == {"L1:A": (5, 1)}
    assert reference(log[2:5] + log[:2] + log[5:]) == reference(log)
    on_hand_count = build(("stock", 0, "SNAPSHOT", 6, None, 3, "ON_HAND"), 4)[1]
    assert reference([*log[:5], (STOCK, 2, on_hand_count), *log[6:]]) == {"L1:A": (2, 1)}
