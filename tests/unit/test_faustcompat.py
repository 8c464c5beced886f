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
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP, Message

from invsync.localkafka import free_port
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
    tp, other = TP("orders-t", 3), TP("orders-t", 4)
    app.topics._acking_topics.add(tp.topic)
    # The group's committed offsets: the seek reads each in a round trip of its own.
    seeking = _with_broker(app, monkeypatch, {tp: 22, other: 5})
    broker = seeking.committed_offsets

    async def commit_to_broker(offsets: dict[TP, int]) -> bool:
        broker.update(offsets)
        return True

    monkeypatch.setattr(consumer, "_commit", commit_to_broker)

    def ack(offsets: range) -> None:
        for offset in offsets:
            message = Message(tp.topic, tp.partition, offset, 0.0, None, None, b"k", b"v", None)
            consumer.ack(message)

    seek = asyncio.create_task(consumer.perform_seek())
    await asyncio.sleep(0.03)  # the seek has read offset 22, and asks for the next one
    ack(range(22, 74))  # fetched as the stream partitions resumed, processed
    await consumer.commit()
    await seek
    ack(range(74, 81))
    await consumer.commit()
    assert broker[tp] == 81


class _Broker:
    """The consumer thread as Faust's consumer calls it, over a scripted aiokafka consumer:
    committed offsets, positions, and the fetches `_wait_next_records` returns."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed_offsets = committed
        self.positions: dict[Any, int] = {}
        self.seeks: list[tuple[TP, int]] = []
        self.on_committed: Any = None

    # aiokafka's consumer, inside the thread
    def _ensure_consumer(self) -> Any:
        return self

    async def committed(self, tp: Any) -> int | None:
        await asyncio.sleep(0.02)  # a round trip
        if self.on_committed is not None:
            self.on_committed(tp)
        return self.committed_offsets[TP(tp.topic, tp.partition)]

    def assignment(self) -> set[Any]:
        return set(self.committed_offsets)

    def seek(self, tp: Any, offset: int) -> None:
        self.positions[TP(tp.topic, tp.partition)] = offset
        self.seeks.append((TP(tp.topic, tp.partition), offset))

    async def seek_to_beginning(self, *tps: Any) -> None:
        for tp in tps:
            self.seek(tp, 0)

    def highwater(self, tp: Any) -> int:
        return 10_000

    async def seek_to_committed(self) -> dict[TP, int | None]:  # aiokafka's, for Faust's seek
        found = {}
        for tp in sorted(self.committed_offsets):
            found[tp] = offset = await self.committed(tp)
            if offset and offset > 0:
                self.seek(tp, offset)
        return found

    # the thread
    async def call_thread(self, fun: Any, *args: Any) -> Any:
        return await fun(*args)


def _with_broker(
    app: Any, monkeypatch: pytest.MonkeyPatch, committed: dict[TP, int | None]
) -> _Broker:
    broker = _Broker(committed)
    consumer = app.consumer
    monkeypatch.setattr(consumer, "_thread", broker)
    monkeypatch.setattr(consumer, "assignment", broker.assignment)
    return broker


async def test_each_partition_moves_its_position_and_read_offset_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's seek moved every partition's position during the seek but reset the read
    offsets only at its end, so a partition fetched from its new position meanwhile had
    its read offset put back behind where the fetcher already was (commands topic, slow
    broker, SIGKILL: committed offsets 900-17,000 behind for good)."""
    app = _app(tmp_path)
    consumer = app.consumer
    a, b, fresh = TP("commands-t", 0), TP("commands-t", 2), TP("shipments-t", 1)
    broker = _with_broker(app, monkeypatch, {a: 31, b: 174, fresh: None})
    consumer._read_offset[a] = 900  # handed on in the generation before
    consumer._read_offset[b] = 1135
    agreed: list[bool] = []

    def check(tp: Any) -> None:  # as each round trip answers: what was moved so far
        agreed.extend(
            consumer._read_offset[moved] == (offset or None)
            for moved, offset in broker.positions.items()
        )

    broker.on_committed = check
    await consumer.perform_seek()
    check(None)
    assert broker.positions == {a: 31, b: 174, fresh: 0}
    assert agreed and all(agreed), "a partition moved without its read offset"
    assert consumer._read_offset[a] == 31 and consumer._read_offset[b] == 174
    assert consumer._read_offset[fresh] is None  # from its start, nothing read yet
    assert consumer._committed_offset[a] == 31 and consumer._committed_offset[b] == 174


def _records(tp: TP, offsets: range) -> list[Any]:
    from aiokafka.structs import ConsumerRecord

    return [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"k", b"v", None, 1, 1, []) for o in offsets
    ]


def _drain_over(
    consumer: Any,
    monkeypatch: pytest.MonkeyPatch,
    tp: TP,
    fetches: list[Any],
    *,
    before: Any = None,
) -> Any:
    """The drainer's fetches, in turn (``before`` runs as the first one is under way);
    returns the fetcher whose stop ends the drainer after the last."""
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    first = True

    async def wait_next_records(timeout: float) -> tuple[Any, Any]:
        nonlocal first
        if first and before is not None:
            await before()
        first = False
        recs = fetches.pop(0)
        if not fetches:
            fetcher._stopped.set()
        return {tp: recs}, {tp}

    monkeypatch.setattr(consumer, "_wait_next_records", wait_next_records)
    return fetcher


def _draining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tp: TP, *, read: int | None
) -> tuple[Any, Any, _Broker]:
    """An app whose consumer drains ``tp`` (acks on, committed offset 174, read up to
    ``read``, the flow running) over the scripted broker: (app, consumer, broker)."""
    app = _app(tmp_path)
    consumer = app.consumer
    app.topics._acking_topics.add(tp.topic)
    broker = _with_broker(app, monkeypatch, {tp: 174})
    if read is not None:
        consumer._read_offset[tp] = read
    consumer.flow_active = True
    return app, consumer, broker


