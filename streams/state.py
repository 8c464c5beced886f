"""The inventory state table: Faust table of `KeyState`, written once per key per batch.

Faust's own `table[key] = value` needs a current stream event and takes the changelog
partition from it. Our writes happen per batch (events of several partitions) and from
timers (flush, expiry), so `StateTable.put` names the partition explicitly: the key's
source partition, which is what recovery hands back to the key's owner. `write` sends
the records straight to the producer and waits for the broker: Faust's `send_soon`
buffer is never awaited before a commit's offsets (and, under steady traffic, made
every commit wait for a buffer that never empties).

`KeyState` values are held packed: the table keeps each key's changelog bytes (the
value it last wrote or recovered) and decodes on access. Decoded states live in a
bounded LRU, and every state handed out since the last `write` is pinned until that
write (the engine mutates what `get` returns and names it in the batch's writes), so
a change is never lost to an eviction. Measured with `bench/scale.py`: a decoded
`KeyState` costs about 2 KB, its bytes about 150 (README "Performance").
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, MutableMapping
from typing import Any, Protocol

import faust
from aiokafka.partitioner import murmur2
from faust.serializers import codecs

from models.inventory import KeyState
from streams.faustcompat import key_partitions, rebuild_changelog_topic


class Write(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def state(self) -> Any: ...


STATE_CODEC = "invsync-keystate"
KEY_CODEC = "invsync-utf8"
DECODED_KEYS = 20_000
"""Decoded states kept beyond the pinned ones: the hot keys of a Zipf-like load."""


class _StateCodec(codecs.Codec):
    """A state class's own `to_bytes()` / `from_bytes()`."""

    def __init__(self, state_class: Any) -> None:
        super().__init__()
        self.state_class = state_class

    def _dumps(self, s: Any) -> bytes:
        data: bytes = s.to_bytes()
        return data

    def _loads(self, s: bytes) -> Any:
        return self.state_class.from_bytes(s)


class _Utf8Codec(codecs.Codec):
    def _dumps(self, s: Any) -> bytes:
        return s.encode("utf-8") if isinstance(s, str) else bytes(s)

    def _loads(self, s: bytes) -> Any:
        return s.decode("utf-8")


def register_state_codec(name: str, state_class: Any) -> None:
    """Name a codec for a state class with `to_bytes()` and `from_bytes()` (a
    `StateTable`'s ``value_codec``; the table then holds decoded states)."""
    codecs.register(name, _StateCodec(state_class))


register_state_codec(STATE_CODEC, KeyState)
codecs.register(KEY_CODEC, _Utf8Codec())


def _exact(value: bytes) -> bytes:
    """A copy of exactly its length: orjson's output keeps a 4 KB allocation behind it
    (measured: 4.8 KB per key held, 0.6 KB with the copy; bench/scale.py)."""
    return memoryview(value).tobytes()


