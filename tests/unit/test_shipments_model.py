"""`marketplace.shipments` records: what the callbacks' index accepts and refuses (the
published schema, and a key that is the `shipmentId`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from models.errors import DecodeError
from models.messages import decode_shipment

GOOD: dict[str, Any] = {
    "shipmentId": "5001",
    "orderCode": "J-1",
    "shipmentCode": "SH-1",
    "awbNumber": "AWB-77",
    "transporter": "Delhivery",
    "shippingLabelUrl": "https://labels.example/AWB-77.pdf",
}


@pytest.mark.parametrize("shipment_id", ["5001", 5001])
def test_a_shipment_keyed_by_its_id_is_accepted(shipment_id: str | int) -> None:
    shipment = decode_shipment(b"5001", json.dumps(GOOD | {"shipmentId": shipment_id}).encode())
    assert (str(shipment.shipmentId), shipment.orderCode) == ("5001", "J-1")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"shipmentId": True}, "schema"),
        ({"shipmentId": 1.5}, "schema"),
        ({"shipmentId": {"id": 1}}, "schema"),
        ({"shipmentId": ""}, "schema"),
        ({"shipmentId": "s" * 256}, "schema"),
        ({"orderCode": None}, "schema"),
        ({"orderCode": []}, "schema"),
        ({"orderCode": ""}, "schema"),
        ({"shipmentCode": 7}, "schema"),
        ({"awbNumber": None}, "schema"),
        ({"shippingLabelUrl": None}, "schema"),
    ],
)
def test_a_shipment_off_the_schema_is_refused(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_shipment(b"5001", json.dumps(GOOD | change).encode())
    assert caught.value.reason == reason


def test_a_shipment_with_no_order_code_is_refused() -> None:
    body = {k: v for k, v in GOOD.items() if k != "orderCode"}
    with pytest.raises(DecodeError, match="orderCode"):
        decode_shipment(b"5001", json.dumps(body).encode())


@pytest.mark.parametrize("key", [None, b"5002", b"\xff5001", b""])
def test_a_key_that_is_not_the_shipment_id_is_refused(key: bytes | None) -> None:
    """Compaction keeps one record per key: a key naming another shipment would let the
    wrong record survive (or erase a real one)."""
    with pytest.raises(DecodeError) as caught:
        decode_shipment(key, json.dumps(GOOD).encode())
    assert caught.value.reason == "key_mismatch"


@pytest.mark.parametrize("value", [b"", b"[]", b'"5001"', b"{", b"\xff"])
def test_a_value_that_is_not_an_object_is_refused(value: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_shipment(b"5001", value)
