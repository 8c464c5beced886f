"""Bodies Increff sends us (its "Client URL" callbacks) and the answers we give.

Same conventions as `increff_orders`: Increff's camelCase names, unknown fields
ignored, timestamps kept as the strings Increff sent.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator

from models.increff_orders import (
    Address,
    Attributes,
    Code,
    Id,
    IncreffModel,
    Money,
    Qty,
    Str255,
    TaxItem,
    Text,
)

LaxQty = Annotated[int, Field(ge=0, strict=False)]
"""A quantity Increff has been seen to send as a string (`"consolidatedQuantity": "26"`)."""


class CallbackBody(IncreffModel):
    """A body Increff sends us: strict types (no `true` for 1, no `1.0` for an id, no
    `"yes"` for a boolean), since a coerced id would make a later real one a repeat."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, strict=True)


class OrderRef(CallbackBody):
    locationCode: Code
    orderCode: Code


class OrderAcknowledgement(CallbackBody):
    """`PUT` order acknowledgement; consolidationType ALL / STORE / NONE."""

    orders: list[OrderRef] = Field(min_length=1)
    consolidationType: Str255 | None = None


class OrderAcknowledgementResponse(IncreffModel):
    successOrders: list[OrderRef] = Field(default_factory=list)


class Dimensions(CallbackBody):
    length: float | None = None
    breadth: float | None = None
    height: float | None = None


class InvoiceItem(CallbackBody):
    channelSkuCode: Code
    itemName: Str255 | None = None
    quantity: Qty | None = None
    actualSellingPricePerUnit: Money | None = None
    actualSellingPriceTotal: Money | None = None
    taxRule: Str255 | None = None
    hsnCode: Str255 | None = None
    vendorSku: Str255 | None = None
    mrp: Money | None = None
    brand: Str255 | None = None
    styleCode: Str255 | None = None
    color: Str255 | None = None
    size: Str255 | None = None
    category: Str255 | None = None
    imageUrl: Text | None = None


class PackInvoice(CallbackBody):
    fromAddress: Address | None = None
    shippingAddress: Address | None = None
    billingAddress: Address | None = None
    orderTime: Str255 | None = None
    channelName: Str255 | None = None
    fromPartyName: Str255 | None = None
    toPartyName: Str255 | None = None
    fromTIN: Str255 | None = None
    toTIN: Str255 | None = None
    panNo: Str255 | None = None
    invoiceItems: list[InvoiceItem] = Field(default_factory=list)


class PackBox(CallbackBody):
    boxId: Id
    length: float | None = None
    breadth: float | None = None
    height: float | None = None
    weight: float | None = None
    volWeight: float | None = None
    boxSkuId: Str255 | None = None


class ShipmentItem(CallbackBody):
    channelSkuCode: Code
    orderItemCode: Str255 | None = None
    quantity: Qty | None = None
    itemCodes: list[Str255] = Field(default_factory=list)


class PackOrder(CallbackBody):
    """`POST` pack order. `shipmentId` is unique per shipment: repeats must get the same answer.

    fulfillmentType: BLOCK_COMPLETE / SINGLE_SHIPMENT_PARTIAL / MULTI_SHIPMENT_PARTIAL.
    """

    orderCode: Code
    locationCode: Code
    shipmentId: Id
    packageSku: Str255 | None = None
    weight: float | None = None
    fulfillmentType: Str255 | None = None
    dimensions: Dimensions | None = None
    invoice: PackInvoice | None = None
    packboxDetailsList: list[PackBox] = Field(default_factory=list)
    shipmentItems: list[ShipmentItem] = Field(default_factory=list)


class GetInvoiceQuery(IncreffModel):
    """Query parameters of `GET` get-invoice."""

    shipmentCode: Code
    orderCode: Code


class InvoiceDetail(IncreffModel):
    channelSkuCode: Code
    orderItemCode: Str255 | None = None
    clientSkuId: Str255 | None = None
    netTaxAmountPerUnit: Money | None = None
    netTaxAmountTotal: Money | None = None
    baseSellingPricePerUnit: Money | None = None
    baseSellingPriceTotal: Money | None = None
    actualSellingPricePerUnit: Money | None = None
    actualSellingPriceTotal: Money | None = None
    quantity: Qty | None = None
    taxItems: list[TaxItem] | None = None


class GetInvoiceResponse(IncreffModel):
    """Our answer to get-invoice: at least one of `invoiceUrl` and `invoice` (base64)."""

    invoiceCode: Str255 | None = None
    invoiceUrl: Text | None = None
    invoice: Text | None = None
    invoiceDate: Str255 | None = None
    irn: Text | None = None
    qrCode: Text | None = None
    orderCustomAttributes: Attributes | None = None
    invoiceDetails: list[InvoiceDetail] | None = None

    @model_validator(mode="after")
    def _document(self) -> GetInvoiceResponse:
        if not (self.invoiceUrl or self.invoice):
            raise ValueError("one of invoiceUrl and invoice is required")
        return self


class GetShippingLabelQuery(IncreffModel):
    """Query parameters of `GET` get-shipping-label."""

    orderCode: Code
    shipmentId: Id | None = None
    shipmentCode: Str255 | None = None
    locationCode: Str255 | None = None
    arePackBoxLabelsRequired: bool | None = None


class BoxLabel(IncreffModel):
    boxId: Id
    boxLabelUrl: Text | None = None
    boxAwb: Str255 | None = None


