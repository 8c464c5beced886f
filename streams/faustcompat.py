"""Every use of faust-streaming's private internals, in one place, checked at start.

invsync relies on a few internals of faust-streaming 0.15 (pinned `<0.16`):
* `Consumer._drain_messages`, replaced on both paths by the copy below: records of
  topics routed to a batch queue (`streams/fastpath.py`) go there per partition, the
  others through Faust's per-record path; unlike Faust's own, it never marks offsets it
  handed on as a gap after a seek (see `install_drainer`); records of a changelog routed
  to a batch restore (`restore_in_batches`) are applied per fetched batch, with
  `Recovery`'s bookkeeping (its `active_offsets`, `standby_offsets`, the end-of-recovery
  signal) done as its `_slurp_changelogs` does it per record;
* `AIOKafkaConsumerThread._create_worker_consumer`, wrapped to bound the fetch wait;
* `Consumer.perform_seek`, replaced so each partition's position and read offset move
  together and one with no committed offset is read from its start (see
  `seek_each_to_committed`), and wrapped so that no commit runs while it reads and
  records the committed offsets (`Consumer._commit_fut`, see `no_commit_while_seeking`);
* mode's `FlowControlEvent.resume` of the app's flow control, which must not drop
  records queued while the flow is active (see `keep_queued_records_on_resume`);
* a table's `_new_changelog_topic()`, `data` (the store), the memory store's dict
  (`Store.data`, replaced by an indexing one) and its `_key_partition` (used by
  `streams/state.py`);
* a table's `persisted_offset`, `apply_changelog_batch` and `on_rebalance`, replaced on
  the instance for a table kept on disk (`attach_store`);
* `faust.streams._current_event`, set around a batch;
* the partition assignor's `changelog_distribution` (each member's advertised URL and
  the table partitions it holds), read by the pre-order lookup;
* aiokafka's `AIOKafkaClient._metadata_update`, wrapped so a failed update backs off
  (`back_off_failed_metadata_updates`);
* `Consumer.ack`'s bookkeeping, done for a whole batch at once (`ack_batch`), and read
  for the commit metrics (`commit_state`).

`check_version()` runs when the app is built: on a version these were not written for,
the worker stops with one clear line instead of misbehaving later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import faust
from aiokafka.structs import TopicPartition
from faust.streams import _current_event as current_event
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from models.errors import InvsyncError

__all__ = [
    "SUPPORTED",
    "FaustVersionError",
    "ack_batch",
    "attach_store",
    "back_off_failed_metadata_updates",
    "bound_fetch_wait",
    "check_version",
    "commit_state",
    "current_event",
    "install_drainer",
    "keep_queued_records_on_resume",
    "key_partitions",
    "no_commit_while_seeking",
    "own_url",
    "partition_owners",
    "rebuild_changelog_topic",
    "replace_store_dict",
    "restore_in_batches",
    "seek_each_to_committed",
]

log = logging.getLogger(__name__)

SUPPORTED = "0.15."
"""The faust-streaming series these internals were written for."""


class FaustVersionError(InvsyncError):
    """The installed faust-streaming is not the series invsync was written for."""


def check_version(version: str | None = None) -> None:
    found = version if version is not None else faust.__version__
    if not found.startswith(SUPPORTED):
        raise FaustVersionError(
            f"faust-streaming {found} is installed; invsync needs {SUPPORTED}x "
            "(it patches internals of that series): pip install 'faust-streaming>=0.15.3,<0.16'"
        )


# --- tables -----------------------------------------------------------------------------


def rebuild_changelog_topic(table: Any) -> None:
    """Recreate the changelog topic after changing the table's serializers, so recovery
    decodes with them (Faust takes serializers from model types only)."""
    table.changelog_topic = table._new_changelog_topic()


def key_partitions(table: Any) -> MutableMapping[Any, int]:
    """The memory store's key -> changelog partition of recovered keys ({} if none)."""
    found: MutableMapping[Any, int] = getattr(table.data, "_key_partition", {})
    return found


