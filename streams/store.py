"""The inventory state on local disk (RocksDB through `rocksdict`), trusted only up to the
changelog offset it records.

A restarted worker reopens this store and reads only the changelog records after the
offset each partition records, instead of the whole changelog (README "Performance").

The rule it keeps: **the offset of a partition is written in the same atomic RocksDB
write batch as the data it covers**, and data is written only once the changelog holds
it (our own writes after the broker acknowledged them, or records read back from the
changelog). So a SIGKILL at any moment leaves either the batch and its offset or
neither: never data the changelog does not hold, never an offset ahead of the data.
Before the first assignment the store is checked against the changelog (`validate`): a
partition whose offset is at or past the changelog's end (the topic was recreated, the
broker's data wiped) or before its start (records deleted) is emptied and restored from
the changelog as a new one would be; a store that cannot be opened is removed.

Layout (one database, four column families):
  default  key -> partition (2 bytes, big-endian) + the changelog value (`KeyState` bytes)
  flags    key -> flags (1 byte) + partition: `PENDING` (state differs from its last
           publication), `RESERVED` (holds reservations), `UNCHECKED` (read back from the
           changelog: either may hold). A key with no flag has no entry.
  meta     b"offset:<p>" -> changelog offset the partition reflects (ASCII);
           b"basis:<p>"  -> what the PENDING flags of the partition were computed under
           (the safety-stock settings): another basis means every key must be checked;
           b"sku-index"  -> present once the sku family covers every key.
  sku      length of a SKU (4 bytes) + the SKU + key -> b"", for every SKU the key may
           hold (each part after a ``:``, `models.lookup.SkuIndex`): the pre-order
           lookup's index, written in the same batches as the keys it indexes.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    ColumnFamily,
    Options,
    Rdict,
    WriteBatch,
)

from models.errors import InvsyncError

log = logging.getLogger(__name__)

PENDING = 1
RESERVED = 2
UNCHECKED = 4
CACHE_BYTES = 32 * 1024 * 1024
"""RocksDB block cache: decoded states live in `StateTable`'s own LRU above it."""
WRITE_BUFFER_BYTES = 2 * 1024 * 1024
MEMTABLES_BYTES = 8 * 1024 * 1024
"""All column families' memtables together (each would otherwise keep its own two). 32 MB
(8 MB each) cost the worker 10-12 MB of RSS in `make bench` for no throughput; at
1,000,000 keys 8 MB applied as fast (README "Performance")."""

SKU_INDEXED = b"sku-index"
"""meta: the sku family covers every key (absent in a store written before it)."""

Record = tuple[bytes, bytes | None, int, int]
"""A changelog record to apply: (key, value or None for a tombstone, partition, offset)."""


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    opts.set_max_write_buffer_number(2)
    opts.set_db_write_buffer_size(MEMTABLES_BYTES)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(CACHE_BYTES))
    table.set_bloom_filter(10, True)
    opts.set_block_based_table_factory(table)
    return opts


class StoreLocked(InvsyncError):
    """The state store is open in another process."""


