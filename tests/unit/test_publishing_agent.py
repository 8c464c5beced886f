"""The flush timer and input batches of `streams.publishing.PublishingAgent` (the
inventory and consolidation agents' I/O): while batches flow, each batch's own flush
publishes what is due and the timer stands aside. It used to queue for the lock between
two batches and hold it for a whole publish-and-write round trip in front of the next
one — behind a slow broker most of each batch's time (the fault suite's slow broker:
the flush timer ran 3.5-4 s at a time and the committed offsets never reached the end).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.publishing import INPUT_GAP_S, PublishingAgent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class OneDue:
    """A publisher with one key due until it is published."""

    def __init__(self) -> None:
        self.pending = True

    def next_deadline(self) -> float | None:
        return 0.0 if self.pending else None

    def due(self, now: float, wall: Any, *, everything: bool = False) -> list[Any]:
        if not self.pending:
            return []
        self.pending = False
        return [SimpleNamespace(key="W1:SKU", update=SimpleNamespace(encode=lambda: b"{}"))]

    def published(self, pubs: list[Any]) -> list[Any]:
        return []

    def unpublished(self, pubs: list[Any], now: float) -> None:
        self.pending = True


class States:
    def __init__(self) -> None:
        self.writes = 0

    async def write(self, writes: Any) -> None:
        self.writes += 1


def make_agent() -> tuple[PublishingAgent[Any, Any], OneDue, Clock, list[bytes]]:
    sent: list[bytes] = []

    async def publish(key: bytes, value: bytes) -> Any:
        sent.append(key)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    engine, clock = OneDue(), Clock()
    agent: PublishingAgent[Any, Any] = PublishingAgent(
        engine=engine,  # type: ignore[arg-type]
        state=States(),  # type: ignore[arg-type]
        publish=publish,
        clock=clock,
    )
    return agent, engine, clock, sent


async def test_the_timer_does_not_queue_for_the_lock_while_a_batch_holds_it() -> None:
    agent, engine, _, sent = make_agent()
    release = asyncio.Event()

    async def batch() -> None:
        async with agent.applying():
            await release.wait()

    holder = asyncio.create_task(batch())
    await asyncio.sleep(0)
    assert agent.lock.locked()
    # Returns at once: it neither waits for the lock nor takes it after the batch.
    assert await asyncio.wait_for(agent.flush_due(), 0.5) == 0
    release.set()
    await holder
    assert not agent.lock.locked()
    assert sent == [] and engine.pending  # left to the next batch's flush


async def test_the_timer_leaves_the_gap_between_two_batches_to_the_next_batch() -> None:
    agent, engine, clock, sent = make_agent()
    async with agent.applying():
        pass
    clock.now += INPUT_GAP_S / 2  # the next batch is being taken from the input
    assert await agent.flush_due() == 0
    assert sent == [] and engine.pending


async def test_once_input_pauses_the_timer_publishes_what_is_due() -> None:
    agent, engine, clock, sent = make_agent()
    async with agent.applying():
        pass
    clock.now += INPUT_GAP_S
    assert await agent.flush_due() == 1
    assert sent == [b"W1:SKU"] and not engine.pending
    assert await agent.flush_due() == 0  # nothing due any more


async def test_with_no_input_yet_the_timer_publishes_at_once() -> None:
    agent, _, _, sent = make_agent()
    assert await agent.flush_due() == 1
    assert sent == [b"W1:SKU"]


async def test_a_failed_batch_still_counts_as_input() -> None:
    agent, engine, clock, _ = make_agent()
    try:
        async with agent.applying():
            raise RuntimeError("send failed")
    except RuntimeError:
        pass
    assert not agent.lock.locked()
    assert await agent.flush_due() == 0
    clock.now += INPUT_GAP_S
    assert await agent.flush_due() == 1 and not engine.pending


def test_the_timer_stands_aside_longer_than_the_per_record_path_gathers_a_batch() -> None:
    """Between two batches of Faust's per-record path there is up to `BATCH_WITHIN_S` of
    gathering: were `INPUT_GAP_S` shorter, the timer would queue for the lock there again."""
    from streams.inventory import BATCH_WITHIN_S

    assert INPUT_GAP_S > BATCH_WITHIN_S