def attach_store(
    table: Any,
    *,
    persisted_offset: Callable[[Any], int | None],
    apply_changelog_batch: Callable[[Iterable[Any]], None],
    before_rebalance: Callable[[], Awaitable[None]],
) -> None:
    """Give ``table`` a store of ours for Faust's recovery.

    Faust's `Recovery` asks `table.persisted_offset(tp)` where to start reading a
    changelog partition (its `_build_offsets`: the larger of that and the earliest
    offset), hands what it reads to `table.apply_changelog_batch(events)`, and the
    `TableManager` awaits `table.on_rebalance(...)` for every table before the recovery
    reads any offset (so ``before_rebalance`` may check the store first). The table's
    own (memory) store is then left empty.
    """
    on_rebalance = table.on_rebalance

    async def _on_rebalance(*args: Any, **kwargs: Any) -> None:
        await before_rebalance()
        await on_rebalance(*args, **kwargs)

    table.persisted_offset = persisted_offset
    table.apply_changelog_batch = apply_changelog_batch
    table.on_rebalance = _on_rebalance


def replace_store_dict(table: Any, mapping: dict[Any, Any]) -> None:
    """Make ``mapping`` (a dict subclass) the memory store's dict, keeping what it holds:
    Faust's recovery writes and deletes keys straight in that dict."""
    store = table.data
    inner = getattr(store, "data", None)
    if not isinstance(inner, dict):
        raise FaustVersionError("invsync needs Faust's memory store (store='memory://')")
    mapping.update(inner)
    store.data = mapping


# --- the web server ---------------------------------------------------------------------


def aiohttp_web_driver(app: Any) -> Any:
    """Faust's aiohttp web driver of ``app`` (`streams/httpserver.py` hardens it)."""
    from faust.web.drivers.aiohttp import Web

    driver = app.web
    if not isinstance(driver, Web):
        raise FaustVersionError("invsync needs Faust's aiohttp web driver (web_driver='aiohttp')")
    return driver


def replace_web_runner(app: Any, runner: Any) -> None:
    """Use ``runner`` (an aiohttp `AppRunner`) for the app's web server: Faust builds its
    own in `Web.__init__` and starts it with the worker."""
    aiohttp_web_driver(app)._runner = runner


# --- the group's members -----------------------------------------------------------


def own_url(app: Any) -> str:
    """This worker's URL as the assignor advertises it (Faust's `canonical_url`)."""
    return str(app.conf.canonical_url)


def partition_owners(app: Any, changelog: str) -> dict[str, set[int]]:
    """Advertised URL → partitions of the ``changelog`` table topic each member of the
    group holds, as the last assignment told this worker ({} before the first)."""
    distribution = getattr(app.assignor, "changelog_distribution", None) or {}
    owners: dict[str, set[int]] = {}
    for url, topics in distribution.items():
        held = topics.get(changelog) if hasattr(topics, "get") else None
        if held:
            owners[str(url)] = {int(p) for p in held}
    return owners


# --- the broker -------------------------------------------------------------------------


async def broker_reachable(app: Any, timeout_s: float = 1.0) -> bool:
    """Whether the app's producer can reach a broker now (one connection check)."""
    producer = getattr(app.producer, "_producer", None)
    client = getattr(producer, "client", None)
    if client is None:
        return False
    try:
        node = client.get_random_node()
        if node is None:
            return False
        return bool(await asyncio.wait_for(client.ready(node), timeout_s))
    except (TimeoutError, OSError):
        return False


# --- the fetch wait ---------------------------------------------------------------------

# How long the broker may hold a fetch that finds no new data. Faust hard-codes 1500 ms
# (faust/transport/drivers/aiokafka.py, `_create_worker_consumer`). aiokafka keeps one
# fetch in flight per broker and leaves out of it every partition whose records are still
# buffered, so right after a fetch returned stock events the next fetch often covers only
# idle partitions (commands, orders, shipments, the global tables' changelogs): the broker
# parks it for the whole wait while new stock events pile up behind it. At 1500 ms that
# was the 1-2 s bursts seen in the live latency; `streams/app.py` bounds the stall.


