"""`merge_batches`: how the fast path joins queued fetches into handler calls."""

from __future__ import annotations

from dataclasses import dataclass

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from streams.fastpath import merge_batches

A, B = TP("stock", 0), TP("stock", 1)


@dataclass(frozen=True)
class Msg:
    offset: int
    generation_id: int


def msgs(gen: int, *offsets: int) -> list[Msg]:
    return [Msg(o, gen) for o in offsets]


def test_batches_of_one_partition_join_in_offset_order() -> None:
    out = merge_batches([(A, msgs(1, 0, 1)), (B, msgs(1, 5)), (A, msgs(1, 2))])  # type: ignore[list-item]
    assert [(tp, [m.offset for m in ms]) for tp, ms in out] == [(A, [0, 1, 2]), (B, [5])]


def test_combine_gives_one_call_named_by_the_last_partition() -> None:
    out = merge_batches([(A, msgs(1, 0)), (B, msgs(1, 5)), (A, msgs(1, 1))], combine=True)  # type: ignore[list-item]
    assert [(tp, [m.offset for m in ms]) for tp, ms in out] == [(A, [0, 1, 5])]


def test_generations_are_never_merged_so_a_stale_batch_drops_whole() -> None:
    out = merge_batches([(A, msgs(1, 0)), (A, msgs(2, 0, 1)), (B, [])], combine=True)  # type: ignore[list-item]
    assert [(tp, [(m.generation_id, m.offset) for m in ms]) for tp, ms in out] == [
        (A, [(1, 0)]),
        (A, [(2, 0), (2, 1)]),
    ]


@given(
    st.lists(st.tuples(st.sampled_from([A, B]), st.integers(1, 3), st.integers(0, 4)), max_size=12),
    st.booleans(),
)
def test_every_message_is_kept_once_and_each_partition_in_order(
    spec: list[tuple[TP, int, int]], combine: bool
) -> None:
    """Generations arrive in order (as a consumer sees them); offsets grow per partition."""
    spec = sorted(spec, key=lambda s: s[1])
    next_offset = {A: 0, B: 0}
    queued = []
    for tp, gen, n in spec:
        queued.append((tp, msgs(gen, *range(next_offset[tp], next_offset[tp] + n))))
        next_offset[tp] += n
    out = merge_batches(queued, combine=combine)  # type: ignore[arg-type]
    flat_in = [(tp, m) for tp, ms in queued for m in ms]
    assert sorted((m.generation_id, m.offset, id(m)) for _, m in flat_in) == sorted(
        (m.generation_id, m.offset, id(m)) for _, ms in out for m in ms
    )
    for _, ms in out:
        assert len({m.generation_id for m in ms}) <= 1


# --- ack_batch: Faust's Consumer.ack, a batch at a time ---------------------------------


class _Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return topic != "no-acks"


class _App:
    topics = _Topics()


class _Consumer:
    """The attributes `Consumer.ack` reads and writes."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        from collections import defaultdict
        from weakref import WeakSet

        self.app = _App()
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None, committed)
        self._acked_index: dict[TP, set[int]] = defaultdict(set)
        self._acked: dict[TP, list[int]] = defaultdict(list)
        self._unacked_messages: WeakSet[object] = WeakSet()
        self._n_acked = 0
        self._waiting_for_ack = None

    def seen(self) -> tuple[object, ...]:
        return (
            dict(self._acked_index),
            dict(self._acked),
            self._n_acked,
            len(self._unacked_messages),
        )


class _Message:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.offset = topic, offset
        self.tp = TP(topic, partition)
        self.acked = False


messages_st = st.lists(
    st.tuples(st.sampled_from(["stock", "no-acks"]), st.integers(0, 1), st.integers(0, 8)),
    max_size=30,
)


@given(specs=messages_st, committed=st.one_of(st.none(), st.integers(0, 6)), pre=st.integers(0, 5))
def test_ack_batch_does_what_faust_consumer_ack_does_per_message(
    specs: list[tuple[str, int, int]], committed: int | None, pre: int
) -> None:
    from faust.transport.consumer import Consumer

    from streams.faustcompat import ack_batch

    outcome = []
    for ack_all in (lambda c, ms: [Consumer.ack(c, m) for m in ms], ack_batch):
        consumer = _Consumer({TP("stock", 0): committed})
        msgs = [_Message(*spec) for spec in specs]
        for m in msgs[:pre]:
            m.acked = True  # acked before (a repeat)
        for m in msgs:
            consumer._unacked_messages.add(m)
        ack_all(consumer, msgs)  # type: ignore[operator]
        outcome.append((consumer.seen(), [m.acked for m in msgs]))
    assert outcome[0] == outcome[1]
