"""`streams.deadletters.DeadLetters`: every record it sends fits the producer's limit."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.deadletters import MAX_RECORD_BYTES, DeadLetters
from streams.metrics import Metrics


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"WH1:A", b"z" * 1_000_000),
        (b"WH1:A", b"\x01" * 200_000),
        (b"\x01" * 600_000, b"{}"),
        (None, b"\xff" * 900_000),
    ],
)
async def test_every_dead_letter_fits_the_producer_limit(key: bytes | None, value: bytes) -> None:
    sent: list[tuple[bytes, bytes]] = []

    async def send(k: bytes, v: bytes) -> None:
        sent.append((k, v))

    letters = DeadLetters(send, Metrics(CollectorRegistry()))
    await letters.reject(Msg("stock", 1, 2, key, value), "bad")
    [(kafka_key, record)] = sent
    assert len(kafka_key) + len(record) <= MAX_RECORD_BYTES
    body = orjson.loads(record)
    assert (body["sourceTopic"], body["partition"], body["offset"]) == ("stock", 1, 2)
    assert body["error"].startswith("bad")
    assert (key or b"").startswith(kafka_key)