def _pairs(db: Rdict) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of a raw-mode database or column family (bytes both)."""
    return cast(Iterator[tuple[bytes, bytes]], iter(db.items()))


_PARTS = [p.to_bytes(2, "big") for p in range(1024)]


def _part(partition: int) -> bytes:
    return _PARTS[partition]


class KeyStore:
    """Key states on disk by partition, each partition with the changelog offset it
    reflects. Synchronous; every method is quick except `validate`'s wipes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: Rdict | None = None
        self._flags: ColumnFamily | None = None
        self._meta: ColumnFamily | None = None
        self._flags_db: Rdict | None = None
        self._meta_db: Rdict | None = None
        self._sku: ColumnFamily | None = None
        self._sku_db: Rdict | None = None
        self._offsets: dict[int, int] = {}
        self.validated = False

    # -- opening ---------------------------------------------------------------------

    def open(self) -> None:
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except Exception as exc:
            self.close()
            if "lock" in str(exc).lower():  # another process has it: never remove that one
                raise StoreLocked(
                    f"the state store {self.path} is in use by another process "
                    "(each worker needs its own INVSYNC_DATA_DIR)"
                ) from exc
            log.warning("state store %s cannot be opened (%s): removing it", self.path, exc)
            shutil.rmtree(self.path, ignore_errors=True)
            self._open()

    def _open(self) -> None:
        cfs = {name: Options(raw_mode=True) for name in ("flags", "meta", "sku")}
        db = Rdict(
            str(self.path),
            options=_options(),
            column_families=cfs,
            access_type=AccessType.read_write(),
        )
        self._db = db
        self._flags = db.get_column_family_handle("flags")
        self._meta = db.get_column_family_handle("meta")
        meta = self._meta_db = db.get_column_family("meta")
        self._flags_db = db.get_column_family("flags")
        self._sku = db.get_column_family_handle("sku")
        self._sku_db = db.get_column_family("sku")
        offsets: dict[int, int] = {}
        for name, value in _pairs(meta):
            if name.startswith(b"offset:"):
                offsets[int(name[7:])] = int(value)
        self._offsets = offsets
        if meta.get(SKU_INDEXED) is None:  # a store from before the index: build it once
            self._build_sku_index()

    def close(self) -> None:
        if self._db is not None:
            self._flags = self._meta = self._sku = None
            self._flags_db = self._meta_db = self._sku_db = None
            try:
                self._db.close()
            finally:
                self._db = None

    @property
    def db(self) -> Rdict:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    # -- the changelog offsets ---------------------------------------------------------

    def offset(self, partition: int) -> int | None:
        """The last changelog offset the partition's data reflects (None: nothing)."""
        self.open()
        return self._offsets.get(partition)

    def offsets(self) -> Mapping[int, int]:
        self.open()
        return dict(self._offsets)

    def validate(self, earliest: Mapping[int, int], end: Mapping[int, int]) -> list[int]:
        """Empty every partition the changelog no longer vouches for; return them.

        ``earliest``/``end``: the changelog's first offset and next offset per partition
        (a partition missing from ``end``: the changelog has no such partition)."""
        wiped = []
        for partition, offset in sorted(self.offsets().items()):
            stop = end.get(partition)
            start = earliest.get(partition, 0)
            if stop is None or offset >= stop or offset < start - 1:
                log.warning(
                    "state store: partition %d records changelog offset %d, but the "
                    "changelog holds offsets %s..%s: restoring it from the changelog",
                    partition,
                    offset,
                    start,
                    None if stop is None else stop - 1,
                )
                self.wipe(partition)
                wiped.append(partition)
        self.validated = True
        return wiped

    def wipe(self, partition: int) -> None:
        """Forget a partition: its data, flags and offset, in one batch."""
        db = self.db
        part = _part(partition)
        batch = WriteBatch(raw_mode=True)
        sku_cf = self._cf_sku()
        for key, value in _pairs(db):
            if value[:2] == part:
                batch.delete(key)
                for entry in sku_entries(key):
                    batch.delete(entry, sku_cf)
        for key, value in _pairs(self._cf("flags")):
            if value[1:3] == part:
                batch.delete(key, self._flags)
        batch.delete(f"offset:{partition}".encode(), self._meta)
        batch.delete(f"basis:{partition}".encode(), self._meta)
        db.write(batch)
        self._offsets.pop(partition, None)

    # -- reading ---------------------------------------------------------------------

    def get(self, key: bytes) -> tuple[int, bytes] | None:
        """(partition, value) of a key."""
        found = self.db.get(key)
        if found is None:
            return None
        return int.from_bytes(found[:2], "big"), found[2:]

    def flags_of(self, key: bytes) -> int:
        """The flags recorded for a key (0: none)."""
        found = self._cf("flags").get(key)
        return 0 if found is None else int(found[0])

    def items(self, partitions: Collection[int]) -> Iterator[tuple[bytes, int, bytes]]:
        """(key, partition, value) of every key on ``partitions``."""
        wanted = {_part(p) for p in partitions}
        if not wanted:
            return
        for key, value in _pairs(self.db):
            head = value[:2]
            if head in wanted:
                yield key, int.from_bytes(head, "big"), value[2:]

    def flagged(self, partitions: Collection[int], mask: int) -> Iterator[tuple[bytes, int]]:
        """(key, partition) of every key on ``partitions`` with a flag of ``mask``."""
        wanted = {_part(p) for p in partitions}
        if not wanted:
            return
        for key, value in _pairs(self._cf("flags")):
            if value[0] & mask and value[1:3] in wanted:
                yield key, int.from_bytes(value[1:3], "big")

    def find(self, sku: bytes, partitions: Collection[int]) -> Iterator[tuple[bytes, int, bytes]]:
        """(key, partition, value) of every key on ``partitions`` that may hold ``sku``."""
        prefix = len(sku).to_bytes(4, "big") + sku
        index = self._cf("sku")
        db = self.db
        for entry in cast(Iterator[bytes], iter(index.keys(from_key=prefix))):
            if not entry.startswith(prefix):
                break
            key = entry[len(prefix) :]
            found = db.get(key)
            if found is None:
                continue
            partition = int.from_bytes(found[:2], "big")
            if partition in partitions:
                yield key, partition, found[2:]

    def basis(self, partition: int) -> str | None:
        found = self._cf("meta").get(f"basis:{partition}".encode())
        return None if found is None else bytes(found).decode()

    def _cf(self, name: str) -> Rdict:
        self.open()
        found = {"flags": self._flags_db, "meta": self._meta_db, "sku": self._sku_db}[name]
        assert found is not None
        return found

    # -- writing ---------------------------------------------------------------------

    def write(
        self,
        entries: Iterable[tuple[bytes, int, bytes, int | None]],
        offsets: Mapping[int, int],
    ) -> None:
        """Our own changelog writes, once acknowledged: (key, partition, value, flags;
        None: the flags recorded stand) and the highest acknowledged offset per
        partition, in one atomic batch."""
        batch = WriteBatch(raw_mode=True)
        flags_cf = self._cf_flags()
        sku_cf = self._cf_sku()
        for key, partition, value, flags in entries:
            part = _part(partition)
            batch.put(key, part + value)
            for entry in sku_entries(key):
                batch.put(entry, b"", sku_cf)
            if flags:
                batch.put(key, bytes([flags]) + part, flags_cf)
            elif flags is not None:
                batch.delete(key, flags_cf)
        self._commit(batch, offsets)

    def apply(self, records: Iterable[Record]) -> None:
        """Changelog records read back (recovery, standby), in offset order, in one atomic
        batch with the offsets they bring each partition to. Their flags are unknown."""
        batch = WriteBatch(raw_mode=True)
        flags_cf = self._cf_flags()
        sku_cf = self._cf_sku()
        offsets: dict[int, int] = {}
        for key, value, partition, offset in records:
            part = _part(partition)
            if value is None:
                batch.delete(key)
                batch.delete(key, flags_cf)
                for entry in sku_entries(key):
                    batch.delete(entry, sku_cf)
            else:
                batch.put(key, part + value)
                batch.put(key, bytes([UNCHECKED]) + part, flags_cf)
                for entry in sku_entries(key):
                    batch.put(entry, b"", sku_cf)
            offsets[partition] = max(offset, offsets.get(partition, -1))
        self._commit(batch, offsets)

    def reflag(self, flags: Mapping[bytes, tuple[int, int]], basis: Mapping[int, str]) -> None:
        """Set the flags of checked keys (key -> (flags, partition)) and record what the
        partitions' flags are now computed under. Local only: no offset moves."""
        batch = WriteBatch(raw_mode=True)
        flags_cf = self._cf_flags()
        for key, (value, partition) in flags.items():
            if value:
                batch.put(key, bytes([value]) + _part(partition), flags_cf)
            else:
                batch.delete(key, flags_cf)
        for partition, text in basis.items():
            batch.put(f"basis:{partition}".encode(), text.encode(), self._meta)
        self.db.write(batch)

    def _cf_flags(self) -> ColumnFamily:
        self.open()
        assert self._flags is not None
        return self._flags

    def _cf_sku(self) -> ColumnFamily:
        self.open()
        assert self._sku is not None
        return self._sku

    def _build_sku_index(self) -> None:
        """Index every key of the store by SKU (a store written before the index)."""
        assert self._db is not None and self._sku is not None and self._meta is not None
        batch = WriteBatch(raw_mode=True)
        keys = 0
        for key, _ in _pairs(self._db):
            for entry in sku_entries(key):
                batch.put(entry, b"", self._sku)
            keys += 1
        batch.put(SKU_INDEXED, b"1", self._meta)
        self._db.write(batch)
        if keys:
            log.info("state store %s: %d keys indexed by SKU", self.path, keys)

    def _commit(self, batch: WriteBatch, offsets: Mapping[int, int]) -> None:
        for partition, offset in offsets.items():
            batch.put(f"offset:{partition}".encode(), str(offset).encode(), self._meta)
        self.db.write(batch)
        self._offsets.update(offsets)


def sku_entries(key: bytes) -> Iterator[bytes]:
    """The sku family's entries of a key: one for every SKU it may hold."""
    start = key.find(b":")
    while start >= 0:
        sku = key[start + 1 :]
        yield len(sku).to_bytes(4, "big") + sku + key
        start = key.find(b":", start + 1)


def records_of(events: Iterable[Any]) -> Iterator[Record]:
    """Faust changelog events as store records (raw key and value bytes)."""
    for event in events:
        msg = event.message
        yield msg.key, msg.value, msg.partition, msg.offset


def group_offsets(acks: Iterable[Any]) -> dict[int, int]:
    """The highest offset per partition among acknowledged `RecordMetadata`."""
    out: dict[int, int] = defaultdict(lambda: -1)
    for meta in acks:
        out[meta.partition] = max(out[meta.partition], meta.offset)
    return dict(out)
