"""Property: the same stock events and commands in any interleaving give the same ATP.

Stock events and reservation commands reach a key on two topics; how they interleave
depends on batching and timing, never on what happened. Each topic's own order is
kept (Kafka keeps it per partition); everything else is free (DESIGN.md "Reservations
and snapshots": "a replay with different batching gives the same ATP").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import InventoryCommand, StockEvent, command_id
from models.inventory import KeyState, apply_command, apply_stock_event, atp, reserved

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
ORDERS = ["O1", "O2", "O3"]
minutes = st.integers(0, 6)

stock_event = st.tuples(
    st.sampled_from(["DELTA", "DELTA", "SNAPSHOT"]),
    st.sampled_from([None, "ON_HAND", "AVAILABLE"]),
    st.integers(-6, 9),
    st.one_of(st.none(), st.sampled_from(ORDERS)),
    minutes,
)
command = st.tuples(
    st.sampled_from(["RESERVE", "RESERVE", "CANCEL", "RELEASE", "ACCEPT", "ACCEPT"]),
    st.sampled_from(ORDERS),
    st.integers(1, 5),
    minutes,
)


def stock_events(raw: list[tuple[Any, ...]]) -> list[StockEvent]:
    out = []
    for n, (kind, basis, qty, order, minute) in enumerate(raw):
        if kind == "SNAPSHOT" and qty < 0:
            qty = -qty
        out.append(
            StockEvent(
                eventId=f"e{n % 12}",  # some ids repeat: producer re-sends
                type=kind,
                locationCode="L",
                channelSkuCode="A",
                quantity=qty,
                occurredAt=T0 + timedelta(minutes=minute),
                basis=basis if kind == "SNAPSHOT" else None,
                orderCode=order,
            )
        )
    return out


def commands(raw: list[tuple[Any, ...]]) -> list[InventoryCommand]:
    return [
        InventoryCommand(
            commandId=command_id(f"oe{n % 10}", 0, kind),
            type=kind,
            orderCode=order,
            locationCode="L",
            channelSkuCode="A",
            occurredAt=T0 + timedelta(minutes=minute),
            quantity=qty if kind == "RESERVE" else None,
            cancelledQuantity=qty - 1 if kind == "CANCEL" else None,
        )
        for n, (kind, order, qty, minute) in enumerate(raw)
    ]


def run(
    stock: list[StockEvent],
    cmds: list[InventoryCommand],
    stock_first: list[bool],
    grace_s: float,
    restore_at: int | None = None,
) -> tuple[int, int, int]:
    """Merge the topics as ``stock_first`` says (True: next stock event goes first)."""
    state = KeyState()
    i = j = 0
    for step, pick_stock in enumerate(stock_first + [True] * len(stock) + [False] * len(cmds)):
        if step == restore_at:
            state = KeyState.from_bytes(state.to_bytes())  # a crash and a restore
        if pick_stock and i < len(stock):
            apply_stock_event(state, stock[i], "stock/0", i, settle_after_s=grace_s)
            i += 1
        elif not pick_stock and j < len(cmds):
            apply_command(state, cmds[j], "commands/0", j)
            j += 1
    assert (i, j) == (len(stock), len(cmds))
    return state.on_hand, reserved(state), atp(state, 1)


@settings(max_examples=1000, deadline=None)
@given(
    raw_stock=st.lists(stock_event, max_size=14),
    raw_commands=st.lists(command, max_size=14),
    order_a=st.lists(st.booleans(), max_size=28),
    order_b=st.lists(st.booleans(), max_size=28),
    grace_s=st.sampled_from([0.0, 60.0, 150.0]),
    restore_at=st.integers(0, 28),
)
def test_any_interleaving_of_the_two_topics_gives_the_same_atp(
    raw_stock: list[tuple[Any, ...]],
    raw_commands: list[tuple[Any, ...]],
    order_a: list[bool],
    order_b: list[bool],
    grace_s: float,
    restore_at: int,
) -> None:
    stock, cmds = stock_events(raw_stock), commands(raw_commands)
    stock_all_first = run(stock, cmds, [], grace_s)
    commands_all_first = run(stock, cmds, [False] * len(cmds), grace_s)
    assert commands_all_first == stock_all_first
    assert run(stock, cmds, order_a, grace_s) == stock_all_first
    assert run(stock, cmds, order_b, grace_s, restore_at) == stock_all_first
