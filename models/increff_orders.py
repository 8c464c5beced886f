"""Bodies we send to Increff (orders, cancellations, inventory search, returns).

Field names are Increff's own camelCase (`/work/shared/increff-api.md`), used as the
Python attribute names too, so a body can never go out under the wrong name.
Timestamps and dates stay strings: Increff's formats vary by page
(`...000+05:30`, `...Z`, plain dates) and we pass them through unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    StringConstraints,
    model_validator,
)

Str255 = Annotated[str, StringConstraints(max_length=255)]
"""Increff caps strings at 255 characters."""
Code = Annotated[str, StringConstraints(min_length=1, max_length=255)]
"""An identifier (order, location, SKU, item code): non-empty, at most 255 characters."""
Text = str
"""Unbounded text: URLs, base64 documents, error descriptions."""
Qty = Annotated[int, Field(strict=True, ge=0)]
"""A quantity: a JSON integer (never a float or a string), zero or more."""
PositiveQty = Annotated[int, Field(strict=True, gt=0)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A JSON number, finite: `true` is not 1.0, and Infinity or NaN would reach Increff as null."""
Money = Number
Id = Annotated[int, Strict()] | Code
"""An Increff id that samples show both as a number and as a string (shipmentId, boxId);
never a boolean or a float (`true` must not become shipment 1)."""
Attributes = dict[str, JsonValue]

MAX_ORDER_ITEMS = 2500


class IncreffModel(BaseModel):
    """Base of every Increff body: unknown fields are ignored, values are immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    def to_wire(self, *, exclude_none: bool = True) -> dict[str, Any]:
        """The JSON-ready body, camelCase, absent optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=exclude_none)


class Address(IncreffModel):
    name: Str255 | None = None
    line1: Str255 | None = None
    line2: Str255 | None = None
    line3: Str255 | None = None
    city: Str255 | None = None
    state: Str255 | None = None
    zip: Str255 | None = None
    country: Str255 | None = None
    email: Str255 | None = None
    phone: Str255 | None = None


class GiftOptions(IncreffModel):
    giftwrapRequired: bool | None = None
    giftMessage: Str255 | None = None
    giftChargePerUnit: Money | None = None
    giftDocument: Text | None = None
    giftDocumentFormat: Str255 | None = None


class TaxItem(IncreffModel):
    type: Str255 | None = None
    rate: Number | None = None
    taxPerUnit: Money | None = None
    taxTotal: Money | None = None


class TaxBreakup(IncreffModel):
    channelSkuId: Str255 | None = None
    baseSellingPricePerUnit: Money | None = None
    taxItemForms: list[TaxItem] = Field(default_factory=list)


class OutwardOrderItem(IncreffModel):
    channelSkuCode: Code
    orderItemCode: Code
    quantity: PositiveQty
    sellerDiscountPerUnit: Money | None = None
    channelDiscountPerUnit: Money | None = None
    sellingPricePerUnit: Money | None = None
    shippingChargePerUnit: Money | None = None
    minExpiry: Str255 | None = None
    giftOptions: GiftOptions | None = None
    orderItemCustomAttributes: Attributes | None = None


class OutwardOrder(IncreffModel):
    """`POST /orders/outward`: one order; each SKU at most once, at most 2500 items."""

    orderCode: Code
    locationCode: Code
    parentOrderCode: Str255 | None = None
    orderTime: Str255 | None = None
    orderType: Str255 | None = None
    onHold: bool | None = None
    isPriority: bool | None = None
    gift: bool | None = None
    qcStatus: Str255 | None = None
    dispatchByTime: Str255 | None = None
    startProcessingTime: Str255 | None = None
    paymentMethod: Str255 | None = None
    isSplitRequired: bool | None = None
    packType: Str255 | None = None
    partnerCode: Str255 | None = None
    partnerLocationCode: Str255 | None = None
    taxBreakupForms: list[TaxBreakup] | None = None
    shippingAddress: Address | None = None
    billingAddress: Address | None = None
    orderCustomAttributes: Attributes | None = None
    # Published samples are cut before orderItems, so an order without it still parses.
    orderItems: list[OutwardOrderItem] = Field(default_factory=list, max_length=MAX_ORDER_ITEMS)

    @model_validator(mode="after")
    def _sku_once(self) -> OutwardOrder:
        skus = [item.channelSkuCode for item in self.orderItems]
        if len(skus) != len(set(skus)):
            raise ValueError("each channelSkuCode may appear only once per order")
        return self


class OutwardOrderList(IncreffModel):
    """`POST /orders/outward/list`."""

    outwardOrderClientFormList: list[OutwardOrder] = Field(min_length=1)


class CancelledItem(IncreffModel):
    channelSkuCode: Code
    orderItemCode: Code
    cancelledQuantity: Qty
    """Absolute: the total cancelled so far, so a replay is harmless."""