def default_partition(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as Java and aiokafka producers use it."""
    hashed: int = murmur2(key.encode("utf-8"))
    return (hashed & 0x7FFFFFFF) % partitions


class StateTable:
    """A thin front over a Faust table that knows each key's partition.

    Values are `KeyState` by default (held packed); `value_codec="json"` holds plain JSON
    values, a codec of `register_state_codec` decoded states.
    """

    def __init__(
        self,
        app: faust.App,
        name: str,
        partitions: int,
        value_codec: str = STATE_CODEC,
        *,
        global_: bool = False,
        decoded_keys: int = DECODED_KEYS,
    ) -> None:
        factory: Any = app.GlobalTable if global_ else app.Table
        table: Any = factory(
            name,
            partitions=partitions,
            help=f"per-key {name} (DESIGN.md 'Inventory semantics')",
        )
        # Faust takes serializers from model types only: set ours, then rebuild the
        # changelog topic (already created on registration) so recovery decodes with them.
        self.packed = value_codec == STATE_CODEC
        table.key_serializer = KEY_CODEC
        # Packed: the store holds the changelog bytes as recovered, decoded on access.
        table.value_serializer = "raw" if self.packed else value_codec
        rebuild_changelog_topic(table)
        self.app = app
        self.table = table
        self.changelog = table.changelog_topic.get_topic_name()
        self._dumps = codecs.get_codec(value_codec).dumps
        self.partitions = partitions
        # One key -> partition map: the memory store's (recovered keys) also gets ours.
        self._partition_of: MutableMapping[str, int] = key_partitions(table)
        self._pinned: dict[str, Any] = {}
        self._decoded: OrderedDict[str, Any] = OrderedDict()
        self.decoded_keys = decoded_keys

    def get(self, key: str) -> Any:
        """The key's state; a packed one is decoded and pinned until the next `write`."""
        if not self.packed:
            return self.table.data.get(key)
        state = self._pinned.get(key)
        if state is None:
            state = self._decoded.pop(key, None)
            if state is None:
                raw = self.table.data.get(key)
                if raw is None:
                    return None
                state = KeyState.from_bytes(raw)
            self._pinned[key] = state
        return state

    def _peek(self, key: str, raw: Any) -> Any:
        """A state to read (not pinned): a change to it must be `hold`-ed."""
        if not self.packed:
            return raw
        state = self._pinned.get(key)
        if state is None:
            state = self._decoded.get(key)
        return KeyState.from_bytes(raw) if state is None else state

    def put(self, key: str, state: Any, partition: int) -> None:
        """Store and write to the changelog partition of the key's source partition."""
        self.hold(key, state, partition)
        if self.packed:
            self.table.data[key] = _exact(self._dumps(state))
        self.table.send_changelog(partition, key, state)

    def hold(self, key: str, state: Any, partition: int) -> None:
        """Keep locally; a `put` or `write` of the key must follow before the batch ends."""
        self._partition_of[key] = partition
        if not self.packed:
            self.table.data[key] = state
            return
        self._pinned[key] = state
        if key not in self.table.data:
            self.table.data[key] = _exact(self._dumps(state))

    async def write(self, writes: Iterable[Write]) -> None:
        """Hold and write each state (the last one per key) and wait for the broker."""
        latest = {w.key: w for w in writes}
        send = self.app.producer.send
        acks = []
        data = self.table.data
        for key, w in latest.items():
            self.hold(key, w.state, w.partition)
            value = self._dumps(w.state)
            if self.packed:
                data[key] = _exact(value)
            acks.append(
                await send(
                    self.changelog,
                    key.encode("utf-8"),
                    value,
                    partition=w.partition,
                    timestamp=None,
                    headers=None,
                )
            )
        self._unpin()
        if acks:
            await asyncio.gather(*acks)

    def _unpin(self) -> None:
        """The batch is written: its states become evictable (most recently used last)."""
        if not self._pinned:
            return
        decoded = self._decoded
        for key, state in self._pinned.items():
            decoded[key] = state
            decoded.move_to_end(key)
        self._pinned.clear()
        while len(decoded) > self.decoded_keys:
            decoded.popitem(last=False)

    def partition_of(self, key: str) -> int | None:
        """The partition of a key held here, else None."""
        known = self._partition_of.get(key)
        if known is not None:
            return known
        recovered = key_partitions(self.table).get(key)
        if recovered is not None:
            return int(recovered)
        if key in self.table.data:
            return default_partition(key, self.partitions)
        return None

    def items_in(self, partitions: Collection[int]) -> Iterator[tuple[str, Any, int]]:
        """Keys (with state and partition) that live on the given partitions."""
        for key, raw in list(self.table.data.items()):
            partition = self.partition_of(key)
            if partition is not None and partition in partitions:
                yield key, self._peek(key, raw), partition

    def drop_partitions(self, partitions: Collection[int]) -> None:
        """Forget the keys of revoked partitions: if they come back, Faust restores them
        from the changelog, and nothing of a former ownership may linger meanwhile."""
        wanted = set(partitions)
        recovered = key_partitions(self.table)
        for key in list(self.table.data.keys()):
            if self.partition_of(key) in wanted:
                self.table.data.pop(key, None)
                self._partition_of.pop(key, None)
                recovered.pop(key, None)
                self._pinned.pop(key, None)
                self._decoded.pop(key, None)
