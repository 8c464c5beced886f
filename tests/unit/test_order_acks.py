"""In-order acks: a partition's offsets are acked only once every earlier one finished."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from streams.order_acks import InOrderAcks


@dataclass
class FakeMessage:
    tp: str
    offset: int


@dataclass
class FakeEvent:
    message: FakeMessage
    log: list[tuple[str, int]] = field(default_factory=list)

    def ack(self) -> bool:
        self.log.append((self.message.tp, self.message.offset))
        return True


def test_a_later_event_waits_for_an_earlier_one() -> None:
    log: list[tuple[str, int]] = []
    acks = InOrderAcks()
    events = [FakeEvent(FakeMessage("p0", o), log) for o in range(3)]
    other = FakeEvent(FakeMessage("p1", 0), log)
    for e in [*events, other]:
        acks.add(e)
    assert acks.finish(events[2]) == 0
    assert acks.finish(other) == 1  # another partition does not wait
    assert acks.finish(events[1]) == 0
    assert acks.finish(events[0]) == 3
    assert log == [("p1", 0), ("p0", 0), ("p0", 1), ("p0", 2)]


def test_clear_returns_what_was_never_acked_and_late_finishes_are_ignored() -> None:
    log: list[tuple[str, int]] = []
    acks = InOrderAcks()
    events = [FakeEvent(FakeMessage("p0", o), log) for o in range(3)]
    for e in events:
        acks.add(e)
    acks.finish(events[0])
    assert acks.clear() == events[1:]
    assert acks.finish(events[1]) == 0
    assert log == [("p0", 0)] and len(acks) == 0


@given(st.integers(1, 40), st.integers(0, 2**32))
def test_acked_offsets_are_always_a_prefix(n: int, seed: int) -> None:
    log: list[tuple[str, int]] = []
    acks = InOrderAcks()
    events = [FakeEvent(FakeMessage("p", o), log) for o in range(n)]
    for e in events:
        acks.add(e)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    finished: set[int] = set()
    for i in order:
        acks.finish(events[i])
        finished.add(i)
        acked = [o for _, o in log]
        assert acked == list(range(len(acked)))  # a prefix, in order
        assert all(o in finished for o in acked)
    assert len(log) == n
