"""The inventory table holds states packed (changelog bytes) and decodes on access.

A state handed out must stay the very object until the batch's write, whatever the LRU
evicts meanwhile, or a change would be lost; what is written is what a restore reads.
"""

from __future__ import annotations

import asyncio
import tracemalloc
import uuid
from typing import Any

import faust
import orjson

from models.inventory import KeyState
from streams.state import StateTable


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int]] = []

    async def send(self, topic: str, key: bytes, value: bytes, **kw: Any) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, kw["partition"]))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class _W:
    def __init__(self, key: str, partition: int, state: KeyState) -> None:
        self.key, self.partition, self.state = key, partition, state


def _table(decoded_keys: int) -> tuple[StateTable, _Producer]:
    app = faust.App(f"t-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1", store="memory://")
    table = StateTable(app, "inventory-state", 4, decoded_keys=decoded_keys)
    producer = _Producer()
    table.app = type("A", (), {"producer": producer})()  # type: ignore[assignment]
    return table, producer


def _state(on_hand: int) -> KeyState:
    state = KeyState(on_hand=on_hand, location="L1")
    state.remember(f"ev-{on_hand}")
    return state


async def test_a_handed_out_state_stays_the_same_object_until_written() -> None:
    table, producer = _table(decoded_keys=0)
    await table.write([_W("L1:A", 1, _state(5))])
    first = table.get("L1:A")
    first.on_hand = 9  # the engine changes what get returns ...
    for i in range(50):  # ... and reads other keys before the batch's write
        table.hold(f"L1:K{i}", _state(i), 2)
        table.get(f"L1:K{i}")
    assert table.get("L1:A") is first
    await table.write([_W("L1:A", 1, first)])
    again = table.get("L1:A")
    assert again is not first  # evicted after the write (no decoded keys kept) ...
    assert again.on_hand == 9  # ... and decoded from the bytes written
    assert producer.sent[-1][2] == first.to_bytes()


async def test_values_are_the_changelog_bytes_and_older_formats_decode() -> None:
    table, _ = _table(decoded_keys=10)
    await table.write([_W("L1:A", 3, _state(7))])
    assert table.table.data["L1:A"] == _state(7).to_bytes()
    # As a restore leaves it: the raw record of format 2 (before the base's time).
    table.table.data["L1:B"] = orjson.dumps([2, 4, {}, ["e1"], {"s:0": 3}, 4, 11, 1.5, "L1"])
    table.hold("L1:B", table.get("L1:B"), 0)
    state = table.get("L1:B")
    assert (state.on_hand, state.seen("e1"), state.offsets, state.base_at) == (
        4,
        True,
        {"s:0": 3},
        None,
    )


async def test_scanning_every_key_pins_nothing() -> None:
    table, _ = _table(decoded_keys=2)
    await table.write([_W(f"L1:K{i}", i % 4, _state(i)) for i in range(20)])
    seen = {key: (state.on_hand, p) for key, state, p in table.items_in({0, 1})}
    assert seen == {f"L1:K{i}": (i, i % 4) for i in range(20) if i % 4 in (0, 1)}
    assert not table._pinned
    assert len(table._decoded) == 2


async def test_a_held_state_costs_its_bytes_not_the_encoders_buffer() -> None:
    table, producer = _table(decoded_keys=0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(500):
            await table.write([_W(f"L1:SKU-{i:08d}", i % 4, _state(i))])
            producer.sent.clear()
        per_key = (tracemalloc.get_traced_memory()[0] - before) / 500
    finally:
        tracemalloc.stop()
    assert per_key < 1000, f"{per_key:.0f} bytes per key held"  # orjson's buffer: ~4 KB
