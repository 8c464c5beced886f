"""The fast stock-event decoder gives exactly what pydantic's does, and takes its own path
for events in the usual form (models/fastdecode.py)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import fastdecode
from models.events import DecodeError, StockEvent, decode_stock_event
from models.fastdecode import decode_stock_event_fast


def outcome(decode: Any, key: bytes | None, value: bytes) -> tuple[str, Any, Any]:
    try:
        event = decode(key, value)
    except DecodeError as exc:
        return "error", str(exc), exc.reason
    assert isinstance(event, StockEvent)
    return "event", event.model_dump(), sorted(event.model_fields_set)


def usual(**changes: Any) -> dict[str, Any]:
    event = {
        "eventId": "ev-1",
        "type": "DELTA",
        "locationCode": "LOC1",
        "channelSkuCode": "SKU:9",
        "quantity": -3,
        "occurredAt": "2026-11-30T13:07:06.292530+05:30",
        "reason": "PICK",
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def test_usual_event_is_decoded_without_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(key: bytes | None, value: bytes) -> StockEvent:
        raise AssertionError("fell back to pydantic")

    monkeypatch.setattr(fastdecode, "decode_stock_event", refuse)
    for event in (
        usual(),
        usual(type="SNAPSHOT", quantity=7, basis="AVAILABLE", occurredAt="2026-01-01T00:00:00Z"),
        usual(orderCode="O-1", reason=None, extra={"nested": [1]}),
    ):
        value = orjson.dumps(event)
        got = decode_stock_event_fast(b"LOC1:SKU:9", value)
        assert got == StockEvent.model_validate_json(value)
        assert got.model_dump_json() == StockEvent.model_validate_json(value).model_dump_json()


@pytest.mark.parametrize(
    "changes",
    [
        {"quantity": True},
        {"quantity": 1.0},
        {"quantity": 1_000_000_001},
        {"type": "SNAPSHOT", "quantity": -1},
        {"basis": "ON_HAND"},
        {"eventId": ""},
        {"eventId": "x" * 129},
        {"locationCode": None},
        {"occurredAt": "1700000000"},
        {"occurredAt": "2026-02-30T00:00:00Z"},
        {"occurredAt": "2026-01-01T00:00:00"},
        {"occurredAt": "2026-01-01 00:00:00Z"},
        {"occurredAt": "2026-01-01T00:00:00z"},
        {"occurredAt": "2026-01-01T00:00:00.1234567+00:00"},
        {"reason": 5},
        {"orderCode": ""},
        {"channelSkuCode": ...},
    ],
)
def test_unusual_events_get_pydantic_answer(changes: dict[str, Any]) -> None:
    value = orjson.dumps(usual(**changes))
    for key in (b"LOC1:SKU:9", b"LOC1:SKU:8", None, b"\xff"):
        assert outcome(decode_stock_event_fast, key, value) == outcome(
            decode_stock_event, key, value
        )


def test_bad_json_and_non_objects_get_pydantic_answer() -> None:
    for value in (b"", b"{", b"[1]", b"null", b'"x"', b'{"eventId": "\xff"}', b"\xef\xbb\xbf{}"):
        assert outcome(decode_stock_event_fast, b"LOC1:SKU:9", value) == outcome(
            decode_stock_event, b"LOC1:SKU:9", value
        )


names = st.text(min_size=1, max_size=4)
instants = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
valid = st.fixed_dictionaries(
    {
        "eventId": names,
        "type": st.sampled_from(["DELTA", "SNAPSHOT"]),
        "locationCode": names,
        "channelSkuCode": names,
        "quantity": st.integers(-5, 5),
        "occurredAt": st.one_of(
            instants, st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5-00:00"])
        ),
    },
    optional={
        "basis": st.sampled_from(["ON_HAND", "AVAILABLE", None]),
        "reason": st.one_of(st.none(), names),
        "orderCode": st.one_of(st.none(), names),
        "other": st.integers(),
    },
)
odd = st.one_of(
    st.none(),
    st.just(...),  # the field left out
    st.booleans(),
    st.integers(-1_000_000_002, 1_000_000_002),
    st.sampled_from([10**20, -(10**20), 1.0, "", "x" * 129, "L" * 256, "delta", "available"]),
    st.text(max_size=3),
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|z|[+-]\d{2}:?\d{2})?\Z"),
)
fields = st.sampled_from(sorted(StockEvent.model_fields))
events = st.tuples(valid, st.dictionaries(fields, odd, max_size=2)).map(
    lambda t: {k: v for k, v in {**t[0], **t[1]}.items() if v is not ...}
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events, key=st.one_of(st.just(b"matching"), st.none(), st.binary(max_size=6)))
def test_fast_path_equals_pydantic(event: dict[str, Any], key: bytes | None) -> None:
    value = json.dumps(event).encode()  # orjson refuses integers beyond 64 bits
    if key == b"matching":
        key = f"{event.get('locationCode')}:{event.get('channelSkuCode')}".encode()
    assert outcome(decode_stock_event_fast, key, value) == outcome(decode_stock_event, key, value)