def bound_fetch_wait(app: Any, wait_ms: int) -> None:
    """Make Faust's worker consumer of ``app`` wait at most ``wait_ms`` for a fetch."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    app._invsync_fetch_max_wait_ms = wait_ms

    thread_cls: Any = AIOKafkaConsumerThread
    if getattr(thread_cls, "_invsync_fetch_wait_patched", False):
        return
    create = thread_cls._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        wait_ms = getattr(self.consumer.app, "_invsync_fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms  # read by AIOKafkaConsumer.start()
        return consumer

    thread_cls._create_worker_consumer = _create_worker_consumer
    thread_cls._invsync_fetch_wait_patched = True


# --- resuming flow ----------------------------------------------------------------------


def keep_queued_records_on_resume(app: Any) -> None:
    """Make ``app.flow_control.resume()`` leave the queues alone while flow is active.

    mode's `FlowControlEvent.resume` clears every flow-controlled queue (Faust's topic
    channels, the fast path's batch queue): what was queued while the flow was suspended
    is stale. But Faust's recovery resumes the flow to restore the tables, then resumes
    the stream partitions, awaits their seek to the committed offsets, and calls
    `resume()` again (`Recovery.on_recovery_completed`, `_resume_streams`). Records
    fetched meanwhile were already queued and marked read, so that second resume
    dropped them and nothing fetched them again: a worker restarted under load lost
    them (issue 9, SIGKILL storm). One dropped record let Faust's commit step over it
    (`Consumer._new_offset` tolerates a single missing offset after the committed one):
    its event was never applied, a key ended a few units off. Two or more left a hole
    the commit never passed: committed offsets stuck for good.

    Records queued while the flow is active belong to the current generation and are
    handled (the seek only makes them come again, which every consumer here tolerates).
    What a suspension leaves behind is still dropped: Faust clears the queues itself
    when it suspends the flow (revoke), and a resume from suspended still clears.
    Idempotent.
    """
    flow = app.flow_control
    if getattr(flow, "_invsync_keeps_queued", False):
        return
    resume = flow.resume

    def _resume() -> None:
        if flow.is_active():
            return  # already flowing: the queues hold records of this generation
        resume()

    flow.resume = _resume
    flow._invsync_keeps_queued = True


# --- seeking back -----------------------------------------------------------------------


def seek_each_to_committed() -> None:
    """Replace Faust's seek of the stream partitions to their committed offsets with one
    that moves each partition's position and read offset together (idempotent).

    Faust's `Consumer.perform_seek` (the end of every recovery) asks the broker for each
    assigned partition's committed offset and moves the partition there, one round trip
    per partition, and only at the end sets all the read offsets (what the drainer takes
    as handed on) to those committed offsets. The flow already runs, so the fetcher keeps
    reading from each partition once it was moved and the drainer hands those records on:
    when the seek ended, a partition's read offset went back to its committed offset
    while its position was far past it, and the next fetch looked like a jump. The
    drainer recorded everything in between as a gap, acked — offsets already acked
    (acked twice, so Faust's commit, which walks consecutive acked offsets, moved one
    offset per commit: the commands topic stuck 900-17,000 behind after a SIGKILL behind
    a slow broker, on both paths) or not yet processed at all. The longer the seek (a
    slow broker: 17 s), the wider the window.

    Here each partition is moved and its read offset set in one step, so the drainer
    never sees one without the other (`_drain_messages` drops what was fetched from the
    old position while it was in flight). A partition with no committed offset is read
    from its start: aiokafka leaves it where it was, after records Faust dropped when it
    seeks back after a suspended flow, so a shipment published while a worker started
    was never read (issue 10, item 10); with `auto_offset_reset="earliest"`, "no
    committed offset" means "from the start".
    """
    if getattr(Consumer, "_invsync_seek_patched", False):
        return

    async def _perform_seek(self: Any) -> None:
        changelogs = set(self.app.tables.changelog_topics)
        thread = self._thread
        for tp in sorted(self.assignment()):
            if tp.topic in changelogs or "__assignor-__leader" in tp.topic:
                continue
            found, offset = await thread.call_thread(
                _seek_to_committed, thread, TopicPartition(tp.topic, tp.partition)
            )
            if not found:
                continue  # revoked meanwhile: its next owner seeks it
            self._read_offset[tp] = offset if offset else None
            if offset is not None:
                self._committed_offset[tp] = offset if offset else None

    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    Consumer._invsync_seek_patched = True  # type: ignore[attr-defined]


async def _seek_to_committed(thread: Any, tp: TopicPartition) -> tuple[bool, int | None]:
    """In the consumer's thread: move ``tp`` to its committed offset (its start when it
    has none); (False, None) when it is no longer assigned."""
    consumer = thread._ensure_consumer()
    offset = await consumer.committed(tp)
    if tp not in consumer.assignment():
        return False, None
    if offset and offset > 0:
        consumer.seek(tp, offset)
    else:
        await consumer.seek_to_beginning(tp)
    return True, offset


def no_commit_while_seeking() -> None:
    """Let no commit run while Faust seeks to the committed offsets (idempotent).

    Faust's `Consumer.perform_seek` asks the broker for each assigned partition's
    committed offset, one round trip per partition (aiokafka's `seek_to_committed`),
    and then records them all as the worker's own committed offsets. Recovery resumes
    the stream partitions before that seek and the flow is already running, so records
    fetched meanwhile are handed on, processed and acked, and Faust's commit timer
    (every second) commits them: when that commit lands after the seek read the
    partition, the seek then puts the worker's committed offset back to the older
    value. The acked offsets, which start at the new commit, no longer follow it
    (`Consumer._new_offset`: ``min(acked) - committed > 1``), so nothing of that
    partition is committed again: on a loaded machine a restarted worker's orders
    partition stayed committed where its first commit left it, for good (fault suite,
    SIGKILL storm: "committed offsets did not reach the end").

    Here the seek holds Faust's own commit guard (`Consumer._commit_fut`, which makes a
    concurrent `commit()` wait and skip, as it does for a commit already under way)
    after any commit under way has landed, so what the seek records is what the broker
    holds. Acks go on meanwhile; the next commit takes them.
    """
    if getattr(Consumer, "_invsync_seek_excludes_commit", False):
        return
    perform_seek = Consumer.perform_seek

    async def _perform_seek(self: Any) -> None:
        while (busy := self._commit_fut) is not None:
            await asyncio.wait([busy])  # a commit under way lands first
        self._commit_fut = guard = asyncio.get_running_loop().create_future()
        try:
            await perform_seek(self)
        finally:
            if self._commit_fut is guard:
                self._commit_fut = None
            if not guard.done():
                guard.set_result(None)

    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    Consumer._invsync_seek_excludes_commit = True  # type: ignore[attr-defined]


# --- acks -------------------------------------------------------------------------------


def commit_state(consumer: Any) -> dict[tuple[str, int], tuple[int | None, list[int]]]:
    """(topic, partition) -> (the committed offset as the consumer knows it, the acked
    offsets waiting for a commit) of every assigned partition with acks enabled: what
    Faust's commit (`Consumer._new_offset`) decides from."""
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    committed = consumer._committed_offset
    acked = consumer._acked
    return {
        (tp.topic, tp.partition): (committed.get(tp), list(acked.get(tp) or ()))
        for tp in consumer.assignment()
        if acks_enabled_for(tp.topic)
    }


