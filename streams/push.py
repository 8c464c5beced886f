"""Marketplace inventory push: the newest published quantity of each key, PUT in batches.

Only the newest quantity per key waits (a dict, not a queue), so an outage builds no
backlog of stale values. What was pushed is recorded per key (version) in a table
co-partitioned with the inventory state; after a restart or rebalance, keys whose
published version is above their pushed version are pending again, so every key
converges to its latest quantity. Versions only grow, so an older quantity can never
overwrite a newer one. A SKU the marketplace keeps refusing (its `failureList`, or a 4xx
for its batch) is dead-lettered after a few attempts. A batch failing as a whole for a
reason that is not the data's (5xx, 429, no answer, and 401/403: the credentials) is an
outage: every key keeps waiting and rounds back off.

On a rebalance the round in flight is cancelled (its connection closed, so a PUT of an
old owner cannot land after the new owner's), the revoked partitions' keys are dropped
and nothing is pushed until the rebalance completes, when `rescan` re-reads the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from connectors.errors import ConnectorError
from connectors.marketplace import MarketplaceInventoryClient
from connectors.retry import Backoff
from models.events import parse_inventory_key
from streams.deadletters import DeadLetters
from streams.metrics import Metrics
from streams.state import StateTable

log = logging.getLogger(__name__)


MAX_SKU_ATTEMPTS = 5
AUTH_STATUSES = frozenset({401, 403})
OUTAGE_BACKOFF = Backoff(base=0.5, max_delay=30.0, max_attempts=None, deadline=math.inf)
"""Waits between push rounds while the marketplace is unavailable (delays only)."""


@dataclass(slots=True)
class _Pending:
    location: str
    sku: str
    quantity: int
    version: int
    partition: int
    attempts: int = 0


class MarketplacePusher:
    def __init__(
        self,
        *,
        client: MarketplaceInventoryClient,
        pushed: StateTable,
        dead_letters: DeadLetters,
        metrics: Metrics,
        source_topic: str,
        backoff: Backoff = OUTAGE_BACKOFF,
    ) -> None:
        self.client = client
        self.pushed = pushed
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.source_topic = source_topic
        self.backoff = backoff
        self.pending: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._outages = 0
        self._not_before = 0.0
        self._round: asyncio.Task[int] | None = None
        self._paused = False

    def note(
        self, key: str, location: str, sku: str, quantity: int, version: int, partition: int
    ) -> None:
        """A newer publication of `key`: it replaces whatever of the key still waits."""
        current = self.pending.get(key)
        if current is not None and current.version >= version:
            return
        pushed = self.pushed.get(key)
        if isinstance(pushed, int) and pushed >= version:
            return
        self.pending[key] = _Pending(location, sku, quantity, version, partition)
        self.metrics.keys_pending_push.set(len(self.pending))
        self._wake.set()

    def rescan(self, items: Iterable[tuple[str, Any, int]]) -> int:
        """After a rebalance (and so after a restart): every key whose recorded publication
        is above its pushed version waits again, and pushing resumes. Publication records
        are written only once acknowledged, so what is found here did reach consumers."""
        before = len(self.pending)
        for key, state, partition in items:
            if state.last_published_qty is None:
                continue
            location, sku = parse_inventory_key(key, state.location or None)
            self.note(key, location, sku, state.last_published_qty, state.version, partition)
        self.resume()
        found = len(self.pending) - before
        if found:
            log.info("%d keys published but not yet pushed: pushing them", found)
        return found

    async def revoke(self, partitions: set[int]) -> None:
        """A rebalance began: cancel the round in flight and wait for it to end, drop the
        keys of `partitions`, and push nothing until `rescan` (or `resume`)."""
        self._paused = True
        round_ = self._round
        if round_ is not None and not round_.done():
            round_.cancel()
            await asyncio.wait([round_])
        self.forget_partitions(partitions)

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    def forget_partitions(self, partitions: set[int]) -> None:
        for key in [k for k, p in self.pending.items() if p.partition in partitions]:
            del self.pending[key]
        self.metrics.keys_pending_push.set(len(self.pending))

    async def run(self, stopped: Callable[[], bool]) -> None:
        """The push loop (an app task): push what waits, back off through outages."""
        while not stopped():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)
            self._wake.clear()
            wait = self._not_before - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, 0.5))
                continue
            if self.pending and not self._paused:
                await self._run_round()

    async def _run_round(self) -> None:
        # A task of its own, so `revoke` can cancel the round without cancelling the loop.
        self._round = round_ = asyncio.ensure_future(self.push_once())
        try:
            await asyncio.wait([round_])
        except asyncio.CancelledError:  # the worker stops: so does its round
            round_.cancel()
            raise
        finally:
            self._round = None
        if round_.cancelled():
            log.info("marketplace push round cancelled by a rebalance")
            return
        exc = round_.exception()
        if exc is not None:  # the loop must outlive any single failure
            log.error("marketplace push round failed", exc_info=exc)
            self._back_off()

    def _back_off(self, why: str = "unavailable") -> None:
        self._outages += 1
        delay = self.backoff.delay(self._outages)
        self._not_before = time.monotonic() + delay
        log.warning(
            "marketplace push %s; %d keys kept, next try in %.1fs", why, len(self.pending), delay
        )

    async def push_once(self) -> int:
        """One round over every waiting key; returns how many keys were pushed."""
        batch = dict(self.pending)
        by_location: dict[str, list[tuple[str, _Pending]]] = {}
        for key, item in batch.items():
            by_location.setdefault(item.location, []).append((key, item))
        done = 0
        outage = auth = False
        for location, entries in by_location.items():
            result = await self.client.push(
                location, [(item.sku, item.quantity) for _, item in entries]
            )
            failed = set(result.failed)
            refused = sum(1 for e in result.errors if e.status in AUTH_STATUSES)
            if refused:
                self.metrics.marketplace_auth_failures.inc(refused)
            # Not the data's fault: every SKU of the batch waits, none counts an attempt.
            batch_outage = any(_is_outage(e) for e in result.errors)
            auth = auth or bool(refused)
            outage = outage or bool(result.errors)
            for key, item in entries:
                if item.sku not in failed:
                    self.pushed.put(key, item.version, item.partition)
                    if self.pending.get(key) is item:
                        del self.pending[key]
                    done += 1
                elif not batch_outage:
                    await self._sku_failed(key, item, result.errors)
        if outage:
            self._back_off("refused: check INVSYNC_MARKETPLACE_HEADERS" if auth else "failed")
        else:
            self._outages = 0
        self.metrics.keys_pending_push.set(len(self.pending))
        return done

    async def _sku_failed(self, key: str, item: _Pending, errors: tuple[object, ...]) -> None:
        item.attempts += 1
        self.metrics.marketplace_sku_failures.inc()
        if item.attempts < MAX_SKU_ATTEMPTS:
            return
        reason = (
            f"marketplace refused SKU {item.sku} at {item.location} "
            f"{MAX_SKU_ATTEMPTS} times" + (f": {errors[-1]}" if errors else " (failureList)")
        )
        log.error("%s; dead-lettered", reason)
        await self.dead_letters.record(
            source_topic=self.source_topic,
            partition=item.partition,
            offset=-1,
            key=key.encode(),
            value=orjson.dumps(
                {
                    "locationCode": item.location,
                    "channelSkuCode": item.sku,
                    "quantity": item.quantity,
                    "version": item.version,
                }
            ),
            error=reason,
            reason="unsupported",
        )
        # Only once recorded: a round cancelled meanwhile leaves the key waiting.
        if self.pending.get(key) is item:
            del self.pending[key]


def _is_outage(error: ConnectorError) -> bool:
    """A failure of the service or of our credentials, not of the SKUs sent."""
    return error.retriable or error.status in AUTH_STATUSES
