"""Faust internals the worker replaces so that no record is lost or stalled (issue 9).

Faust's recovery resumes the flow to restore the tables, resumes the stream partitions,
awaits their seek, and resumes the flow again. The fetcher runs throughout, so records
of the stream partitions are queued in between; mode's `FlowControlEvent.resume` cleared
them, and since they were already marked read nothing fetched them again. And Faust's
own drainer, still used on the per-record path, marked offsets it had handed on as a gap
when that seek reset the read offsets under it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP, Message

from streams import faustcompat
from streams.app import create_app
from streams.settings import Settings


def _app(tmp_path: Path, **settings: Any) -> Any:
    return create_app(
        Settings(data_dir=tmp_path, callback_auth="none", app_id="t-flow", **settings)
    ).app


def test_resuming_a_flowing_app_keeps_the_records_queued_meanwhile(tmp_path: Path) -> None:
    app = _app(tmp_path)
    queue = app.FlowControlQueue(maxsize=8, clear_on_resume=True)  # as Faust's channels
    app.flow_control.resume()  # recovery starts restoring the tables
    queue.put_nowait("stock-events:0@17")  # fetched once the stream partitions resumed
    app.flow_control.resume()  # recovery done: Faust resumes once more
    assert queue.qsize() == 1
    assert app.flow_control.is_active()


def test_resuming_after_a_suspension_still_drops_what_it_left_behind(tmp_path: Path) -> None:
    app = _app(tmp_path)
    queue = app.FlowControlQueue(maxsize=8, clear_on_resume=True)
    app.flow_control.resume()
    app.flow_control.suspend()  # a rebalance: the next generation reads from the commits
    queue.put_nowait("stock-events:0@17")
    app.flow_control.resume()
    assert queue.qsize() == 0
    assert app.flow_control.is_active()


@pytest.mark.parametrize("fast_path", [True, False])
def test_both_paths_drain_with_our_drainer_not_fausts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    async def fausts_own(self: Any, fetcher: Any) -> None:  # pragma: no cover - never runs
        raise AssertionError("Faust's drainer")

    monkeypatch.setattr(Consumer, "_drain_messages", fausts_own)
    _app(tmp_path, fast_path=fast_path)
    assert Consumer._drain_messages is faustcompat._drain_messages


async def test_a_commit_made_while_seeking_to_committed_offsets_is_not_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's seek reads the group's committed offsets one partition at a time (a round
    trip each) and then records them as its own. The stream partitions are resumed
    before that seek, so records fetched meanwhile are processed and acked; a commit
    landing between the read of a partition and the end of the seek was undone in the
    worker: its committed offset went back to the older value, the acked offsets (past
    the new commit) no longer followed it, and the partition's commits stopped for good
    (fault suite, SIGKILL storm, 'committed offsets did not reach the end')."""
    app = _app(tmp_path)
    consumer = app.consumer
    tp = TP("orders-t", 3)
    broker: dict[TP, int] = {tp: 22}  # the group's committed offsets
    app.topics._acking_topics.add(tp.topic)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})

    async def seek_to_committed() -> dict[TP, int]:
        seen = dict(broker)
        await asyncio.sleep(0.05)  # the other partitions' round trips
        return seen

    async def commit_to_broker(offsets: dict[TP, int]) -> bool:
        broker.update(offsets)
        return True

    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer, "_commit", commit_to_broker)

    def ack(offsets: range) -> None:
        for offset in offsets:
            message = Message(tp.topic, tp.partition, offset, 0.0, None, None, b"k", b"v", None)
            consumer.ack(message)

    seek = asyncio.create_task(consumer.perform_seek())
    await asyncio.sleep(0.01)  # the seek has read offset 22
    ack(range(22, 74))  # fetched as the stream partitions resumed, processed
    await consumer.commit()
    await seek
    ack(range(74, 81))
    await consumer.commit()
    assert broker[tp] == 81
