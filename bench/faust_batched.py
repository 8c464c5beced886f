"""Batched Faust processing with correct table changelog partitions (sketch to lift
into ``streams/``).

Faust's table write path (``Table.on_key_set`` -> ``partition_for_key``,
faust/tables/base.py:305-324 and table.py:83-91) takes the changelog partition
from ``faust.streams.current_event()`` -- the context variable
``faust.streams._current_event`` (streams.py:76-83).  A batch from
``Stream.take_events()`` can mix partitions, and after it is yielded the context
var points at whatever event the stream saw last.  So:

* ``partition_batches()`` splits every ``take_events()`` batch per source
  topic-partition (order inside a partition is kept);
* ``acting_as(event)`` makes ``event`` the current event for the table writes
  of its partition, so the changelog record goes to that partition (and a
  RocksDB store writes to that partition's DB).

``take_events()`` acks (and so lets the consumer commit) a batch's events only
after the ``async for`` body that consumed the batch has finished
(faust/streams.py:536-546), i.e. after the table writes and ``send`` calls of
the body were *enqueued* -- see FINDINGS.md for what a commit does and does not
wait for.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from typing import Any

from faust.streams import _current_event
from faust.types import TP, EventT, StreamT

__all__ = ["acting_as", "coalesce", "partition_batches"]


@contextlib.contextmanager
def acting_as(event: EventT) -> Iterator[EventT]:
    """Make ``event`` Faust's current event inside the block.

    Every table ``__setitem__``/``__delitem__`` inside the block sends its
    changelog record to ``event.message.partition``.  Use an event of the same
    source partition as the keys you write.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield event
    finally:
        _current_event.reset(token)


async def partition_batches(
    stream: StreamT, max_events: int = 10_000, within: float = 0.05
) -> AsyncIterator[tuple[TP, list[EventT]]]:
    """Yield ``(tp, events)`` per source partition for every batch of the stream.

    ``max_events``/``within`` are passed to ``take_events``.  Events of one
    partition keep their offset order.  The events of a ``take_events`` batch
    are acked after the consumer's body has run for *all* partitions of that
    batch.
    """
    async for events in stream.take_events(max_events, within):
        groups: dict[TP, list[EventT]] = {}
        for ev in events:
            tp = ev.message.tp
            lst = groups.get(tp)
            if lst is None:
                groups[tp] = [ev]
            else:
                lst.append(ev)
        for tp, evs in groups.items():
            yield tp, evs


def coalesce(
    table: MutableMapping[Any, Any],
    events: list[EventT],
    fold: Callable[[Any, EventT], tuple[Any, bool]],
    key_of: Callable[[EventT], Any] = lambda e: e.key,
) -> dict[Any, Any]:
    """Fold a single-partition batch into per-key states, then write each
    changed key once, with the batch's last event as the current event.

    ``fold(state_or_None, event) -> (new_state, changed)``.  Returns
    ``{key: state}`` of the keys that changed (to publish).
    """
    states: dict[Any, Any] = {}
    changed: dict[Any, Any] = {}
    get = table.get
    for ev in events:
        key = key_of(ev)
        st = states[key] if key in states else get(key)
        st, ch = fold(st, ev)
        states[key] = st
        if ch:
            changed[key] = st
    if changed:
        with acting_as(events[-1]):
            for key, st in changed.items():
                table[key] = st
    return changed
