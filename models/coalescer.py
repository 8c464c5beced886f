"""Debounce and coalesce ATP publications (DESIGN.md "Debounce and coalesce").

The coalescer is derived, in-memory state: it is rebuilt empty after a rebalance
and the agent re-marks the keys whose state differs from their last publication.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass


def should_publish(atp: int, last_published: int | None, *, confirmed: bool = True) -> bool:
    """Publish unless the ATP ends where it was last published (+1 -1 sends nothing).

    ``confirmed=False`` forces a publication: after a crash the stored
    ``last_published`` may predate a publication whose state write was lost, so the
    first flush of a key on a newly assigned partition always sends.
    """
    return not confirmed or last_published is None or atp != last_published


@dataclass(slots=True)
class _Dirty:
    first: float
    last: float
    seq: int
    immediate: bool = False


class Coalescer:
    """Tracks dirty keys; a key is due when quiet for ``debounce_s`` or dirty for
    ``max_delay_s``, or at once when it runs out of stock.

    ``mark`` is O(1): a heap entry is pushed only when a key becomes dirty, and
    ``due`` re-pushes an entry whose key was marked again since (lazy deletion).
    Times must come from one monotonic clock.
    """

    __slots__ = ("_confirmed", "_debounce", "_dirty", "_heap", "_immediate", "_max_delay", "_seq")

    def __init__(self, debounce_s: float, max_delay_s: float) -> None:
        if debounce_s < 0 or max_delay_s < 0:
            raise ValueError("debounce_s and max_delay_s must be >= 0")
        self._debounce = debounce_s
        self._max_delay = max_delay_s
        self._dirty: dict[str, _Dirty] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._immediate: dict[str, float] = {}
        self._confirmed: set[str] = set()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._dirty)

    def __contains__(self, key: object) -> bool:
        return key in self._dirty

    def _deadline(self, d: _Dirty) -> float:
        return min(d.last + self._debounce, d.first + self._max_delay)

    def mark(self, key: str, now: float, atp: int, last_published: int | None) -> bool:
        """Note that ``key`` changed; return True when it became due immediately.

        A drop to 0 from anything else (or from an unconfirmed publication) skips the
        window: overselling costs more than an extra message.
        """
        immediate = atp == 0 and (last_published != 0 or key not in self._confirmed)
        d = self._dirty.get(key)
        if d is None:
            self._seq += 1
            d = _Dirty(first=now, last=now, seq=self._seq)
            self._dirty[key] = d
            heapq.heappush(self._heap, (self._deadline(d), d.seq, key))
        else:
            d.last = now
        if immediate and not d.immediate:
            d.immediate = True
            self._immediate[key] = now
        return d.immediate

    def due(self, now: float) -> list[str]:
        """Return the keys to flush now and forget them (the caller publishes or not)."""
        out = list(self._immediate)
        for key in out:
            del self._dirty[key]
        self._immediate.clear()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            d = self._dirty.get(key)
            if d is None or d.seq != seq:
                continue  # flushed or discarded since this entry was pushed
            deadline = self._deadline(d)
            if deadline > now:
                heapq.heappush(heap, (deadline, seq, key))
                continue
            del self._dirty[key]
            out.append(key)
        return out

    def drain(self) -> list[str]:
        """Every pending key, due or not (shutdown, partition revoke)."""
        return self.due(math.inf)

    def next_deadline(self) -> float | None:
        """When ``due`` may next return something; never later than the true time."""
        if self._immediate:
            return min(self._immediate.values())
        heap = self._heap
        while heap:
            _, seq, key = heap[0]
            d = self._dirty.get(key)
            if d is not None and d.seq == seq:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def discard(self, key: str) -> None:
        """Stop tracking ``key``; its heap entry goes stale and is skipped later."""
        self._dirty.pop(key, None)
        self._immediate.pop(key, None)

    def drop_partition(self, keys: Iterable[str]) -> None:
        """Forget keys of a revoked partition, including that they were confirmed."""
        for key in keys:
            self.discard(key)
            self._confirmed.discard(key)

    def clear(self) -> None:
        self._dirty.clear()
        self._immediate.clear()
        self._heap.clear()
        self._confirmed.clear()

    def confirm(self, key: str) -> None:
        """Record that ``key`` was published by this instance (its state write then stands)."""
        self._confirmed.add(key)

    def is_confirmed(self, key: str) -> bool:
        return key in self._confirmed

    def should_publish(self, key: str, atp: int, last_published: int | None) -> bool:
        return should_publish(atp, last_published, confirmed=key in self._confirmed)