def back_off_failed_metadata_updates() -> None:
    """Make a failed metadata update of aiokafka's clients wait `retry_backoff_ms` before
    it reports failure (idempotent).

    With the broker away, aiokafka's fetcher finds partitions without a leader, forces a
    metadata update and waits for it; the update fails at once (connection refused) and
    the fetcher asks again: the consumer's thread spun a whole core for as long as the
    broker was away (fault suite, broker outage: 0.94-1.00 cores, py-spy stacks in
    `AIOKafkaClient._md_synchronizer` and `Fetcher._fetch_requests_routine`). aiokafka
    backs off between connection attempts but not between failed metadata updates.
    """
    from aiokafka.client import AIOKafkaClient

    client_cls: Any = AIOKafkaClient
    if getattr(client_cls, "_invsync_md_backoff", False):
        return
    update = client_cls._metadata_update

    async def _metadata_update(self: Any, cluster_metadata: Any, topics: Any) -> bool:
        ok: bool = await update(self, cluster_metadata, topics)
        if not ok:
            await asyncio.sleep(self._retry_backoff)
        return ok

    client_cls._metadata_update = _metadata_update
    client_cls._invsync_md_backoff = True


def ack_batch(consumer: Any, messages: list[Any]) -> None:
    """`Consumer.ack` for each of ``messages``, under one hold of Faust's ack lock and
    with one wake-up of a waiter (the fast path acks thousands at a time; per message,
    the lock, the lookups and the notify cost more than the rest of the ack)."""
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    committed_offset = consumer._committed_offset
    acked_index = consumer._acked_index
    acked = consumer._acked
    unacked = consumer._unacked_messages
    n_acked = 0
    notified = False
    with ack_lock:
        try:
            for message in messages:
                if message.acked:
                    continue
                message.acked = True
                if not acks_enabled_for(message.topic):
                    continue
                notified = True
                tp = message.tp
                offset = message.offset
                committed = committed_offset[tp]
                if committed is None or offset >= committed:
                    index = acked_index[tp]
                    if offset not in index:
                        unacked.discard(message)
                        index.add(offset)
                        acked[tp].append(offset)
                        n_acked += 1
        finally:
            consumer._n_acked += n_acked
            if notified:
                notify(consumer._waiting_for_ack)


# --- the drainer ------------------------------------------------------------------------


