"""The inventory state on disk (`streams/store.py`): what it may trust, and when it writes.

The store is written only once the changelog holds what it writes, together with the
changelog offsets that cover it; reopened, it is trusted only up to offsets the
changelog still has. The engine's flags let a restart visit only the keys that may need
publishing (DESIGN.md "Debounce and coalesce": after a rebalance, keys whose state
differs from their last publication are dirty again).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest

from models.engine import InventoryEngine
from models.inventory import KeyState, SafetyStock
from models.publishing import PENDING, RESERVED, StateWrite
from streams.state import StateTable
from streams.store import UNCHECKED, KeyStore, StoreLocked


class _Producer:
    """Acks as the broker's: a future per record, resolved by the test (or at once)."""

    def __init__(self, *, auto: bool = True) -> None:
        self.auto = auto
        self.pending: list[asyncio.Future[Any]] = []
        self.next: dict[int, int] = {}

    async def send(self, topic: str, key: bytes, value: bytes, **kw: Any) -> asyncio.Future[Any]:
        partition = kw["partition"]
        offset = self.next.get(partition, 0)
        self.next[partition] = offset + 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        meta = SimpleNamespace(partition=partition, offset=offset)
        if self.auto:
            fut.set_result(meta)
        else:
            self.pending.append(fut)
            fut.meta = meta  # type: ignore[attr-defined]
        return fut


def _table(path: Path, producer: _Producer | None = None) -> StateTable:
    app = faust.App(f"t-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1", store="memory://")
    table = StateTable(app, "inventory-state", 4, disk=KeyStore(path))
    table.app = SimpleNamespace(producer=producer or _Producer())  # type: ignore[assignment]
    return table


def _state(on_hand: int) -> KeyState:
    return KeyState(on_hand=on_hand, location="L1")


def _w(key: str, partition: int, on_hand: int, flags: int = 0) -> StateWrite:
    return StateWrite(key, partition, _state(on_hand), flags)


async def test_nothing_reaches_disk_before_the_broker_acknowledged_it(tmp_path: Path) -> None:
    producer = _Producer(auto=False)
    table = _table(tmp_path / "s", producer)
    assert table.disk is not None
    write = asyncio.create_task(table.write([_w("L1:A", 1, 5), _w("L1:B", 2, 6)]))
    while len(producer.pending) < 2:
        await asyncio.sleep(0)
    assert table.disk.get(b"L1:A") is None and table.disk.offset(1) is None
    producer.pending[0].set_result(producer.pending[0].meta)  # type: ignore[attr-defined]
    producer.pending[1].set_exception(OSError("broker gone"))
    with pytest.raises(OSError):
        await write
    # One record of the batch failed: the store keeps neither, nor any offset.
    assert table.disk.get(b"L1:A") is None and table.disk.offsets() == {}
    # Acknowledged: data and offsets together.
    producer.auto = True
    await table.write([_w("L1:A", 1, 7)])
    assert table.disk.get(b"L1:A") == (1, _state(7).to_bytes())
    assert table.disk.offsets() == {1: 1}


async def test_a_reopened_store_has_the_data_and_offsets_of_its_last_write(
    tmp_path: Path,
) -> None:
    table = _table(tmp_path / "s")
    await table.write([_w(f"L1:K{i}", i % 4, i) for i in range(20)])
    assert table.disk is not None
    table.disk.close()
    again = _table(tmp_path / "s")
    assert again.disk is not None
    assert again.disk.offsets() == {0: 4, 1: 4, 2: 4, 3: 4}
    assert {k: s.on_hand for k, s, _ in again.items_in({1})} == {
        f"L1:K{i}": i for i in range(20) if i % 4 == 1
    }
    assert again.partition_of("L1:K6") == 2 and again.get("L1:K6").on_hand == 6


def test_records_read_back_move_the_offset_with_them(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "s")
    store.apply([(b"L1:A", b"x", 3, 41), (b"L1:B", b"y", 3, 42), (b"L1:A", None, 3, 43)])
    assert store.offset(3) == 43
    assert store.get(b"L1:A") is None and store.get(b"L1:B") == (3, b"y")
    assert list(store.flagged({3}, UNCHECKED)) == [(b"L1:B", 3)]  # flags unknown


@pytest.mark.parametrize(
    ("earliest", "end", "trusted"),
    [
        ({0: 0}, {0: 11}, True),  # the store reflects offset 10, the changelog ends there
        ({0: 0}, {0: 50}, True),  # the changelog goes on: the tail is replayed
        ({0: 0}, {0: 10}, False),  # offset 10 is past the end: the topic was recreated
        ({0: 12}, {0: 50}, False),  # records after 10 were deleted: a gap
        ({}, {}, False),  # no such changelog
    ],
)
def test_a_store_is_trusted_only_up_to_offsets_the_changelog_holds(
    tmp_path: Path, earliest: dict[int, int], end: dict[int, int], trusted: bool
) -> None:
    store = KeyStore(tmp_path / "s")
    store.write([(b"L1:A", 0, b"a", PENDING), (b"L1:B", 1, b"b", 0)], {0: 10, 1: 3})
    wiped = store.validate(earliest, {**end, 1: 4} if end else end)
    assert (0 not in wiped) is trusted
    assert (store.get(b"L1:A") is not None) is trusted
    assert (store.offset(0) == 10) is trusted
    assert bool(list(store.flagged({0}, PENDING))) is trusted
    if end:
        assert store.get(b"L1:B") == (1, b"b")  # partition 1 is untouched


