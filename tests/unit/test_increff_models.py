"""Increff wire models against every published sample (tests/fixtures/increff-samples)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from models import increff as m
from tests.fixtures import INCREFF_SAMPLES

SAMPLES_DIR = INCREFF_SAMPLES

# (file, top-level section) -> model. The section is a body; `_*` keys inside are metadata.
MAPPING: dict[tuple[str, str], type[m.IncreffModel]] = {
    ("add-items-to-return-order.json", "request"): m.AddReturnItems,
    ("consolidated-atp-inventory.json", "request"): m.ConsolidatedAtpInventory,
    ("consolidated-atp-inventory.json", "response"): m.ConsolidatedAtpResponse,
    ("create-manifest.json", "request"): m.CreateManifest,
    ("create-manifest.json", "response"): m.ManifestResponse,
    ("create-outward-order-partner-code.json", "request"): m.OutwardOrder,
    ("create-outward-order.json", "request"): m.OutwardOrder,
    ("create-outward-order.json", "request_older_version_partial"): m.OutwardOrder,
    ("create-outward-orders-bulk.json", "request"): m.OutwardOrderList,
    ("create-return-order.json", "request"): m.CreateReturnOrder,
    ("customer-cancellation.json", "request"): m.CustomerCancellation,
    ("error-format.json", "increffErrorResponse"): m.IncreffErrorBody,
    ("error-format.json", "clientErrorResponse_case2_http200"): m.ClientResult,
    ("error-format.json", "clientErrorResponse_4xx"): m.ClientResult,
    ("error-format.json", "clientErrorResponse_5xx"): m.ClientResult,
    ("get-invoice.json", "request"): m.GetInvoiceQuery,
    ("get-invoice.json", "response"): m.GetInvoiceResponse,
    ("get-invoice.json", "response_older_version_complete"): m.GetInvoiceResponse,
    ("get-shipping-label.json", "request"): m.GetShippingLabelQuery,
    ("get-shipping-label.json", "response"): m.GetShippingLabelResponse,
    ("handover-notification.json", "request"): m.Handover,
    ("handover-notification.json", "response"): m.ClientResult,
    ("location-wise-atp-inventory.json", "request"): m.LocationAtpInventory,
    ("location-wise-atp-inventory.json", "response"): m.SkuListResponse,
    ("order-acknowledgement.json", "request"): m.OrderAcknowledgement,
    ("order-acknowledgement.json", "response"): m.OrderAcknowledgementResponse,
    ("pack-order.json", "request"): m.PackOrder,
    ("push-atp-inventory-for-stores.json", "request"): m.ConsolidatedAtpInventory,
    ("return-order-acknowledgement.json", "request"): m.ReturnOrderAcknowledgement,
    ("search-inventory.json", "request"): m.SearchInventoryRequest,
    ("search-inventory.json", "response"): m.SearchInventoryResponse,
    ("seller-cancellation.json", "request"): m.SellerCancellation,
    ("seller-cancellation.json", "response"): m.ClientResult,
    ("update-order-custom-attributes.json", "request"): m.UpdateOrderCustomAttributes,
    ("update-order-properties.json", "request"): m.UpdateOrderProperties,
    ("update-return-order.json", "request"): m.UpdateReturnOrder,
}

# Sections that are not bodies of an API invsync speaks, with the reason.
NOT_OURS = {
    ("authentication.json", "inboundHeaders"): "HTTP headers, checked by the client tests",
    ("authentication.json", "getCredential"): "Get Credential client URL: not served",
    ("search-return-order.json", "request"): "Search Return Order API: not used",
    ("search-return-order.json", "response"): "Search Return Order API: not used",
    ("usp-create-manifest.json", "*"): "USP/EFS inbound API: not used",
    ("usp-handover.json", "*"): "USP/EFS inbound API: not used",
    ("usp-pack-and-get-pack-details.json", "*"): "USP/EFS inbound API: not used",
    ("usp-return-processing-update.json", "*"): "USP/EFS inbound API: not used",
    ("usp-seller-cancellation.json", "*"): "USP/EFS inbound API: not used",
    # Same page, fields elided as "identical to above": merged in test_invoice_intermediate.
    ("get-invoice.json", "response_intermediate_version_partial"): "merged below",
    ("usp-pack-and-get-pack-details.json", "response_older_version_invoiceDetails"): "USP",
}

pytestmark = pytest.mark.skipif(not SAMPLES_DIR.is_dir(), reason="samples not present")


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES_DIR / name).read_text())
    return data


def _bodies() -> list[tuple[str, str]]:
    if not SAMPLES_DIR.is_dir():
        return []
    found = []
    for path in sorted(SAMPLES_DIR.glob("*.json")):
        for key, value in _load(path.name).items():
            if not key.startswith("_") and value is not None:
                found.append((path.name, key))
    return found


@pytest.mark.parametrize(("name", "section"), _bodies())
def test_every_sample_body_is_mapped(name: str, section: str) -> None:
    assert (name, section) in MAPPING or (name, section) in NOT_OURS or (name, "*") in NOT_OURS


def _keys_within(produced: Any, source: Any, path: str = "$") -> None:
    """Every key we write is a key the sample used at the same place (no invented names)."""
    if isinstance(produced, dict):
        assert isinstance(source, dict), path
        for key, value in produced.items():
            src_key = "sucessList" if key == "successList" and key not in source else key
            if value == [] and src_key not in source:
                continue  # a list defaulted to empty (sample cut before it)
            assert src_key in source, f"{path}.{key} not in sample"
            _keys_within(value, source[src_key], f"{path}.{key}")
    elif isinstance(produced, list):
        assert isinstance(source, list), path
        for i, (a, b) in enumerate(zip(produced, source, strict=True)):
            _keys_within(a, b, f"{path}[{i}]")


@pytest.mark.parametrize(("name", "section"), sorted(MAPPING))
def test_sample_validates_and_round_trips(name: str, section: str) -> None:
    model = MAPPING[(name, section)]
    body = _load(name)[section]
    parsed = model.model_validate(body)
    assert model.model_validate_json(orjson.dumps(body)) == parsed
    wire = parsed.to_wire()
    assert model.model_validate(wire) == parsed
    assert model.model_validate_json(orjson.dumps(wire)) == parsed
    _keys_within(wire, body)


def test_invoice_intermediate_version_with_the_fields_it_says_are_identical() -> None:
    sample = _load("get-invoice.json")
    body = {**sample["response"], **sample["response_intermediate_version_partial"]}
    parsed = m.GetInvoiceResponse.model_validate(body)
    assert parsed.invoiceDetails and parsed.invoiceDetails[0].orderItemCode == "item123"


def test_search_inventory_accepts_misspelling_and_writes_correct_name() -> None:
    parsed = m.SearchInventoryResponse.model_validate(_load("search-inventory.json")["response"])
    assert [s.channelSkuCode for s in parsed.successList] == ["100565431", "100565433"]
    assert parsed.failureList == ["100565435", "100565437"]
    wire = parsed.to_wire()
    assert "successList" in wire and "sucessList" not in wire
    assert m.SearchInventoryResponse.model_validate({"successList": wire["successList"]}) == (
        m.SearchInventoryResponse(successList=parsed.successList)
    )


def test_sku_list_response_reduces_objects_to_skus() -> None:
    parsed = m.SkuListResponse.model_validate(_load("consolidated-atp-inventory.json")["response"])
    assert parsed.successList == ["301"] and parsed.failureList == ["302"]


def test_consolidated_quantity_sent_as_string_is_an_int() -> None:
    parsed = m.ConsolidatedAtpResponse.model_validate(
        _load("consolidated-atp-inventory.json")["response"]
    )
    assert parsed.failureList[0].consolidatedQuantity == 26


def test_manifest_accepts_both_spellings_of_pack_box_list() -> None:
    item = {"orderCode": "o1", "packBoxDetailsList": [{"boxId": 1, "awbNumber": "A"}]}
    parsed = m.CreateManifest.model_validate({"manifestItems": [item]})
    assert parsed.manifestItems[0].packboxDetailsList == [m.BoxAwb(boxId=1, awbNumber="A")]


def test_extra_fields_are_ignored() -> None:
    body = _load("customer-cancellation.json")["request"]
    body = {**body, "surprise": {"x": 1}}
    body["orderItems"] = [{**i, "newField": "v"} for i in body["orderItems"]]
    parsed = m.CustomerCancellation.model_validate(body)
    wire = parsed.to_wire()
    assert "surprise" not in wire
    assert all("newField" not in i for i in wire["orderItems"])


def _order(**changes: Any) -> dict[str, Any]:
    item = {"channelSkuCode": "SKU-1", "orderItemCode": "I-1", "quantity": 1}
    return {"orderCode": "O-1", "locationCode": "L-1", "orderItems": [item], **changes}


def test_string_of_255_ok_256_rejected() -> None:
    assert m.OutwardOrder.model_validate(_order(orderCode="x" * 255)).orderCode == "x" * 255
    with pytest.raises(ValidationError, match="255"):
        m.OutwardOrder.model_validate(_order(orderCode="x" * 256))
    with pytest.raises(ValidationError):
        m.Address.model_validate({"line1": "y" * 256})


def test_base64_and_urls_are_not_capped() -> None:
    blob = "A" * 10_000
    parsed = m.GetShippingLabelResponse(awbNumber="a", transporter="t", shippingLabel=blob)
    assert parsed.shippingLabel == blob


@pytest.mark.parametrize("bad", [1.5, "2", True, 0, -1, None])
def test_order_quantity_is_a_positive_json_integer(bad: Any) -> None:
    body = _order()
    body["orderItems"][0]["quantity"] = bad
    with pytest.raises(ValidationError):
        m.OutwardOrder.model_validate(body)


@pytest.mark.parametrize("bad", [b"Infinity", b"-Infinity", b"NaN", b"1e999", b"true", b'"12.5"'])
def test_prices_are_finite_json_numbers(bad: bytes) -> None:
    """Infinity and NaN would reach Increff as null (orjson), `true` as 1.0."""
    body = _order()
    body["orderItems"][0]["sellingPricePerUnit"] = "PRICE"
    raw = json.dumps(body).encode().replace(b'"PRICE"', bad)
    with pytest.raises(ValidationError, match="sellingPricePerUnit"):
        m.OutwardOrder.model_validate_json(raw)
    body["orderItems"][0]["sellingPricePerUnit"] = 12
    assert m.OutwardOrder.model_validate(body).orderItems[0].sellingPricePerUnit == 12.0


def test_required_fields_and_rules() -> None:
    with pytest.raises(ValidationError, match="orderCode"):
        m.OutwardOrder.model_validate({"locationCode": "L"})
    dup = _order()
    dup["orderItems"] = dup["orderItems"] * 2
    with pytest.raises(ValidationError, match="once"):
        m.OutwardOrder.model_validate(dup)
    with pytest.raises(ValidationError, match="2500"):
        m.OutwardOrder.model_validate(
            _order(
                orderItems=[
                    {"channelSkuCode": f"S{i}", "orderItemCode": f"I{i}", "quantity": 1}
                    for i in range(2501)
                ]
            )
        )
    with pytest.raises(ValidationError, match="invoiceUrl"):
        m.GetInvoiceResponse(invoiceCode="INV")
    with pytest.raises(ValidationError, match="shippingLabel"):
        m.GetShippingLabelResponse(awbNumber="a", transporter="t")
    with pytest.raises(ValidationError):
        m.AtpInventoryItem(channelSkuCode="s", quantity=-1)


def test_models_are_immutable() -> None:
    item = m.AtpInventoryItem(channelSkuCode="s", quantity=1)
    with pytest.raises(ValidationError):
        item.quantity = 2  # type: ignore[misc]


def test_models_import_nothing_of_ours() -> None:
    for mod in ("increff", "increff_orders", "increff_callbacks"):
        source = (Path(m.__file__).parent / f"{mod}.py").read_text()
        imports = [ln for ln in source.splitlines() if ln.startswith(("import ", "from "))]
        assert all("invsync" not in ln or "models.increff" in ln for ln in imports), imports


codes = st.text(st.characters(codec="utf-8"), min_size=1, max_size=255)


@given(
    location=codes,
    items=st.lists(st.tuples(codes, st.integers(min_value=0, max_value=2**40)), max_size=20),
)
def test_location_atp_round_trip(location: str, items: list[tuple[str, int]]) -> None:
    body = m.LocationAtpInventory(
        locationCode=location,
        inventories=[m.AtpInventoryItem(channelSkuCode=s, quantity=q) for s, q in items],
    )
    assert m.LocationAtpInventory.model_validate_json(orjson.dumps(body.to_wire())) == body