class CustomerCancellation(IncreffModel):
    """`PUT /orders/{orderCode}/cancel`. `orderCode` travels in the path, not the body."""

    orderCode: Code | None = None
    locationCode: Code
    orderItems: list[CancelledItem] = Field(min_length=1)


class UpdateOrderProperties(IncreffModel):
    """`PUT /orders/{orderCode}`; `orderStatus` is DELIVERED or CREATED."""

    orderCode: Code | None = None
    locationCode: Code
    dispatchByTime: Str255 | None = None
    onHold: bool | None = None
    startProcessingTime: Str255 | None = None
    deliveredAt: Str255 | None = None
    orderStatus: Str255 | None = None


class UpdateOrderCustomAttributes(IncreffModel):
    locationCode: Code
    updateOrderAttributes: Attributes | None = None
    updateOrderItemAttributes: list[Attributes] | None = None


class SearchInventoryRequest(IncreffModel):
    """`POST /inventories/search-sku`."""

    channelSkuCodes: list[Code] = Field(min_length=1)


class LocationQuantity(IncreffModel):
    quantity: int
    locationCode: Code
    locationType: Str255 | None = None


class SkuInventory(IncreffModel):
    channelSkuCode: Code
    channelSerialNo: Str255 | None = None
    totalQuantity: int | None = None
    inventories: list[LocationQuantity] = Field(default_factory=list)


class SearchInventoryResponse(IncreffModel):
    """Accepts the published misspelling `sucessList`; always writes `successList`."""

    successList: list[SkuInventory] = Field(
        default_factory=list,
        validation_alias=AliasChoices("successList", "sucessList"),
    )
    failureList: list[Str255] = Field(default_factory=list)


class ShipmentDimension(IncreffModel):
    length: Number | None = None
    breadth: Number | None = None
    height: Number | None = None
    weight: Number | None = None


class ReturnOrderDetails(IncreffModel):
    codValue: Money | None = None
    invoiceNumber: Str255 | None = None
    invoiceTime: Str255 | None = None
    invoiceValue: Money | None = None
    isCod: bool | None = None
    forwardShipmentNumber: Str255 | None = None


class ReturnItem(IncreffModel):
    """One returned unit."""

    itemCode: Code
    channelSkuCode: Code
    reason: Str255 | None = None
    name: Str255 | None = None
    brand: Str255 | None = None
    color: Str255 | None = None
    category: Str255 | None = None
    subCategory: Str255 | None = None
    serialNumber: Str255 | None = None
    price: Money | None = None
    finalAmountPaid: Money | None = None
    imageUrl: Text | None = None
    storeCreditsUsed: Money | None = None
    subTaxItemData: list[TaxItem] | None = None


class CreateReturnOrder(IncreffModel):
    """`POST /return/return-orders`; orderType SELF_SHIP / CUSTOMER_RETURN / RETURN_TO_ORIGIN."""

    returnOrderCode: Code
    locationCode: Code
    forwardOrderCode: Str255 | None = None
    returnOrderTime: Str255 | None = None
    returnOrderStatus: Str255 | None = None
    expectedDate: Str255 | None = None
    orderType: Str255 | None = None
    awbNumber: Str255 | None = None
    transporter: Str255 | None = None
    currencyCode: Str255 | None = None
    regionType: Str255 | None = None
    returnReason: Str255 | None = None
    sellerGstin: Str255 | None = None
    consigneeGstin: Str255 | None = None
    shipmentDimension: ShipmentDimension | None = None
    dropAddress: Address | None = None
    pickupAddress: Address | None = None
    orderDetails: ReturnOrderDetails | None = None
    orderItems: list[ReturnItem] = Field(min_length=1)


class UpdateReturnOrder(IncreffModel):
    """`POST /return/update-return-order`."""

    returnOrderCode: Code
    locationCode: Code
    transporter: Str255 | None = None
    trackingCode: Str255 | None = None
    returnOrderStatus: Str255 | None = None
    expectedDate: Str255 | None = None


class ReturnLineItem(IncreffModel):
    channelReturnItemCode: Code
    channelSkuCode: Code
    price: Money | None = None
    reasonForReturn: Str255 | None = None
    subOrderCode: Str255 | None = None


class AddReturnItems(IncreffModel):
    """`PUT /return/update-return-order/item`."""

    returnOrderCode: Code
    locationCode: Code
    orderCode: Str255 | None = None
    returnLineItems: list[ReturnLineItem] = Field(min_length=1)


class ReturnItemRef(IncreffModel):
    itemCode: Code
    channelSkuCode: Code


class CancelReturnItems(IncreffModel):
    """Cancel return order items. Increff's path is unpublished (see the client)."""

    returnOrderCode: Code
    locationCode: Code
    orderItems: list[ReturnItemRef] = Field(min_length=1)


class IncreffErrorBody(IncreffModel):
    """Increff's error: `{"code": "BAD_DATA", "message": ..., "description": ...}`."""

    code: Text | None = None
    message: Text | None = None
    description: Text | None = None