def test_a_store_that_cannot_be_opened_starts_empty(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "s")
    store.write([(b"L1:A", 0, b"a", 0)], {0: 10})
    store.close()
    for file in (tmp_path / "s").iterdir():
        if file.is_file() and file.name != "LOCK":
            file.write_bytes(b"\x00garbage" * 64)
    again = KeyStore(tmp_path / "s")
    assert again.offsets() == {} and again.get(b"L1:A") is None


def test_a_store_open_in_another_process_is_never_removed(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "s")
    store.write([(b"L1:A", 0, b"a", 0)], {0: 10})
    with pytest.raises(StoreLocked, match="INVSYNC_DATA_DIR"):
        KeyStore(tmp_path / "s").open()
    assert store.get(b"L1:A") == (0, b"a")


def _engine(table: StateTable, safety: SafetyStock) -> InventoryEngine:
    engine = InventoryEngine(
        table,
        stock_topic="stock",
        safety=safety,
        debounce_s=0.0,
        max_delay_s=0.0,
        reservation_ttl_s=3600,
    )
    engine.assigned({0, 1, 2, 3})
    return engine


async def test_a_restart_visits_only_the_keys_that_may_need_publishing(tmp_path: Path) -> None:
    table = _table(tmp_path / "s")
    published = _state(5)
    published.last_published_qty = 5
    await table.write(
        [
            StateWrite("L1:A", 0, published, 0),
            StateWrite("L1:B", 1, _state(9), PENDING),
            StateWrite("L1:C", 2, published, RESERVED),
        ]
    )
    assert table.disk is not None
    table.disk.apply([(b"L1:D", _state(3).to_bytes(), 3, 0)])  # read back: flags unknown
    table.disk.close()

    again = _table(tmp_path / "s")
    engine = _engine(again, SafetyStock())
    visited: list[str] = []
    candidates = again.candidates
    again.candidates = lambda *a: ((visited.append(k), (k, s, p))[1] for k, s, p in candidates(*a))  # type: ignore[method-assign]
    # The basis was never recorded: every key is checked once, then flags stand.
    assert engine.recovered(0.0) == 2  # B and D differ from their last publication
    assert sorted(visited) == ["L1:A", "L1:B", "L1:C", "L1:D"]
    assert again.disk is not None
    assert sorted(k for k, _ in again.disk.flagged({0, 1, 2, 3}, PENDING | UNCHECKED)) == [
        b"L1:B",
        b"L1:D",
    ]
    visited.clear()
    assert _engine(again, SafetyStock()).recovered(0.0) == 2
    assert sorted(visited) == ["L1:B", "L1:D"]
    # Another safety stock: every key may publish another ATP, so every key is checked.
    visited.clear()
    assert _engine(again, SafetyStock(default=1)).recovered(0.0) == 4
    assert sorted(visited) == ["L1:A", "L1:B", "L1:C", "L1:D"]


_WRITER = """
import sys
from pathlib import Path
from streams.store import KeyStore
store = KeyStore(Path(sys.argv[1]))
n = store.offset(0) or 0
print("ready", flush=True)
while True:
    n += 1
    value = str(n).encode()
    store.write([(b"L1:K%d" % i, i % 2, value, 0) for i in range(50)], {0: n, 1: n})
"""


@pytest.mark.parametrize("run", range(4))
def test_a_sigkill_mid_write_leaves_data_and_offsets_that_agree(tmp_path: Path, run: int) -> None:
    """Every batch writes one number as the value of 50 keys and as both offsets: after
    a SIGKILL at any moment, the reopened store holds one batch's number everywhere."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    for _ in range(2):  # reopened and written again, then killed again
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path / "s")],
            env=env,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            time.sleep(random.uniform(0.2, 0.6))
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        store = KeyStore(tmp_path / "s")
        offsets = store.offsets()
        assert offsets[0] == offsets[1] > 0
        values = {store.get(b"L1:K%d" % i) for i in range(50)}
        assert {v for _, v in values} == {str(offsets[0]).encode()}, (offsets, values)
        store.close()


async def test_the_flags_on_disk_are_those_of_the_last_write(tmp_path: Path) -> None:
    """Flags are written only when they change; whatever the sequence, the disk has the
    flags of each key's last write (also once the key was evicted and read back)."""
    table = _table(tmp_path / "s")
    table.decoded_keys = 1
    assert table.disk is not None
    sequence = [PENDING, PENDING, 0, 0, RESERVED, PENDING | RESERVED, 0, PENDING]
    for n, flags in enumerate(sequence):
        await table.write([_w("L1:A", 1, n, flags)])
        assert table.disk.flags_of(b"L1:A") == flags
        if n % 3 == 2:  # evicted: read back from disk, flags with it
            await table.write([_w("L1:B", 2, n)])
            assert table.get("L1:A").on_hand == n
    assert list(table.disk.flagged({1, 2}, PENDING)) == [(b"L1:A", 1)]
