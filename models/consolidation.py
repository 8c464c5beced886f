"""Consolidated ATP per SKU: the newest record of each of its locations, summed. No I/O.

The consolidation stage (`streams/consolidation.py`) reads `marketplace.inventory`,
re-keys each record by `channelSkuCode` onto `{app id}-inventory-by-sku`, and runs a
`ConsolidationEngine` over that topic. A SKU's state holds, per location, the record
with the highest version seen: DESIGN.md's rule for any consumer of the per-location
topic (keep the highest version per key, never the last offset), so replays, duplicates
and a losing worker's one late lower-versioned record change nothing. The SKU is
published like a per-location key (`models.publishing.Publisher`): coalesced by the same
windows, a drop of the total to 0 at once, hybrid-logical-clock versions, the first flush
after an assignment always publishing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import AwareDatetime

from models import publishing
from models.errors import DecodeError
from models.events import (
    Code,
    InventoryUpdate,
    NonNegativeInt,
    WireModel,
    decode_inventory_update,
    decode_key,
)
from models.inventory import next_version

_FORMAT = 1


class ConsolidatedUpdate(WireModel):
    """Absolute, versioned ATP of one SKU over all its locations
    (`marketplace.inventory-consolidated`)."""

    channelSkuCode: Code
    quantity: NonNegativeInt
    """The sum of `locations`."""
    locations: dict[str, NonNegativeInt]
    """Each location's ATP: the quantity of its newest `marketplace.inventory` record."""
    version: NonNegativeInt
    asOf: AwareDatetime
    """The latest `asOf` among the locations' records."""

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump())


@dataclass(slots=True)
class Held:
    """A location's newest record: its quantity, version and asOf (epoch s)."""

    quantity: int
    version: int
    as_of: float


@dataclass(slots=True)
class SkuState:
    """What the consolidation keeps per SKU."""

    locations: dict[str, Held] = field(default_factory=dict)
    published: dict[str, int] | None = None
    """`locations` of the last acknowledged publication (None: none yet)."""
    version: int = 0
    """The highest version published."""

    def quantities(self) -> dict[str, int]:
        return {code: held.quantity for code, held in self.locations.items()}

    def to_bytes(self) -> bytes:
        held = {code: [h.quantity, h.version, h.as_of] for code, h in self.locations.items()}
        return orjson.dumps([_FORMAT, held, self.published, self.version])

    @classmethod
    def from_bytes(cls, data: bytes) -> SkuState:
        raw: list[Any] = orjson.loads(data)
        if raw[0] != _FORMAT:
            raise ValueError(f"unknown SkuState format {raw[0]!r}")
        _, held, published, version = raw[:4]
        return cls({code: Held(*h) for code, h in held.items()}, published, version)


def take(state: SkuState, update: InventoryUpdate) -> bool:
    """Hold ``update`` for its location if its version is higher than the one held."""
    held = state.locations.get(update.locationCode)
    if held is not None and update.version <= held.version:
        return False
    state.locations[update.locationCode] = Held(
        update.quantity, update.version, update.asOf.timestamp()
    )
    return True


def total(quantities: dict[str, int] | None) -> int | None:
    return None if quantities is None else sum(quantities.values())


def build_consolidated(sku: str, state: SkuState, now: datetime) -> ConsolidatedUpdate:
    """The record publishing ``state`` now; record it with `record_consolidated` once
    the broker acknowledged it."""
    locations = state.quantities()
    as_of = max((h.as_of for h in state.locations.values()), default=0.0)
    return ConsolidatedUpdate(
        channelSkuCode=sku,
        quantity=sum(locations.values()),
        locations=locations,
        version=next_version(state.version, int(now.timestamp() * 1_000_000)),
        asOf=datetime.fromtimestamp(as_of, UTC),
    )


def record_consolidated(state: SkuState, update: ConsolidatedUpdate) -> None:
    state.version = max(state.version, update.version)
    state.published = dict(update.locations)


