"""The shipments index and the callback tables' retention rules (no broker)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from streams.shipments import ShipmentIndex, result_stored_at, watch_shipments


def _raw(shipment_id: str, order: str, code: str) -> bytes:
    return orjson.dumps({"shipmentId": shipment_id, "orderCode": order, "shipmentCode": code})


def test_index_finds_by_order_and_shipment_code_and_follows_replacements() -> None:
    index = ShipmentIndex()
    index.add("1", _raw("1", "O-1", "SH-1"), 100.0)
    index.add("2", _raw("2", "O-1", "SH-2"), 100.0)
    assert index.find("O-1", "SH-1") == "1"
    assert index.find("O-1", "SH-2") == "2"
    assert index.find("O-2", "SH-1") is None
    index.add("1", _raw("1", "O-1", "SH-9"), 101.0)  # the shipment's code changed
    assert index.find("O-1", "SH-1") is None
    assert index.find("O-1", "SH-9") == "1"
    index.drop("2")
    assert index.find("O-1", "SH-2") is None
    assert len(index) == 1


def test_index_keeps_shipments_without_codes_for_retention_only() -> None:
    index = ShipmentIndex()
    index.add("1", b"not json", 10.0)
    index.add("2", orjson.dumps({"shipmentId": "2"}), 50.0)
    assert len(index) == 2
    assert sorted(index.older_than(60.0)) == ["1", "2"]
    assert index.older_than(20.0) == ["1"]


def test_dropping_an_old_id_keeps_a_newer_shipment_with_the_same_codes() -> None:
    index = ShipmentIndex()
    index.add("1", _raw("1", "O-1", "SH-1"), 1.0)
    index.add("2", _raw("2", "O-1", "SH-1"), 2.0)  # re-issued under a new id
    index.drop("1")
    assert index.find("O-1", "SH-1") == "2"


class _FakeFaustTable:
    """Stands in for a Faust table: `apply_changelog_batch` writes `data`, as the
    memory store does during recovery and for other workers' writes."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply_changelog_batch(self, batch: Any) -> None:
        for event in batch:
            key = event.key.decode()
            if event.value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = event.value


def _event(key: str, value: bytes | None, ts: float) -> Any:
    return SimpleNamespace(key=key.encode(), value=value, message=SimpleNamespace(timestamp=ts))


def test_changelog_records_applied_by_faust_update_the_index() -> None:
    fake = _FakeFaustTable()
    index = ShipmentIndex()
    watch_shipments(SimpleNamespace(table=fake), index)  # type: ignore[arg-type]
    fake.apply_changelog_batch(
        [_event("7", _raw("7", "O-7", "SH-7"), 500.0), _event("8", _raw("8", "O-8", "S"), 9.0)]
    )
    assert index.find("O-7", "SH-7") == "7"
    assert index.older_than(100.0) == ["8"]
    fake.apply_changelog_batch([_event("7", None, 600.0)])  # a tombstone
    assert index.find("O-7", "SH-7") is None
    assert "7" not in fake.data


def test_result_stored_at_reads_the_stored_time_then_the_atp_time_then_the_default() -> None:
    assert result_stored_at([200, "", 0.0, 1234.5], 9.0) == 1234.5
    assert result_stored_at([200, "", 77.0], 9.0) == 77.0  # before stored-at existed
    assert result_stored_at([200, "", 0.0], 9.0) == 9.0
    assert result_stored_at("garbage", 9.0) == 9.0
