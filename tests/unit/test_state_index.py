"""The inventory table's SKU index stays exact whatever writes or drops its keys: our own
writes, Faust's changelog recovery (tombstones too), Faust's clean-up after recovery,
and a revocation — driven through Faust's real memory store."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from models.inventory import KeyState
from models.lookup import IndexedDict
from streams.state import StateTable
from streams.store import SKU_INDEXED, KeyStore

PARTITIONS = 3
LOCS = ["L1", "L2", "W:H"]
SKUS = ["A", "H:A", "B"]


class _Producer:
    async def send(self, topic: str, key: bytes, value: bytes, **kw: Any) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


@dataclass
class _Message:
    value: bytes | None
    partition: int


@dataclass
class _Event:
    """What Faust's recovery hands the store: a changelog record."""

    key: bytes
    value: bytes | None
    message: _Message


@dataclass
class _W:
    key: str
    partition: int
    state: KeyState


def _table() -> StateTable:
    app = faust.App(f"t-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1", store="memory://")
    table = StateTable(app, "inventory-state", PARTITIONS, decoded_keys=2, sku_index=True)
    table.app = type("A", (), {"producer": _Producer()})()  # type: ignore[assignment]
    return table


def _state(location: str, on_hand: int) -> KeyState:
    return KeyState(on_hand=on_hand, location=location)


def _record(key: str, location: str, on_hand: int | None, partition: int) -> _Event:
    value = None if on_hand is None else _state(location, on_hand).to_bytes()
    return _Event(key.encode(), value, _Message(value, partition))


key_choice = st.tuples(st.sampled_from(LOCS), st.sampled_from(SKUS), st.integers(0, PARTITIONS - 1))
op = st.one_of(
    st.tuples(st.just("write"), st.lists(key_choice, min_size=1, max_size=4)),
    st.tuples(
        st.just("recover"),
        st.lists(st.tuples(key_choice, st.booleans()), min_size=1, max_size=6),
    ),
    st.tuples(st.just("recovered"), st.sets(st.integers(0, PARTITIONS - 1))),
    st.tuples(st.just("drop"), st.sets(st.integers(0, PARTITIONS - 1), min_size=1)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op, max_size=20))
def test_find_equals_a_scan_after_writes_recovery_and_drops(ops: list[tuple[str, Any]]) -> None:
    asyncio.run(_run(ops))


async def _run(ops: list[tuple[str, Any]]) -> None:
    table = _table()
    store = table.table.data
    assert isinstance(store.data, IndexedDict)
    for n, (kind, arg) in enumerate(ops):
        if kind == "write":
            await table.write([_W(f"{loc}:{sku}", p, _state(loc, n)) for loc, sku, p in arg])
        elif kind == "recover":  # a changelog batch; a tombstone deletes its key
            batch = [
                _record(f"{loc}:{sku}", loc, None if tomb else n, p) for (loc, sku, p), tomb in arg
            ]
            store.apply_changelog_batch(batch, lambda k: k.decode(), lambda v: v)
        elif kind == "recovered":  # Faust drops the keys of partitions not active
            active = {TP("changelog", p) for p in arg}
            await store.on_recovery_completed(active, set())
        else:
            table.drop_partitions(arg)
        everything = set(range(PARTITIONS))
        for sku in SKUS:
            found = {key for key, _, _ in table.find(sku, everything)}
            scanned = {key for key in store if key.endswith(":" + sku)}
            assert found == scanned, (kind, sku)
            for key, state, partition in table.find(sku, everything):
                assert state.location == KeyState.from_bytes(store[key]).location
                assert partition == table.partition_of(key)
                assert [k for k, _, _ in table.find(sku, everything - {partition})].count(key) == 0


def test_find_reads_only_the_partitions_asked_and_the_newest_state() -> None:
    async def run() -> None:
        table = _table()
        await table.write([_W("L1:A", 0, _state("L1", 5)), _W("L2:A", 1, _state("L2", 6))])
        pinned = table.get("L1:A")
        pinned.on_hand = 9  # changed by a batch, not yet written
        assert [(k, s.on_hand, p) for k, s, p in table.find("A", {0})] == [("L1:A", 9, 0)]
        assert sorted(k for k, _, _ in table.find("A", {0, 1})) == ["L1:A", "L2:A"]

    asyncio.run(run())


