"""One way to dead-letter: the DESIGN.md record, a reason label, and the send.

Every agent and task that gives up on an input (stock events, commands, orders,
shipments, marketplace pushes) goes through `DeadLetters`, so the record's shape and
the `invsync_dead_letters_total` labels are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from models.errors import DecodeError
from models.events import DeadLetter
from streams.metrics import Metrics

Send = Callable[[bytes, bytes], Awaitable[Any]]


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


MAX_RECORD_BYTES = 1_000_000 - 1024
"""Faust's producer refuses records over `producer_max_request_size` (1,000,000 bytes by
default); the rest is the record's own overhead."""


class DeadLetters:
    def __init__(self, send: Send, metrics: Metrics, max_bytes: int = MAX_RECORD_BYTES) -> None:
        self._send = send
        self._metrics = metrics
        self._max_bytes = max_bytes

    async def reject(self, msg: Message, error: DecodeError | str, reason: str = "schema") -> None:
        """Dead-letter a consumed message that can never be applied.

        The metric's label is the `DecodeError`'s reason (or ``reason``), never read
        from the message text.
        """
        await self.record(
            source_topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            error=str(error),
            reason=error.reason if isinstance(error, DecodeError) else reason,
        )

    async def record(
        self,
        *,
        source_topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: str,
        reason: str,
    ) -> None:
        """Dead-letter anything else (`offset=-1` when no consumed record stands behind it)."""
        letter = DeadLetter.from_raw(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            error=error,
            failed_at=datetime.now(UTC),
        )
        self._metrics.dead_letters.labels(reason).inc()
        kafka_key = (key or b"")[: self._max_bytes // 4]  # a longer key is cut, too
        await self._send(kafka_key, letter.encode_within(self._max_bytes - len(kafka_key)))