def decode_location_record(
    key: bytes | None, value: bytes | None, *, by_sku: bool
) -> InventoryUpdate:
    """A `marketplace.inventory` record (key `location:SKU`), or with ``by_sku`` one of
    the by-SKU topic (key `channelSkuCode`): the key must name what the value names."""
    if value is None:
        raise DecodeError("a tombstone: inventory records are never deleted", reason="schema")
    update = decode_inventory_update(value)
    text = decode_key(key)
    want = update.channelSkuCode if by_sku else update.key
    if text != want:
        raise DecodeError(
            f"key {text[:100]!r} does not name the record's "
            f"{'channelSkuCode' if by_sku else 'locationCode:channelSkuCode'} {want[:100]!r}",
            reason="key_mismatch",
        )
    return update


# --- the engine ---------------------------------------------------------------------

Publication = publishing.Publication[ConsolidatedUpdate]
StateWrite = publishing.StateWrite[SkuState]


@dataclass(frozen=True, slots=True)
class LocationRecord:
    """One decoded record of the by-SKU topic."""

    partition: int
    offset: int
    update: InventoryUpdate


@dataclass(slots=True)
class Consolidated:
    """What `ConsolidationEngine.apply` did with a batch."""

    writes: list[StateWrite] = field(default_factory=list)
    rejected: list[tuple[LocationRecord, DecodeError]] = field(default_factory=list)
    records: Counter[str] = field(default_factory=Counter)
    """Records by outcome: ``newer`` (held) or ``stale`` (a version already beaten)."""


class ConsolidationEngine(publishing.Publisher[SkuState, ConsolidatedUpdate]):
    """Per-SKU state of the by-SKU topic's partitions assigned to this worker."""

    def __init__(
        self,
        store: publishing.StateStore[SkuState],
        *,
        debounce_s: float,
        max_delay_s: float,
        partition_for: Callable[[str], int] | None = None,
    ) -> None:
        super().__init__(
            store, debounce_s=debounce_s, max_delay_s=max_delay_s, partition_for=partition_for
        )

    def apply(self, batch: Sequence[LocationRecord], now: float) -> Consolidated:
        """Hold each record newer than its location's; a SKU whose figures changed is
        marked (its total and every location are published)."""
        out = Consolidated()
        touched: dict[str, StateWrite] = {}
        for record in batch:
            sku = record.update.channelSkuCode
            state = self.store.get(sku)
            misplaced = self.misplaced(sku, state is not None, record.partition)
            if misplaced is not None:
                out.rejected.append((record, misplaced))
                continue
            if state is None:
                state = SkuState()
                self.store.hold(sku, state, record.partition)
            before = state.locations.get(record.update.locationCode)
            if not take(state, record.update):
                out.records["stale"] += 1
                continue
            out.records["newer"] += 1
            touched[sku] = publishing.StateWrite(sku, record.partition, state)
            if before is None or before.quantity != record.update.quantity:
                self._note(sku, record.update.asOf.timestamp(), state, now)
        out.writes.extend(touched.values())
        return out

    def _quantity(self, key: str, state: SkuState) -> int:
        return sum(h.quantity for h in state.locations.values())

    def _last_quantity(self, state: SkuState) -> int | None:
        return total(state.published)

    def _differs(self, key: str, state: SkuState) -> bool:
        return state.published != state.quantities()

    def _publication(
        self,
        key: str,
        state: SkuState,
        partition: int,
        wall: datetime,
        since: float | None,
        marked: float | None,
    ) -> Publication | None:
        if self.coalescer.is_confirmed(key) and not self._differs(key, state):
            return None
        update = build_consolidated(key, state, wall)
        stockout = update.quantity == 0 and total(state.published) != 0
        return publishing.Publication(key, partition, update, since, stockout, marked)

    def _record(self, state: SkuState, update: ConsolidatedUpdate) -> None:
        record_consolidated(state, update)
