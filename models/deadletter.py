"""`invsync.dead-letters` records (DESIGN.md "Topics"): what arrived, where from, why refused."""

from __future__ import annotations

from datetime import datetime

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict


class DeadLetter(BaseModel):
    """What arrived, where from, and why it could not be applied."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sourceTopic: str
    partition: int
    offset: int
    key: str | None
    value: str
    error: str
    failedAt: AwareDatetime

    @classmethod
    def from_raw(
        cls,
        *,
        source_topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: str,
        failed_at: datetime,
    ) -> DeadLetter:
        """Keep the original bytes readable even when they are not valid UTF-8."""
        return cls(
            sourceTopic=source_topic,
            partition=partition,
            offset=offset,
            key=None if key is None else key.decode("utf-8", errors="replace"),
            value="" if value is None else value.decode("utf-8", errors="replace"),
            error=error,
            failedAt=failed_at,
        )

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump())

    def encode_within(self, budget: int) -> bytes:
        """The encoded letter in at most `budget` bytes where possible: a value (then key)
        too large for the dead-letter topic is cut, and `error` says so. A letter the broker
        refuses would stop the agent on the very message it refuses, again on each restart.
        """
        data = self.encode()
        letter = self
        for name in ("value", "key"):
            full = getattr(self, name) or ""
            text = full
            while text and len(data) > budget:
                # Escaped characters take up to 6 bytes: shrink in proportion until it fits.
                text = text[: int(len(text) * budget / len(data) * 0.9)]
                note = f" (dead letter: {name} cut to {len(text)} of {len(full)} characters)"
                letter = letter.model_copy(update={name: text, "error": self.error + note})
                data = letter.encode()
        return data
