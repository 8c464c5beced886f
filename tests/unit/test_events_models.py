"""Wire models of the inventory topics: what they accept, refuse, and how they encode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.events import (
    CustomerCancelLines,
    DeadLetter,
    DecodeError,
    InventoryCommand,
    InventoryUpdate,
    OrderCreatedLines,
    OrderEvent,
    StockEvent,
    cancel_lines,
    command_id,
    decode_command,
    decode_inventory_update,
    decode_order_event,
    decode_stock_event,
    inventory_key,
    order_created_lines,
    validation_reason,
)
from tests.fixtures import INCREFF_SAMPLES

SAMPLES = INCREFF_SAMPLES
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def stock(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": "e-1",
        "type": "DELTA",
        "locationCode": "WH1",
        "channelSkuCode": "SKU-1",
        "quantity": -2,
        "occurredAt": "2024-03-01T12:00:00+05:30",
    }
    body.update(overrides)
    return body


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


# --- StockEvent -------------------------------------------------------------------


def test_stock_event_decodes_and_keeps_offset() -> None:
    event = decode_stock_event(b"WH1:SKU-1", raw(stock(reason="PICK", orderCode="O1", extra=1)))
    assert event.quantity == -2
    assert event.reason == "PICK"
    assert event.orderCode == "O1"
    assert event.occurredAt.utcoffset() == timedelta(hours=5, minutes=30)
    assert event.key == "WH1:SKU-1"


@pytest.mark.parametrize("quantity", [1.5, 2.0, True, "3", None])
def test_stock_event_quantity_must_be_a_json_integer(quantity: object) -> None:
    with pytest.raises(DecodeError, match=r"^quantity: "):
        decode_stock_event(b"WH1:SKU-1", raw(stock(quantity=quantity)))


def test_stock_event_refuses_naive_datetime() -> None:
    with pytest.raises(DecodeError, match=r"occurredAt: .*timezone"):
        decode_stock_event(b"WH1:SKU-1", raw(stock(occurredAt="2024-03-01T12:00:00")))


NUMERIC_TIMES = [1700000000, 1.7e9, 0, "1700000000", "1.7e9", " 1732961234567 "]


@pytest.mark.parametrize("at", NUMERIC_TIMES)
def test_occurred_at_refuses_unix_numbers_on_every_input(at: object) -> None:
    """Pydantic reads numbers as Unix seconds; the contract says ISO-8601 with an offset
    (epoch millis would otherwise become a date in 55000 AD)."""
    with pytest.raises(DecodeError, match=r"occurredAt: must be an ISO-8601"):
        decode_stock_event(b"WH1:SKU-1", raw(stock(occurredAt=at)))
    body = {"eventId": "oe-1", "type": "ORDER_CREATED", "occurredAt": at, "payload": {}}
    with pytest.raises(DecodeError, match=r"occurredAt: must be an ISO-8601"):
        decode_order_event(raw(body))
    cmd = orjson.loads(command().encode()) | {"occurredAt": at}
    with pytest.raises(DecodeError, match=r"occurredAt: must be an ISO-8601"):
        decode_command(b"WH1:SKU-1", raw(cmd))


def test_stock_event_accepts_z_suffix() -> None:
    event = decode_stock_event(b"WH1:SKU-1", raw(stock(occurredAt="2024-03-01T12:00:00Z")))
    assert event.occurredAt == T0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("eventId", ""),
        ("eventId", "x" * 129),
        ("channelSkuCode", ""),
        ("channelSkuCode", "s" * 256),
        ("type", "ADJUST"),
    ],
)
def test_stock_event_refuses_bad_fields(field: str, value: str) -> None:
    body = stock(**{field: value})
    key = f"{body['locationCode']}:{body['channelSkuCode']}".encode()
    with pytest.raises(DecodeError, match=f"^{field}: "):
        decode_stock_event(key, raw(body))


def test_stock_event_boundary_lengths_are_accepted() -> None:
    body = stock(eventId="x" * 128, channelSkuCode="s" * 255)
    event = decode_stock_event(f"WH1:{'s' * 255}".encode(), raw(body))
    assert len(event.eventId) == 128


def test_snapshot_must_not_be_negative_but_delta_may() -> None:
    with pytest.raises(DecodeError, match="SNAPSHOT quantity must be >= 0"):
        decode_stock_event(b"WH1:SKU-1", raw(stock(type="SNAPSHOT", quantity=-1)))
    assert decode_stock_event(b"WH1:SKU-1", raw(stock(type="SNAPSHOT", quantity=0))).quantity == 0


def test_stock_event_key_must_match() -> None:
    with pytest.raises(DecodeError, match="does not match"):
        decode_stock_event(b"WH1:SKU-2", raw(stock()))
    with pytest.raises(DecodeError, match="missing key"):
        decode_stock_event(None, raw(stock()))
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_stock_event(b"\xff\xfe", raw(stock()))


def test_key_comparison_uses_the_full_string_when_location_has_a_colon() -> None:
    body = stock(locationCode="A:B", channelSkuCode="C")
    assert decode_stock_event(b"A:B:C", raw(body)).key == "A:B:C"
    assert inventory_key("A:B", "C") == "A:B:C"


def test_invalid_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="Invalid JSON"):
        decode_stock_event(b"WH1:SKU-1", b"{not json")


def test_stock_event_is_frozen() -> None:
    event = decode_stock_event(b"WH1:SKU-1", raw(stock()))
    with pytest.raises(ValidationError):
        event.quantity = 5  # type: ignore[misc]


# --- validation_reason ------------------------------------------------------------


def test_validation_reason_is_short_and_names_fields() -> None:
    with pytest.raises(ValidationError) as info:
        StockEvent.model_validate({"eventId": "", "type": "X", "quantity": "1"})
    reason = validation_reason(info.value)
    assert reason.startswith("eventId: String should have at least 1 character; type: ")
    assert reason.endswith("more)")
    assert "\n" not in reason


def test_validation_reason_for_nested_fields() -> None:
    with pytest.raises(DecodeError) as info:
        order_created_lines(
            {
                "orderCode": "O",
                "locationCode": "L",
                "orderItems": [{"channelSkuCode": "S", "orderItemCode": "I", "quantity": 0}],
            }
        )
    assert str(info.value) == "orderItems.0.quantity: Input should be greater than 0"


# --- marketplace.orders -----------------------------------------------------------


def order_envelope(event_type: str, payload: dict[str, Any]) -> bytes:
    return raw(
        {
            "eventId": "oe-1",
            "type": event_type,
            "occurredAt": "2024-03-01T12:00:00Z",
            "payload": payload,
        }
    )


def test_order_event_envelope() -> None:
    event = decode_order_event(order_envelope("CUSTOMER_CANCELLED", {"a": [1]}))
    assert isinstance(event, OrderEvent)
    assert event.type == "CUSTOMER_CANCELLED"
    assert event.payload == {"a": [1]}
    with pytest.raises(DecodeError, match=r"^type: "):
        decode_order_event(order_envelope("ORDER_SHIPPED", {}))
    with pytest.raises(DecodeError, match=r"^payload: "):
        decode_order_event(order_envelope("ORDER_CREATED", []))  # type: ignore[arg-type]


def load_sample(name: str) -> dict[str, Any]:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"Increff samples not found at {SAMPLES}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_create_outward_order_sample_gives_lines() -> None:
    sample = load_sample("create-outward-order.json")
    lines = order_created_lines(sample["request"])
    assert (lines.orderCode, lines.locationCode) == ("ORD-123456", "WAREHOUSE-001")
    assert [(i.channelSkuCode, i.orderItemCode, i.quantity) for i in lines.orderItems] == [
        ("SKU-001", "ITEM-001", 2)
    ]
    older = order_created_lines(sample["request_older_version_partial"])
    assert older.quantities_by_sku() == {"100005643": 2, "100005644": 2}


def test_customer_cancellation_sample_takes_order_code_from_url() -> None:
    sample = load_sample("customer-cancellation.json")
    lines = cancel_lines("ORD-9", sample["request"])
    assert isinstance(lines, CustomerCancelLines)
    assert lines.orderCode == "ORD-9"
    assert lines.cancelled_by_sku() == {"100000789702": 1, "100000789703": 4}


def test_seller_cancellation_sample_also_reads_as_cancel_lines() -> None:
    sample = load_sample("seller-cancellation.json")
    lines = cancel_lines(None, sample["request"])
    assert lines.orderCode == "H19304030001"
    assert lines.cancelled_by_sku() == {"100000789702": 5, "100000789703": 4}


def test_cancel_lines_order_code_sources() -> None:
    body = {
        "locationCode": "L",
        "orderItems": [{"channelSkuCode": "S", "orderItemCode": "I", "cancelledQuantity": 0}],
    }
    assert cancel_lines(None, {**body, "orderCode": "O"}).orderCode == "O"
    assert cancel_lines("O", {**body, "orderCode": "O"}).orderCode == "O"
    with pytest.raises(DecodeError, match="differs"):
        cancel_lines("P", {**body, "orderCode": "O"})
    with pytest.raises(DecodeError, match=r"^orderCode: Field required"):
        cancel_lines(None, body)
    bad = {**body, "orderItems": [{"channelSkuCode": "S", "orderItemCode": "I"}]}
    with pytest.raises(DecodeError, match=r"cancelledQuantity: Field required"):
        cancel_lines("O", bad)
    negative = {
        **body,
        "orderItems": [{"channelSkuCode": "S", "orderItemCode": "I", "cancelledQuantity": -1}],
    }
    with pytest.raises(DecodeError, match=r"cancelledQuantity: .*greater than or equal to 0"):
        cancel_lines("O", negative)


def test_order_lines_refuse_empty_items_and_sum_by_sku() -> None:
    with pytest.raises(DecodeError, match=r"^orderItems: "):
        order_created_lines({"orderCode": "O", "locationCode": "L", "orderItems": []})
    lines = OrderCreatedLines.model_validate(
        {
            "orderCode": "O",
            "locationCode": "L",
            "orderItems": [
                {"channelSkuCode": "S", "orderItemCode": "1", "quantity": 2},
                {"channelSkuCode": "S", "orderItemCode": "2", "quantity": 3},
            ],
        }
    )
    assert lines.quantities_by_sku() == {"S": 5}


# --- InventoryCommand ---------------------------------------------------------------


def command(**overrides: Any) -> InventoryCommand:
    fields: dict[str, Any] = {
        "commandId": command_id("oe-1", 0, "RESERVE"),
        "type": "RESERVE",
        "orderCode": "O1",
        "locationCode": "WH1",
        "channelSkuCode": "SKU-1",
        "occurredAt": T0,
        "quantity": 2,
    }
    fields.update(overrides)
    return InventoryCommand.model_validate(fields)


def test_command_id_is_deterministic_and_distinct_per_type() -> None:
    assert command_id("oe-1", 3, "RESERVE") == "oe-1:3:RESERVE"
    assert command_id("oe-1", 3, "RESERVE") != command_id("oe-1", 3, "ACCEPT")


def test_command_round_trips_through_bytes() -> None:
    cmd = command()
    data = cmd.encode()
    assert orjson.loads(data) == {
        "commandId": "oe-1:0:RESERVE",
        "type": "RESERVE",
        "orderCode": "O1",
        "locationCode": "WH1",
        "channelSkuCode": "SKU-1",
        "occurredAt": "2024-03-01T12:00:00+00:00",
        "quantity": 2,
    }
    assert decode_command(cmd.key.encode(), data) == cmd
    with pytest.raises(DecodeError, match="does not match"):
        decode_command(b"WH1:OTHER", data)


def test_command_requires_fields_per_type() -> None:
    with pytest.raises(ValidationError, match="quantity: required for RESERVE"):
        command(quantity=None)
    with pytest.raises(ValidationError, match="cancelledQuantity: required for CANCEL"):
        command(type="CANCEL", quantity=None)
    with pytest.raises(ValidationError):
        command(quantity=0)
    assert command(type="CANCEL", quantity=None, cancelledQuantity=0).cancelledQuantity == 0
    assert command(type="RELEASE", quantity=None).type == "RELEASE"


# --- outputs ------------------------------------------------------------------------


def test_inventory_update_encodes_camel_case_with_offsets() -> None:
    update = InventoryUpdate(
        locationCode="WH1",
        channelSkuCode="SKU-1",
        quantity=3,
        onHand=5,
        reserved=2,
        version=1_709_294_400_000_000,
        asOf=datetime(2024, 3, 1, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        publishedAt=T0,
    )
    body = orjson.loads(update.encode())
    assert body == {
        "locationCode": "WH1",
        "channelSkuCode": "SKU-1",
        "quantity": 3,
        "onHand": 5,
        "reserved": 2,
        "version": 1_709_294_400_000_000,
        "asOf": "2024-03-01T17:30:00+05:30",
        "publishedAt": "2024-03-01T12:00:00+00:00",
    }
    assert decode_inventory_update(update.encode()) == update
    assert update.key == "WH1:SKU-1"


@settings(max_examples=200, deadline=None)
@given(
    code=st.text(min_size=1, max_size=20),
    quantity=st.integers(0, 2**62),
    on_hand=st.integers(-(2**62), 2**62),
    version=st.integers(0, 2**63),
    at=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3, minutes=-30))])),
)
def test_inventory_update_encodes_as_its_model_dump(
    code: str, quantity: int, on_hand: int, version: int, at: datetime
) -> None:
    """`encode` dumps the fields directly: byte for byte what ``model_dump()`` gives."""
    update = InventoryUpdate(
        locationCode=code,
        channelSkuCode=code[::-1],
        quantity=quantity,
        onHand=on_hand,
        reserved=quantity // 2,
        version=version,
        asOf=at,
        publishedAt=at,
    )
    assert update.encode() == orjson.dumps(update.model_dump())
    decoded = decode_inventory_update(update.encode())
    assert decoded.encode() == update.encode()


def test_dead_letter_keeps_undecodable_bytes_readable() -> None:
    letter = DeadLetter.from_raw(
        source_topic="warehouse.stock-events",
        partition=3,
        offset=42,
        key=b"WH1:\xffSKU",
        value=b'{"quantity": 1.5, "x": "\xfe"}',
        error="quantity: Input should be a valid integer",
        failed_at=T0,
    )
    body = orjson.loads(letter.encode())
    assert body == {
        "sourceTopic": "warehouse.stock-events",
        "partition": 3,
        "offset": 42,
        "key": "WH1:\ufffdSKU",
        "value": '{"quantity": 1.5, "x": "\ufffd"}',
        "error": "quantity: Input should be a valid integer",
        "failedAt": "2024-03-01T12:00:00+00:00",
    }
    empty = DeadLetter.from_raw(
        source_topic="t", partition=0, offset=0, key=None, value=None, error="e", failed_at=T0
    )
    assert (empty.key, empty.value) == (None, "")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"k", b"z" * 1_000_000),  # near the broker's limit already
        (b"k", b"\x01" * 200_000),  # sixfold once escaped into JSON
        (b"k", b"\xff" * 400_000),  # threefold as U+FFFD
        (b"\x01" * 300_000, b"v"),  # the key alone too large
    ],
)
def test_a_dead_letter_too_large_for_the_topic_is_cut_and_says_so(key: bytes, value: bytes) -> None:
    """A letter the broker refuses would stop the agent on the very message it refuses."""
    letter = DeadLetter.from_raw(
        source_topic="t", partition=0, offset=7, key=key, value=value, error="bad", failed_at=T0
    )
    data = letter.encode_within(900_000)
    assert len(data) <= 900_000
    body = orjson.loads(data)
    assert body["error"].startswith("bad (dead letter: ")
    assert "cut to" in body["error"]
    assert letter.value.startswith(body["value"])
    assert (letter.key or "").startswith(body["key"])
    assert len(body["value"]) + len(body["key"]) > 100_000  # cut to fit, not emptied


def test_a_dead_letter_that_fits_is_unchanged() -> None:
    letter = DeadLetter.from_raw(
        source_topic="t",
        partition=0,
        offset=7,
        key=b"k",
        value=b"v" * 1000,
        error="e",
        failed_at=T0,
    )
    assert letter.encode_within(900_000) == letter.encode()
