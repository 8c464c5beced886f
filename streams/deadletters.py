"""One way to dead-letter: the DESIGN.md record, a reason label, and the send.

Every agent and task that gives up on an input (stock events, commands, orders,
shipments, marketplace pushes) goes through `DeadLetters`, so the record's shape and
the `invsync_dead_letters_total` labels are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from models.events import DeadLetter
from streams.metrics import Metrics

Send = Callable[[bytes, bytes], Awaitable[Any]]


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def dead_letter_reason(error: str) -> str:
    """A small, fixed set of metric labels for dead-letter reasons."""
    text = error.lower()
    if "invalid json" in text or "json_invalid" in text or "eof while parsing" in text:
        return "invalid_json"
    if "does not match" in text or "missing key" in text or "key is not" in text:
        return "key_mismatch"
    return "schema"


class DeadLetters:
    def __init__(self, send: Send, metrics: Metrics) -> None:
        self._send = send
        self._metrics = metrics

    async def reject(self, msg: Message, error: str) -> None:
        """Dead-letter a consumed message that can never be applied."""
        await self.record(
            source_topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            error=error,
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
        reason: str | None = None,
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
        self._metrics.dead_letters.labels(reason or dead_letter_reason(error)).inc()
        await self._send(key or b"", letter.encode())