async def test_records_fetched_before_a_seek_are_not_taken_for_a_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch under way when a seek put the partition back hands on records far past the
    new read offset. Taken for a gap, everything in between was acked twice or before it
    was processed; instead they are fetched again from where the seek put it."""
    tp = TP("commands-t", 2)
    _, consumer, broker = _draining(tmp_path, monkeypatch, tp, read=1135)
    handed: list[int] = []

    async def callback(message: Any) -> None:
        handed.append(message.offset)

    monkeypatch.setattr(consumer, "callback", callback)
    fetches = [_records(tp, range(1136, 1140)), _records(tp, range(174, 178))]
    fetcher = _drain_over(consumer, monkeypatch, tp, fetches, before=consumer.perform_seek)
    await faustcompat._drain_messages(consumer, fetcher)
    assert not consumer._gap[tp], f"a gap was recorded: {consumer._gap[tp]}"
    assert handed == [174, 175, 176, 177]
    assert broker.seeks[-1] == (tp, 174)  # read again from where the seek put it


async def test_a_seek_while_a_record_is_handed_on_is_not_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's per-record path waits for room in the agent's channel before each record;
    a seek landing meanwhile set the read offset back, and the drainer then set it to the
    record it had handed on. The records from the seek's position up to there were then
    dropped as read, never handed on in this generation, never acked: the orders topic's
    commits stopped for good after a second worker left (make faults, [true-True])."""
    tp = TP("orders-t", 1)
    _, consumer, _ = _draining(tmp_path, monkeypatch, tp, read=1135)
    handed: list[int] = []

    async def callback(message: Any) -> None:
        handed.append(message.offset)
        if message.offset == 1137:
            await consumer.perform_seek()  # lands while the drainer waits for the channel

    monkeypatch.setattr(consumer, "callback", callback)
    fetches = [_records(tp, range(1136, 1140)), _records(tp, range(174, 178))]
    await faustcompat._drain_messages(consumer, _drain_over(consumer, monkeypatch, tp, fetches))
    assert handed == [1136, 1137, 174, 175, 176, 177], "records after the seek were dropped"
    assert consumer._read_offset[tp] == 177
    assert not consumer._gap[tp]


@pytest.mark.parametrize("read_before", [None, 170])
async def test_a_record_whose_hand_on_a_revoke_cut_short_is_not_marked_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_before: int | None
) -> None:
    """A revoke stops the flow while the drainer waits to hand a record on: the wait ends
    without the record, and Faust has already forgotten the partition's read offset.
    Marking the record read then left a read offset from the old generation, past the
    committed offset, for the next: its first fetch dropped the records before it."""
    tp = TP("orders-t", 1)
    _, consumer, _ = _draining(tmp_path, monkeypatch, tp, read=read_before)

    async def callback(message: Any) -> None:
        if message.offset == 174:  # the channel is full; the revoke comes meanwhile
            consumer._read_offset.pop(tp, None)  # Consumer.on_partitions_revoked
            consumer.stop_flow()
            await asyncio.sleep(3600)

    monkeypatch.setattr(consumer, "callback", callback)
    fetches = [_records(tp, range(174, 180))]
    await faustcompat._drain_messages(consumer, _drain_over(consumer, monkeypatch, tp, fetches))
    assert consumer._read_offset.get(tp) is None, "a record not handed on was marked read"


async def test_a_seek_while_a_batch_waits_for_room_is_not_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path's batch queue, full when a seek lands: the batch fetched from the old
    position is not queued, the read offset stays where the seek put it, and the records
    from there are queued when fetched again."""
    tp = TP("stock-t", 3)
    app, consumer, _ = _draining(tmp_path, monkeypatch, tp, read=1135)
    q: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
    q.put_nowait("an earlier batch")
    monkeypatch.setattr(app, "_batch_queues", {tp.topic: q}, raising=False)
    queued: list[list[int]] = []

    async def handler() -> None:  # busy until the seek landed
        await consumer.perform_seek()
        while True:
            item = await q.get()
            if item != "an earlier batch":
                queued.append([m.offset for m in item[1]])

    fetches = [_records(tp, range(1136, 1140)), _records(tp, range(174, 178))]
    task = asyncio.create_task(handler())
    try:
        await faustcompat._drain_messages(consumer, _drain_over(consumer, monkeypatch, tp, fetches))
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert queued == [[174, 175, 176, 177]], "the records from the seek's position were lost"
    assert consumer._read_offset[tp] == 177


async def test_a_failed_metadata_update_backs_off_before_the_next(tmp_path: Path) -> None:
    """aiokafka's fetcher forces a metadata update whenever a partition has no leader and
    waits for it; with the broker away each update failed at once, so the consumer's
    thread spun a whole core (fault suite, broker outage). Against a port that refuses
    connections, count how often the updates come back within a second."""
    from aiokafka.client import AIOKafkaClient

    _app(tmp_path)  # installs the back-off, as the worker does
    refused = free_port()
    client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{refused}", retry_backoff_ms=100)
    sync = asyncio.create_task(client._md_synchronizer())
    try:
        updates, results = 0, set()
        deadline = asyncio.get_running_loop().time() + 1.0
        while asyncio.get_running_loop().time() < deadline:
            results.add(await client.force_metadata_update())
            updates += 1
        assert results == {False}
        assert updates <= 15, f"{updates} failed metadata updates in 1 s"
    finally:
        sync.cancel()
        await asyncio.gather(sync, return_exceptions=True)
        await client.close()
