"""Acks in offset order per partition, for events that finish out of order.

Faust commits a partition up to its first unacked offset, but its gap check lets a
single unacked offset right after the committed one slip (`Consumer._new_offset`:
`min(acked) - committed > 1`), and skips the check when the committed offset is 0.
So an event is acked only when every earlier event of its partition is finished:
a commit can never pass an event still in flight.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class InOrderAcks:
    def __init__(self) -> None:
        self._pending: dict[Any, deque[list[Any]]] = {}  # tp -> [[event, finished], ...]
        self._entry: dict[int, list[Any]] = {}  # id(event) -> its entry

    def add(self, event: Any) -> None:
        """Register a consumed event, in the order of its partition."""
        entry = [event, False]
        self._pending.setdefault(event.message.tp, deque()).append(entry)
        self._entry[id(event)] = entry

    def finish(self, event: Any) -> int:
        """Mark an event finished; ack it and the finished ones after it once nothing
        earlier is pending. Returns how many were acked."""
        entry = self._entry.get(id(event))
        if entry is None:
            return 0  # abandoned by `clear`
        entry[1] = True
        queue = self._pending[event.message.tp]
        acked = 0
        while queue and queue[0][1]:
            done = queue.popleft()[0]
            del self._entry[id(done)]
            done.ack()
            acked += 1
        return acked

    def clear(self) -> list[Any]:
        """Forget everything (flow stopped); returns the events never acked."""
        events = [entry[0] for queue in self._pending.values() for entry in queue]
        self._pending.clear()
        self._entry.clear()
        return events

    def __len__(self) -> int:
        return len(self._entry)
