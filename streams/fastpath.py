"""Per-partition batches for the inventory agent, without Faust's per-record path.

Faust hands every fetched record to a stream one by one (four asyncio tasks per
record in `Consumer._drain_messages`, then the conductor, the stream queue and
`take_events`). Profiling (bench/FINDINGS.md) put its ceiling near 7,000 events/s on
our 2-core machine, far below DESIGN.md's 20,000/s, while the inventory logic itself
took ~6% of the time. `install(app, topic, handler)` keeps everything Faust does per
*batch* — fetching in its consumer thread, flow control, rebalance generation checks,
tables and changelogs, acks and offset commits — and replaces the per-record path for
one (multi-name) topic:

* the fetcher groups each fetch per topic-partition and puts `(tp, [Message, ...])` on
  a bounded `app.FlowControlQueue` (cleared and suspended by Faust on rebalance);
* one app task takes batches, drops stale ones (generation changed or flow suspended,
  as `Stream._c_aiter` does for single events), tracks the messages (so a rebalance
  waits for them), sets the current event to the batch's last message, awaits
  `handler(tp, messages)` and acks every message; Faust's normal machinery commits.

Other topics keep Faust's normal path. The patched drainer is in `streams/faustcompat.py`
with Faust's other internals; `INVSYNC_FAST_PATH=false` turns it off and the agent falls
back to `take_events`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import TP, Message

from streams.faustcompat import ack_batch, current_event, install_drainer

log = logging.getLogger(__name__)

BatchHandler = Callable[[TP, list[Message]], Awaitable[None]]

CATCH_UP_COMMIT_S = 0.1
"""Once the batch queue runs empty, what was acked is committed within this (Faust's
own commits come every `INVSYNC_COMMIT_INTERVAL_MS` or 10,000 acks: at the end of a
burst the last acks waited up to a second, a quarter of a 200,000-event backlog's time
in `make bench`). Under steady input that is at most one commit per this interval."""


def merge_batches(
    queued: list[tuple[TP, list[Message]]], *, combine: bool = False
) -> list[tuple[TP, list[Message]]]:
    """Merge queued ``(tp, messages)`` batches: one per partition, in offset order, or
    with ``combine`` one for all partitions (named by its last partition).  Batches of
    different consumer generations are never merged, so a stale one is dropped whole."""
    out: list[tuple[TP, list[Message]]] = []
    groups: dict[TP, list[Message]] = {}
    generation: Any = object()
    last_tp: TP | None = None

    def close() -> None:
        if combine and last_tp is not None:
            out.append((last_tp, [m for msgs in groups.values() for m in msgs]))
        else:
            out.extend(groups.items())

    for tp, msgs in queued:
        if not msgs:
            continue
        if msgs[0].generation_id != generation:
            close()
            groups, last_tp = {}, None
            generation = msgs[0].generation_id
        groups.setdefault(tp, []).extend(msgs)
        last_tp = tp
    close()
    return out


class CatchUpCommit:
    """Commits what the batch loop acked once its queue runs empty, at most once per
    `CATCH_UP_COMMIT_S`, beside the loop: one commit at a time runs as its own task, so
    a slow commit (a slow or restarting broker) never holds up the next batch."""

    def __init__(
        self,
        commit: Callable[[], Awaitable[object]],
        may_commit: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``may_commit()`` False (the flow suspended: a rebalance or the worker stopping)
        holds commits back: Faust commits then itself, and after its consumer thread
        stopped a commit would wait for it for ever (the worker could not exit)."""
        self._commit = commit
        self._may_commit = may_commit
        self._clock = clock
        self.owed = False
        """Acked since the last commit started."""
        self._last = float("-inf")
        self.running: asyncio.Future[None] | None = None

    def acked(self) -> None:
        self.owed = True

    def wait_s(self) -> float | None:
        """How long to wait for the next batch before committing (None: no commit owed,
        wait as long as it takes)."""
        if not self.owed:
            return None
        return max(0.0, self._last + CATCH_UP_COMMIT_S - self._clock())

    def start(self) -> None:
        """The queue stayed empty: start a commit, unless one still runs or commits are
        held back (then look again after `CATCH_UP_COMMIT_S`; acks since a running commit
        started are owed to the next)."""
        self._last = self._clock()
        if self.running is not None and not self.running.done():
            return
        if not self._may_commit():
            return  # still owed: looked at again after `CATCH_UP_COMMIT_S`
        self.owed = False
        self.running = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            await self._commit()
        except Exception as exc:  # noqa: BLE001 - the interval commit tries again
            log.warning("committing offsets after catching up failed: %s", exc)

    def stop(self) -> None:
        if self.running is not None and not self.running.done():
            self.running.cancel()