def test_an_indexed_dict_indexes_through_every_dict_method() -> None:
    d = IndexedDict()
    d["L:A"] = 1
    d.update({"L:B": 2}, **{"M:A": 3})
    d.update([("N:A", 4)])
    d.setdefault("O:A", 5)
    d |= {"P:A": 6}
    assert set(d.index.candidates("A")) == {"L:A", "M:A", "N:A", "O:A", "P:A"}
    del d["L:A"]
    assert d.pop("M:A") == 3
    assert d.pop("missing", None) is None
    d.popitem()  # P:A, the last one set
    assert set(d.index.candidates("A")) == {"N:A", "O:A"}
    d.clear()
    assert len(d.index) == 0


# -- the same index on disk (streams/store.py's sku column family) ---------------------


@dataclass
class _DiskMessage:
    key: bytes
    value: bytes | None
    partition: int
    offset: int


@dataclass
class _DiskEvent:
    message: _DiskMessage


class _AckingProducer:
    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    async def send(self, topic: str, key: bytes, value: bytes, **kw: Any) -> asyncio.Future[Any]:
        partition = kw["partition"]
        offset = self.next.get(partition, 0)
        self.next[partition] = offset + 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(type("M", (), {"partition": partition, "offset": offset})())
        return fut


def _disk_table(path: Path) -> StateTable:
    app = faust.App(f"t-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1", store="memory://")
    table = StateTable(
        app, "inventory-state", PARTITIONS, decoded_keys=2, disk=KeyStore(path), sku_index=True
    )
    table.app = type("A", (), {"producer": _AckingProducer()})()  # type: ignore[assignment]
    return table


disk_op = st.one_of(
    st.tuples(st.just("write"), st.lists(key_choice, min_size=1, max_size=4)),
    st.tuples(
        st.just("recover"),
        st.lists(st.tuples(key_choice, st.booleans()), min_size=1, max_size=6),
    ),
    st.tuples(st.just("drop"), st.sets(st.integers(0, PARTITIONS - 1), min_size=1)),
    st.tuples(st.just("wipe"), st.integers(0, PARTITIONS - 1)),
    st.tuples(st.just("reopen"), st.none()),
)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(disk_op, max_size=16))
def test_on_disk_find_equals_a_scan_after_writes_recovery_wipes_and_reopens(
    ops: list[tuple[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run_disk(Path(tmp) / "s", ops))


async def _run_disk(path: Path, ops: list[tuple[str, Any]]) -> None:
    table = _disk_table(path)
    disk = table.disk
    assert disk is not None
    offset = 1000
    for n, (kind, arg) in enumerate(ops):
        if kind == "write":
            await table.write([_W(f"{loc}:{sku}", p, _state(loc, n)) for loc, sku, p in arg])
        elif kind == "recover":  # changelog records read back; a tombstone deletes its key
            batch = []
            for (loc, sku, p), tomb in arg:
                offset += 1
                value = None if tomb else _state(loc, n).to_bytes()
                batch.append(_DiskEvent(_DiskMessage(f"{loc}:{sku}".encode(), value, p, offset)))
            table.table.apply_changelog_batch(batch)
        elif kind == "drop":  # revoked: on disk the keys stay
            table.drop_partitions(arg)
        elif kind == "wipe":  # the changelog no longer vouches for the partition
            disk.wipe(arg)
        else:
            disk.close()
            disk.open()
        everything = set(range(PARTITIONS))
        scanned_all = {kb.decode(): p for kb, p, _ in disk.items(everything)}
        for sku in SKUS:
            for partitions in (everything, {0}, {1, 2}):
                found = {key for key, _, _ in table.find(sku, partitions)}
                scanned = {
                    k for k, p in scanned_all.items() if k.endswith(":" + sku) and p in partitions
                }
                assert found == scanned, (kind, sku, partitions)
        for key, state, _ in table.find("A", everything):
            assert state.location == key.rsplit(":", 1)[0] or key.endswith(":H:A")
    disk.close()


def test_a_store_written_before_the_index_is_indexed_when_opened(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "s")
    store.write([(b"L1:A", 0, b"x", 0), (b"W:H:A", 1, b"y", 0), (b"L2:B", 2, b"z", 0)], {0: 5})
    sku = store._cf("sku")
    for entry in list(sku.keys()):  # as a store from before the sku family left it
        del sku[entry]
    del store._cf("meta")[SKU_INDEXED]
    del sku  # a column family handle keeps the database open
    assert list(store.find(b"A", {0, 1, 2})) == []
    store.close()
    again = KeyStore(tmp_path / "s")
    assert sorted(k for k, _, _ in again.find(b"A", {0, 1, 2})) == [b"L1:A", b"W:H:A"]
    assert [k for k, _, _ in again.find(b"H:A", {0, 1, 2})] == [b"W:H:A"]
    assert [k for k, _, _ in again.find(b"A", {1})] == [b"W:H:A"]
    again.close()
