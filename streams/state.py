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

With a `KeyStore` (`streams/store.py`, the default for the inventory table) the packed
states live on local disk instead of in memory: written there, with the changelog offsets
the broker acknowledged, once the batch's changelog records are acknowledged; restored
from there at a restart, plus the changelog records after those offsets.

The inventory table (``sku_index=True``) also indexes its keys by SKU for the pre-order
lookup, with no scan: on disk the `KeyStore` keeps a SKU column family in the very
batches that write the states; in memory the store's dict is an `IndexedDict`
(`models/lookup.py`), so every key that lands in it or leaves it — our writes, Faust's
changelog recovery, Faust's clean-up after recovery, a revocation — updates the index.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from typing import Any, Protocol

import faust
from aiokafka.partitioner import murmur2
from faust.serializers import codecs

from models.inventory import KeyState
from models.lookup import IndexedDict, SkuIndex
from models.publishing import PENDING
from streams.faustcompat import (
    attach_store,
    key_partitions,
    rebuild_changelog_topic,
    replace_store_dict,
    restore_in_batches,
)
from streams.kafka import acknowledged
from streams.store import UNCHECKED, KeyStore, group_offsets, records_of

log = logging.getLogger(__name__)

Bounds = Callable[[str], Awaitable[tuple[Mapping[int, int], Mapping[int, int]]]]
"""A changelog's (first offsets, end offsets) by partition, asked of the broker."""
BOUNDS_TIMEOUT_S = 30.0


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
        disk: KeyStore | None = None,
        bounds: Bounds | None = None,
        sku_index: bool = False,
    ) -> None:
        """``disk``: keep packed states there (``value_codec`` must be the default);
        ``bounds`` checks it against the changelog before the first assignment."""
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
        # Packed: `KeyState.to_bytes` itself (Faust's codec wrapper cost more than the
        # encoding of a small state, once per state written).
        self._dumps: Callable[[Any], bytes] = (
            KeyState.to_bytes if self.packed else codecs.get_codec(value_codec).dumps
        )
        self.partitions = partitions
        # One key -> partition map: the memory store's (recovered keys) also gets ours.
        self._partition_of: MutableMapping[str, int] = key_partitions(table)
        self._pinned: dict[str, Any] = {}
        self._decoded: OrderedDict[str, Any] = OrderedDict()
        self.decoded_keys = decoded_keys
        self.disk = disk if self.packed else None
        self._flags_of: dict[str, int] = {}
        """Disk flags of the keys held decoded: a write that keeps them writes none."""
        self._bounds = bounds
        self.read_back = 0
        """Changelog records read back into the disk store (recovery, standbys)."""
        if self.disk is not None:
            attach_store(
                table,
                persisted_offset=self._persisted_offset,
                apply_changelog_batch=self._apply_changelog,
                before_rebalance=self._validate,
            )
            restore_in_batches(app, table)
        self.sku_index = sku_index
        self.index: SkuIndex | None = None
        if sku_index and self.disk is None:
            self._indexed = IndexedDict()
            replace_store_dict(table, self._indexed)
            self.index = self._indexed.index

    def get(self, key: str) -> Any:
        """The key's state; a packed one is decoded and pinned until the next `write`."""
        if not self.packed:
            return self.table.data.get(key)
        state = self._pinned.get(key)
        if state is None:
            state = self._decoded.pop(key, None)
            if state is None:
                raw = self._raw(key)
                if raw is None:
                    return None
                state = KeyState.from_bytes(raw)
            self._pinned[key] = state
        return state

    def _raw(self, key: str) -> bytes | None:
        """The key's packed state, from memory or disk (noting its partition)."""
        if self.disk is None:
            raw: bytes | None = self.table.data.get(key)
            return raw
        kb = key.encode("utf-8")
        found = self.disk.get(kb)
        if found is None:
            return None
        self._partition_of[key] = found[0]
        self._flags_of[key] = self.disk.flags_of(kb)
        return found[1]

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
        if self.disk is not None:
            raise TypeError("a table on disk is written with `write` (offsets and data together)")
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
        if self.disk is None and key not in self.table.data:
            self.table.data[key] = _exact(self._dumps(state))

    async def write(self, writes: Iterable[Write]) -> None:
        """Hold and write each state (the last one per key) and wait for the broker."""
        latest = {w.key: w for w in writes}
        send = self.app.producer.send
        acks = []
        data = self.table.data
        disk = self.disk
        entries: list[tuple[bytes, int, bytes, int | None]] = []
        flags_of = self._flags_of
        written: dict[str, int] = {}
        for key, w in latest.items():
            self.hold(key, w.state, w.partition)
            value = self._dumps(w.state)
            if disk is not None:
                flags = written[key] = getattr(w, "flags", 0)
                kept = flags_of.get(key) == flags  # recorded already: write no flags
                entries.append((key.encode("utf-8"), w.partition, value, None if kept else flags))
            elif self.packed:
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
            done = await acknowledged(acks)
            if disk is not None:  # only now: the changelog holds them
                disk.write(entries, group_offsets(done))
                decoded = self._decoded
                for key, flags in written.items():
                    if key in decoded:  # still held: its flags stay known
                        flags_of[key] = flags

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
            key, _ = decoded.popitem(last=False)
            if self.disk is not None:  # on disk, partitions are only known for held keys
                self._partition_of.pop(key, None)
                self._flags_of.pop(key, None)

    def partition_of(self, key: str) -> int | None:
        """The partition of a key held here, else None."""
        known = self._partition_of.get(key)
        if known is not None:
            return known
        if self.disk is not None:
            found = self.disk.get(key.encode("utf-8"))
            return None if found is None else found[0]
        recovered = key_partitions(self.table).get(key)
        if recovered is not None:
            return int(recovered)
        if key in self.table.data:
            return default_partition(key, self.partitions)
        return None

    def items_in(self, partitions: Collection[int]) -> Iterator[tuple[str, Any, int]]:
        """Keys (with state and partition) that live on the given partitions."""
        if self.disk is not None:
            for kb, partition, raw in self.disk.items(partitions):
                key = kb.decode("utf-8")
                yield key, self._peek(key, raw), partition
            for key, state in list(self._pinned.items()):  # new keys not yet written
                held = self._partition_of.get(key, -1)
                if held in partitions and self.disk.get(key.encode("utf-8")) is None:
                    yield key, state, held
            return
        for key, raw in list(self.table.data.items()):
            found = self.partition_of(key)
            if found is not None and found in partitions:
                yield key, self._peek(key, raw), found

    def keys_in(self, partitions: Collection[int]) -> Iterator[str]:
        """Keys that live on the given partitions (no state decoded)."""
        if self.disk is None:
            yield from (key for key, _, _ in self.items_in(partitions))
            return
        for kb, _, _ in self.disk.items(partitions):
            yield kb.decode("utf-8")
        for key in list(self._pinned):
            if self._partition_of.get(key, -1) in partitions:
                yield key

    def candidates(
        self, partitions: Collection[int], flag: int, basis: str
    ) -> Iterator[tuple[str, Any, int]]:
        """Keys whose last write carried ``flag`` (all keys of a partition whose PENDING
        flags were computed under another ``basis``); every key without a disk store."""
        disk = self.disk
        if disk is None:
            yield from self.items_in(partitions)
            return
        every = {p for p in partitions if flag & PENDING and disk.basis(p) != basis}
        if every:
            yield from self.items_in(every)
        for kb, partition in disk.flagged(set(partitions) - every, flag | UNCHECKED):
            key = kb.decode("utf-8")
            state = self._pinned.get(key) or self._decoded.get(key)
            if state is None:
                raw = self._raw(key)
                if raw is None:
                    continue
                self._partition_of.pop(key, None)  # not held: no partition kept
                self._flags_of.pop(key, None)
                state = KeyState.from_bytes(raw)
            yield key, state, partition

    def checked(self, flags: Mapping[str, tuple[int, int]], basis: Mapping[int, str]) -> None:
        if self.disk is not None:
            self.disk.reflag({k.encode("utf-8"): v for k, v in flags.items()}, basis)
            for key, (value, _) in flags.items():
                if key in self._flags_of:
                    self._flags_of[key] = value

    def find(self, sku: str, partitions: Collection[int]) -> Iterator[tuple[str, Any, int]]:
        """Keys (with state, to read ATP only, and partition) on ``partitions`` that may
        hold ``sku``; needs ``sku_index``. On disk, a key appears once its first write is
        acknowledged (a few milliseconds after its first event)."""
        if not self.sku_index:
            raise RuntimeError(f"table {self.table.name} keeps no SKU index")
        if self.disk is not None:
            for kb, held, packed in self.disk.find(sku.encode("utf-8"), partitions):
                name = kb.decode("utf-8")
                yield name, self._readable(name, packed), held
            return
        assert self.index is not None
        data = self._indexed  # the store's own dict: a plain lookup, not Faust's proxy
        for key in self.index.candidates(sku):
            raw = data.get(key)
            if raw is None:
                continue
            partition = self.partition_of(key)
            if partition is not None and partition in partitions:
                yield key, self._readable(key, raw) if self.packed else raw, partition

    def _readable(self, key: str, packed: bytes) -> Any:
        """The key's newest state to read ATP from: the one held decoded, else ``packed``
        decoded without the dedupe ring (3x cheaper)."""
        state = self._pinned.get(key)
        if state is None:
            state = self._decoded.get(key)
        if state is None:
            state = KeyState.from_bytes(packed, dedupe=False)
        return state

    def drop_partitions(self, partitions: Collection[int]) -> None:
        """Forget the keys of revoked partitions: if they come back, Faust restores them
        from the changelog, and nothing of a former ownership may linger meanwhile.
        On disk they stay, with the changelog offset they reflect: a restore reads on
        from there."""
        wanted = set(partitions)
        if self.disk is not None:
            for key in [k for k, p in self._partition_of.items() if p in wanted]:
                self._partition_of.pop(key, None)
                self._flags_of.pop(key, None)
                self._pinned.pop(key, None)
                self._decoded.pop(key, None)
            return
        recovered = key_partitions(self.table)
        for key in list(self.table.data.keys()):
            if self.partition_of(key) in wanted:
                self.table.data.pop(key, None)
                self._partition_of.pop(key, None)
                recovered.pop(key, None)
                self._pinned.pop(key, None)
                self._decoded.pop(key, None)

    # -- the disk store's part in Faust's recovery -----------------------------------------

    def _persisted_offset(self, tp: Any) -> int | None:
        assert self.disk is not None
        return self.disk.offset(tp.partition)

    def _apply_changelog(self, events: Iterable[Any]) -> None:
        """Changelog records Faust read back: to disk with their offsets, and nothing
        decoded from before them is kept."""
        assert self.disk is not None
        batch = list(events)
        self.disk.apply(records_of(batch))
        self.read_back += len(batch)
        for event in batch:
            key = event.message.key
            name = key.decode("utf-8") if isinstance(key, bytes) else str(key)
            self._pinned.pop(name, None)
            self._decoded.pop(name, None)
            self._partition_of.pop(name, None)
            self._flags_of.pop(name, None)

    async def _validate(self) -> None:
        """Before the first assignment: trust the disk store only where the changelog
        still holds what it reflects (`KeyStore.validate`)."""
        disk = self.disk
        if disk is None or disk.validated:
            return
        earliest: Mapping[int, int] = {}
        end: Mapping[int, int] = {}
        try:
            if self._bounds is not None:
                async with asyncio.timeout(BOUNDS_TIMEOUT_S):
                    earliest, end = await self._bounds(self.changelog)
        except Exception as exc:  # noqa: BLE001 - unknown bounds: trust nothing on disk
            log.warning("state store not checked against %s (%r)", self.changelog, exc)
            earliest, end = {}, {}
        wiped = disk.validate(earliest, end)
        kept = {p: o for p, o in disk.offsets().items() if p not in wiped}
        log.info("state store %s: partitions at changelog offsets %s", disk.path, kept)