async def _get_within(q: Any, seconds: float) -> Any:
    """The queue's next item, or None if none comes within ``seconds``."""
    if seconds <= 0:
        return None
    try:
        return await asyncio.wait_for(q.get(), seconds)
    except TimeoutError:
        return None


def install(
    app: Any,
    topic: Any,
    handler: BatchHandler,
    *,
    max_batches: int = 8,
    combine: bool = False,
    fatal: Callable[[BaseException], None],
    name: str = "inventory",
) -> None:
    """Route ``topic``'s records to ``handler(tp, messages)`` in per-partition batches.

    With ``combine=True`` one call gets the queued records of all partitions (grouped
    by partition, each in offset order; ``tp`` is the last partition's), for handlers
    that write tables with explicit partitions rather than via the current event.

    ``fatal(exc)`` is called when the handler raises: the batch is neither acked nor
    committed, and the process must not linger without consuming.

    ``name`` names the placeholder agent (one per installed topic).

    Call at import time, before the worker starts.  ``topic`` must be a
    ``faust.Topic`` (acks enabled, its partitions co-partitioned with the tables
    the handler writes).  The handler runs with Faust's current event set to the
    batch's last message, so ``table[key] = value`` goes to the right changelog
    partition; it must not keep messages beyond its return (they are acked then).
    """
    install_drainer()

    # A placeholder agent makes Faust subscribe to the topic, enable acks for it
    # and count it as the tables' source topic; it never receives a record
    # because the patched fetcher routes the topic's records to the batch queue.
    async def _batch_placeholder(stream: Any) -> None:
        async for _ in stream:  # pragma: no cover
            pass

    app.agent(topic, name=f"{name}-batch-placeholder")(_batch_placeholder)
    queues: dict[str, Any] = getattr(app, "_batch_queues", None) or {}
    app._batch_queues = queues
    holder: dict[str, Any] = {}

    def _queue() -> Any:
        if "q" not in holder:
            holder["q"] = app.FlowControlQueue(maxsize=max_batches, clear_on_resume=True)
            for name in topic.topics:
                queues[name] = holder["q"]
        return holder["q"]

    for name in topic.topics:
        queues[name] = None  # placeholder so the patched drainer is used

    async def _batch_loop() -> None:
        q = _queue()
        consumer = app.consumer
        unacked = consumer._unacked_messages
        create_event = app.create_event
        flow = app.flow_control
        catch_up = CatchUpCommit(
            consumer.commit,
            lambda: flow.is_active() and not app.should_stop and not consumer.should_stop,
        )
        try:
            while not app.should_stop:
                # Take everything already queued, not one fetch's partition at a time:
                # when the handler falls behind, its next call gets all that piled up
                # (fewer, larger calls, so its per-call waits do not add up).
                wait = catch_up.wait_s() if q.empty() else None
                if wait is None:
                    first = await q.get()
                else:
                    first = await _get_within(q, wait)
                    if first is None:  # caught up: commit what was acked
                        catch_up.start()
                        continue
                queued: list[tuple[TP, list[Message]]] = [first]
                while not q.empty():
                    queued.append(q.get_nowait())
                for tp, msgs in merge_batches(queued, combine=combine):
                    generation = msgs[0].generation_id
                    if generation != app.consumer_generation_id or not flow.is_active():
                        continue  # stale: from before a rebalance, never tracked or acked
                    for m in msgs:
                        m.tracked = True
                        unacked.add(m)
                    last = msgs[-1]
                    event = create_event(last.key, last.value, last.headers, last)
                    token = current_event.set(weakref.ref(event))
                    try:
                        await handler(tp, msgs)
                    except Exception as exc:
                        fatal(exc)
                        raise
                    finally:
                        current_event.reset(token)
                    ack_batch(consumer, msgs)
                    catch_up.acked()
        finally:
            catch_up.stop()

    app.task(_batch_loop)

    # create the queue when the app starts, before the fetcher runs
    orig_on_start = app.on_start

    async def on_start() -> None:
        _queue()
        await orig_on_start()

    app.on_start = on_start
