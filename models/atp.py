"""Increff's ATP pushes, the pure part: each item becomes an `AVAILABLE` SNAPSHOT.

Two callbacks carry the same figures (DESIGN.md path table): the location-wise push
(`PUT /increff/inventory`, one location per body) and the consolidated push
(`PUT /increff/inventory/consolidated`, a location per item). Both go through
`_snapshots`, so the ids, bounds and per-item refusals are the same (docs/contract-notes.md
"ATP push ids"); only how an item names its location and how the answer lists items differ.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.callbacks import MAX_MESSAGE, BadRequest, digest, parse_body
from models.events import MAX_QUANTITY, StockEvent
from models.increff import (
    AtpInventoryItem,
    AtpItemRef,
    Code,
    ConsolidatedAtpItem,
    ConsolidatedAtpResponse,
    SkuListResponse,
    Str255,
)

log = logging.getLogger(__name__)

MAX_ATP_ITEMS = 200
"""Increff pushes at most 200 SKUs a call; more is refused as a whole."""
MAX_CONSOLIDATED_ITEMS = 20_000
"""A consolidated item is one SKU at one location, so 200 SKUs may take many items; this
only bounds the work of one call (INVSYNC_CALLBACK_MAX_BYTES bounds it too)."""
ATP_REASON = "INCREFF_ATP"
NO_BREAKDOWN = (
    "consolidated ATP needs the per-location breakdown: no item names a locationCode and "
    "its quantity there (consolidatedQuantity alone cannot be applied)"
)

ItemT = TypeVar("ItemT", bound=AtpInventoryItem)


def atp_key(body: bytes, kind: str = "atp") -> str:
    """Idempotency key of an ATP push: its exact bytes (Increff retries resend them)."""
    return f"{kind}:{hashlib.sha256(body).hexdigest()[:32]}"


@dataclass(frozen=True)
class _Outcome(Generic[ItemT]):
    events: list[StockEvent]
    accepted: list[ItemT]
    refused: list[tuple[Any, ItemT | None]]
    """(raw item, its model when it validated but could not apply)."""


def _snapshots(
    body: bytes,
    raw_items: Sequence[Any],
    model: type[ItemT],
    location_of: Callable[[ItemT], str | None],
    now: datetime,
    window_s: float,
) -> _Outcome[ItemT]:
    """Each valid item with a location becomes an absolute `AVAILABLE` SNAPSHOT at `now`.

    Increff sends no request id, and pushes the same figures again periodically (which
    must apply: they re-anchor drift), while a retry of a push (same bytes, within
    `window_s`) must not: its figure is older than its arrival. So event ids derive from
    the request bytes, the item and the `window_s` time bucket of `now`: a retry in the
    same bucket is dropped by the inventory agent's eventId ring; the handler also
    answers a retry within `window_s` of the remembered answer without publishing, and
    a push `window_s` or more after that always lands in a later bucket, so it applies.
    """
    request_digest = hashlib.sha256(body).hexdigest()[:16]
    bucket = int(now.timestamp() // window_s)
    out: _Outcome[ItemT] = _Outcome([], [], [])
    for raw in raw_items:
        try:
            item = model.model_validate(raw)
        except ValidationError:
            out.refused.append((raw, None))
            continue
        location = location_of(item)
        if not location or item.quantity > MAX_QUANTITY:
            out.refused.append((raw, item))
            continue
        item_digest = digest(location, item.channelSkuCode, item.quantity)
        out.events.append(
            StockEvent(
                eventId=f"increff-atp:{request_digest}:{bucket}:{item_digest[:32]}",
                type="SNAPSHOT",
                basis="AVAILABLE",
                locationCode=location,
                channelSkuCode=item.channelSkuCode,
                quantity=item.quantity,
                occurredAt=now,
                reason=ATP_REASON,
            )
        )
        out.accepted.append(item)
    if out.refused:
        log.warning("ATP push: %d item(s) refused", len(out.refused))
    return out


def _text(raw: Any, name: str) -> str | None:
    value = raw.get(name) if isinstance(raw, dict) else None
    return None if value is None else str(value)[:MAX_MESSAGE]


# --- location-wise ------------------------------------------------------------------


class _AtpEnvelope(BaseModel):
    """The envelope only: items are validated one by one, so one bad SKU fails alone."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    locationCode: Code
    inventories: list[Any] = Field(max_length=MAX_ATP_ITEMS)


def plan_inventory(
    body: bytes, now: datetime, window_s: float = 300.0
) -> tuple[list[StockEvent], SkuListResponse]:
    """Location-wise push: a SNAPSHOT per valid item; invalid ones go to `failureList`."""
    envelope = parse_body(_AtpEnvelope, body)
    out = _snapshots(
        body, envelope.inventories, AtpInventoryItem, lambda _: envelope.locationCode, now, window_s
    )
    return out.events, SkuListResponse(
        successList=[i.channelSkuCode for i in out.accepted],
        failureList=[_text(raw, "channelSkuCode") or "" for raw, _ in out.refused],
    )


# --- consolidated -------------------------------------------------------------------


class _ConsolidatedEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    inventories: list[Any] = Field(max_length=MAX_CONSOLIDATED_ITEMS)
    locationCode: Str255 | None = None
    """Not in Increff's sample; taken for items that name no location of their own."""


def _breakdown(raw: Any, default_location: str | None) -> bool:
    """Whether an item names a location (or the body does) and a quantity there."""
    return (
        isinstance(raw, dict)
        and "quantity" in raw
        and bool(raw.get("locationCode") or default_location)
    )


def plan_consolidated_inventory(
    body: bytes, now: datetime, window_s: float = 300.0
) -> tuple[list[StockEvent], ConsolidatedAtpResponse]:
    """Consolidated push: a SNAPSHOT per item at the item's own location.

    `quantity` is the location's ATP and the only figure applied; `consolidatedQuantity`
    (Increff's total over the locations of its `consolidationType`, which a push need not
    all list) is informational, echoed and never checked. An item without a location or
    a quantity is refused in `failureList`; a body where no item has both is a 400 with
    `NO_BREAKDOWN` (a consolidation set up without the breakdown: every push would fail).
    """
    envelope = parse_body(_ConsolidatedEnvelope, body)
    default = envelope.locationCode or None
    items = envelope.inventories
    if items and not any(_breakdown(raw, default) for raw in items):
        raise BadRequest(NO_BREAKDOWN)
    out = _snapshots(
        body,
        items,
        ConsolidatedAtpItem,
        lambda item: item.locationCode or default,
        now,
        window_s,
    )
    failures: list[ConsolidatedAtpItem | AtpItemRef] = [
        item
        if item is not None
        else AtpItemRef(
            channelSkuCode=_text(raw, "channelSkuCode") or "",
            locationCode=_text(raw, "locationCode"),
        )
        for raw, item in out.refused
    ]
    return out.events, ConsolidatedAtpResponse(successList=out.accepted, failureList=failures)