def install_drainer() -> None:
    """Use the drainer below instead of Faust's, on both paths (idempotent).

    Records of topics in ``app._batch_queues`` go to those queues per partition (the fast
    path); every other record goes through Faust's per-record path, with Faust's checks
    before each one.

    Faust's own drainer (`Consumer._drain_messages` over `getmany`) checks for a gap
    before each record against the partition's read offset. When Faust seeks the stream
    partitions to their committed offsets (the end of every recovery), it resets those
    read offsets while the drainer may still be handing on records fetched before: the
    next one then looked like a jump past the committed offset, and Faust recorded
    every offset in between as a gap, acked. Those offsets were acked twice (the gap,
    then the record), and Faust's commit, which walks consecutive acked offsets, moved
    one offset a second: committed offsets stuck about 1,000 behind on Faust's
    per-record path after SIGKILLs (issue 9). The gap was also acked before the records
    in it were processed. Here the gap check is made once per fetched partition, before
    any of its records is handed on; a partition whose read offset a seek moved while
    its records were being fetched is fetched again from there instead (the seek itself
    moves each partition's position and read offset together: `seek_each_to_committed`),
    and a seek that lands while a record or a batch waits for room is not undone: the
    rest of what was fetched before it is dropped, to be fetched again from there.
    """
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]


def restore_in_batches(app: Any, table: Any) -> None:
    """Restore ``table`` from its changelog a fetched batch at a time.

    Faust hands each changelog record to `Recovery` through the conductor, a queue and a
    task switch, and checks after each one whether recovery is done: about 2,000
    records/s on the 2-core machine, 8 minutes for a million keys (README
    "Performance"). Here the drainer gives `restore_batch` every fetched record of a
    changelog partition at once.
    """
    install_drainer()
    restores: dict[str, Any] = getattr(app, "_batch_restores", None) or {}
    restores[table.changelog_topic.get_topic_name()] = table
    app._batch_restores = restores


class _ChangelogEvent:
    """What a table's `apply_changelog_batch` reads of an event: its message."""

    __slots__ = ("message",)

    def __init__(self, message: Any) -> None:
        self.message = message


def restore_batch(app: Any, tp: Any, messages: list[Any]) -> None:
    """`Recovery._slurp_changelogs` for a batch of one changelog partition's records."""
    recovery = app.tables.recovery
    if tp in recovery.active_tps:
        offsets = recovery.active_offsets
        recovery._active_events_received_at[tp] = time.monotonic()
    elif tp in recovery.standby_tps:
        offsets = recovery.standby_offsets
        recovery._standby_events_received_at[tp] = time.monotonic()
    else:
        return  # fetched before a rebalance took the partition away: not ours to apply
    seen = offsets.get(tp)
    fresh = [m for m in messages if seen is None or m.offset > seen]
    if fresh:
        recovery.tp_to_table[tp].apply_changelog_batch([_ChangelogEvent(m) for m in fresh])
        offsets[tp] = fresh[-1].offset
        recovery._last_flush_at = time.monotonic()
    # As `_maybe_signal_recovery_end` and the standby check after each record.
    if recovery.in_recovery and not recovery.need_recovery():
        recovery.flush_buffers()
        recovery._set_recovery_ended()
        recovery.signal_recovery_end.set()
    if not recovery.tables.standbys_ready and not recovery.standby_remaining_total():
        recovery.tables.on_standbys_ready()


