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