class GetShippingLabelResponse(IncreffModel):
    """Our answer to get-shipping-label: `shippingLabelUrl` or `shippingLabel` (base64)."""

    awbNumber: Code
    transporter: Code
    shippingLabelUrl: Text | None = None
    shippingLabel: Text | None = None
    boxLabelDetails: list[BoxLabel] | None = None

    @model_validator(mode="after")
    def _label(self) -> GetShippingLabelResponse:
        if not (self.shippingLabelUrl or self.shippingLabel):
            raise ValueError("one of shippingLabelUrl and shippingLabel is required")
        return self


class BoxAwb(CallbackBody):
    boxId: Id
    awbNumber: Str255 | None = None


class ManifestItem(CallbackBody):
    orderCode: Code
    shipmentCode: Str255 | None = None
    awbNumber: Str255 | None = None
    # The sample writes `packboxDetailsList`, the field table `packBoxDetailsList`.
    packboxDetailsList: list[BoxAwb] | None = Field(
        default=None, validation_alias=AliasChoices("packboxDetailsList", "packBoxDetailsList")
    )


class CreateManifest(CallbackBody):
    """`POST` create manifest."""

    manifestItems: list[ManifestItem] = Field(min_length=1)
    transporter: Str255 | None = None
    locationCode: Str255 | None = None
    manifestId: Id | None = None


class ManifestItemRef(IncreffModel):
    orderCode: Code
    shipmentCode: Str255 | None = None


class ManifestResponse(IncreffModel):
    manifestCode: Code
    manifestItems: list[ManifestItemRef] = Field(default_factory=list)


class HandoverItem(CallbackBody):
    orderCode: Code
    shipmentCode: Str255 | None = None
    gatePassCode: Str255 | None = None
    packBoxDetailsList: list[BoxAwb] = Field(
        default_factory=list,
        validation_alias=AliasChoices("packBoxDetailsList", "packboxDetailsList"),
    )


class Handover(CallbackBody):
    """`POST` handover; must succeed on repeats."""

    locationCode: Str255 | None = None
    handoverItems: list[HandoverItem] = Field(min_length=1)


class SellerCancelledItem(CallbackBody):
    channelSkuCode: Code
    orderItemCode: Str255 | None = None
    cancelledQuantity: Qty
    """Absolute: the total cancelled so far."""
    customerCancelledQty: Qty | None = None
    sellerCancelledQty: Qty | None = None
    acceptedQty: Qty | None = None
    sellerRejectQty: Qty | None = None


class SellerCancellation(CallbackBody):
    """`PUT` seller cancellation: one order per call."""

    orderCode: Code
    locationCode: Code
    orderItems: list[SellerCancelledItem] = Field(min_length=1)


class AtpInventoryItem(CallbackBody):
    channelSkuCode: Code
    quantity: Qty
    """Always the absolute saleable quantity; zero is sent as zero."""
    channelSerialNo: Str255 | None = None
    minExpiry: Str255 | None = None


class LocationAtpInventory(CallbackBody):
    """`PUT` location-wise ATP inventory (also what we push to the marketplace)."""

    locationCode: Code
    inventories: list[AtpInventoryItem]


class ConsolidatedAtpItem(AtpInventoryItem):
    locationCode: Str255 | None = None
    consolidatedQuantity: LaxQty | None = None
    consolidatedMinExpiry: Str255 | None = None
    listingId: Id | None = None
    consolidationType: Str255 | None = None


class ConsolidatedAtpInventory(CallbackBody):
    """`PUT` consolidated ATP; consolidationType ALL / STORE; location per item."""

    inventories: list[ConsolidatedAtpItem]
    consolidationType: Str255 | None = None
    locationCode: Str255 | None = None


class AtpItemRef(IncreffModel):
    """An item refused before it validated: what identifies it, as far as it could be read."""

    channelSkuCode: Str255
    locationCode: Str255 | None = None


class ConsolidatedAtpResponse(IncreffModel):
    """Items echoed per list, as Increff's sample shows; a refused item that did not
    validate is given by its channelSkuCode (and locationCode) only."""

    successList: list[ConsolidatedAtpItem] = Field(default_factory=list)
    failureList: list[
        Annotated[ConsolidatedAtpItem | AtpItemRef, Field(union_mode="left_to_right")]
    ] = Field(default_factory=list)


class SkuListResponse(IncreffModel):
    """`{successList: [sku], failureList: [sku]}`; items given as objects reduce to their SKU."""

    successList: list[Str255] = Field(default_factory=list)
    failureList: list[Str255] = Field(default_factory=list)

    @field_validator("successList", "failureList", mode="before")
    @classmethod
    def _skus(cls, value: object) -> object:
        if isinstance(value, list):
            return [v.get("channelSkuCode") if isinstance(v, dict) else v for v in value]
        return value


class ReturnQcItem(CallbackBody):
    itemCode: Code
    channelSkuCode: Code
    qcStatus: Str255 | None = None
    qcReason: Str255 | None = None
    imageUrls: list[Text] = Field(default_factory=list)


class ReturnOrderAcknowledgement(CallbackBody):
    """`PUT` return acknowledgement, sent once the return is received and QC'd (PASS/FAIL)."""

    returnOrderCode: Code
    locationCode: Code
    forwardOrderCode: Str255 | None = None
    orderItems: list[ReturnQcItem] = Field(min_length=1)


class ClientResult(IncreffModel):
    """`{hasError, errorMessage}`: our answer to Increff (errors are 4xx/5xx with hasError)."""

    hasError: bool
    errorMessage: Text | None = None