async def _drain_messages(self: Consumer, fetcher: Any) -> None:  # pragma: no cover
    app = self.app
    batch_queues: dict[str, Any] = getattr(app, "_batch_queues", {})
    batch_restores: dict[str, Any] = getattr(app, "_batch_restores", {})
    callback = self.callback
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offset = self._read_offset
    to_message = self._to_message
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    acks_enabled_for = app.topics.acks_enabled_for
    suspend_flow = self.suspend_flow
    commit_every = self._commit_every
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            before = dict(read_offset)  # a seek meanwhile moves a partition's read offset
            records, active = await self._wait_next_records(1.0)
            await asyncio.sleep(0)
            if not records or self.should_stop:
                unset_flag(CONSUMER_FETCHING)
                continue
            if not self.flow_active:
                # As Faust's getmany: records fetched while the flow is suspended are not
                # handed on, so seek back to the committed offsets to fetch them again.
                # Dropping them without the seek left offsets that no one ever acked:
                # the group's commits stopped there for good (a fault-suite finding).
                # A partition with no committed offset yet (a new group, or one that
                # never had a record) has nothing to seek back to: seek it to the first
                # dropped record, or that record is lost for good (issue 10, item 10).
                await _seek_back(self, records)
                unset_flag(CONSUMER_FETCHING)
                continue
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0  # as Faust's own drainer: commit every N acks too
                await self.commit()
            generation_id = app.consumer_generation_id
            for tp, recs in records.items():
                if active is not None and tp not in active and tp not in self._buffered_partitions:
                    await _seek_back(self, {tp: recs}, to_committed=False)  # fetch them again
                    continue
                if app.consumer_generation_id != generation_id or not self.flow_active:
                    break
                app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                r_offset = read_offset[tp]
                msgs = [to_message(tp, r) for r in recs if r_offset is None or r.offset >= r_offset]
                if not msgs:
                    continue
                first = msgs[0].offset
                if r_offset is not None and r_offset != before.get(tp) and first > r_offset:
                    # Fetched before a seek moved the partition back to r_offset (and set
                    # its read offset): not a gap. Read it again from there.
                    await _seek_quietly(self, tp, r_offset)
                    continue
                if r_offset and first - r_offset > 1 and acks_enabled_for(tp.topic):
                    await self._add_gap(tp, r_offset + 1, first)
                if tp.topic in batch_restores:
                    restore_batch(app, tp, msgs)
                    read_offset[tp] = msgs[-1].offset
                    continue
                # Handing on waits for room (the agent's channel, the batch queue); a seek
                # landing meanwhile (the end of a recovery) sets the read offset back. It
                # must stay there: set to what was handed on, the records from the seek's
                # position up to it were dropped as read, never acked, and the partition's
                # commits stopped for good (orders, a second worker leaving: make faults).
                q = batch_queues.get(tp.topic)
                if q is not None:
                    if not await _offer(q, (tp, msgs), app, self, generation_id, tp, r_offset):
                        if read_offset[tp] != r_offset:
                            continue  # sought: fetched again from there
                        break  # a rebalance began: Faust seeks back to committed offsets
                    read_offset[tp] = msgs[-1].offset
                    continue
                # Faust's own per-message path for every other topic, with its checks
                # before each message: a message is only marked read once handed on.
                for m in msgs:
                    if app.consumer_generation_id != generation_id or not self.flow_active:
                        break
                    await self.wait_first(callback(m), suspend_flow.wait())
                    if (
                        read_offset[tp] != r_offset  # sought meanwhile: fetched again from there
                        or app.consumer_generation_id != generation_id
                        or not self.flow_active  # a revoke cut it short: not handed on
                    ):
                        break
                    read_offset[tp] = r_offset = m.offset
            unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            return
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def _seek_quietly(consumer: Any, tp: Any, offset: int) -> None:
    """Move ``tp`` to ``offset`` (its read offset with it); a partition revoked meanwhile
    is left to its next owner's seek."""
    try:
        await consumer.seek(tp, offset)
    except Exception as exc:  # noqa: BLE001 - revoked meanwhile: its owner seeks
        log.debug("could not seek %s back: %r", tp, exc)


async def _seek_back(
    consumer: Any, records: Any, *, to_committed: bool = True
) -> None:  # pragma: no cover
    """Fetch `records` again: each partition to its first record, then (`to_committed`)
    every partition with a committed offset to it (which is never after that record)."""
    for tp, recs in records.items():
        if recs:
            await _seek_quietly(consumer, tp, recs[0].offset)
    if not to_committed:
        return
    try:
        await consumer.perform_seek()
    except Exception as exc:  # noqa: BLE001 - Faust logs and goes on, as we do
        log.warning("could not seek back to committed offsets: %r", exc)


async def _offer(
    q: asyncio.Queue[Any],
    item: Any,
    app: Any,
    consumer: Any,
    generation_id: int,
    tp: Any,
    read_offset: int | None,
) -> bool:
    """Put ``item`` once ``q`` has room; False (not put) once a rebalance began or a
    seek moved ``tp``'s read offset away from ``read_offset``.

    Never a blocking ``q.put``: Faust clears flow-controlled queues on rebalance by
    emptying the deque directly, which wakes no waiting putter — a drainer parked in
    ``put`` then waited forever while the consumer looked ready (a fault-suite finding:
    "Ready, but never processing").
    """

    def stale() -> bool:
        return bool(
            app.consumer_generation_id != generation_id
            or not consumer.flow_active
            or consumer._read_offset[tp] != read_offset
        )

    while q.full():
        if stale():
            return False
        await asyncio.sleep(0.005)
    if stale():
        return False
    q.put_nowait(item)
    return True
